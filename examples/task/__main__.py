"""Command line of the chain task (no torch needed):

  python -m examples.task prompts --seed 1 --count 8 [--tokenizer DIR] > prompts.jsonl
      prompt lines {"prompt_id", "sample": 0, "prompt_tokens", "response_tokens": [], "text", "steps"}:
      rollout JSONL without responses, read by longtail-demo --prompts and longtail-generate --prompts
  python -m examples.task score --tokenizer DIR [--graded] [--json] RESPONSES.jsonl
      reward / pass rate of response lines that carry "prompt_tokens" and "response_tokens"
      (longtail-demo --responses output), overall and by step count
  python -m examples.task stats --seed 1 --count 10000
      the step-count and solution-length distribution of a prompt set
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from typing import Dict, List

from examples.task.chain import MAX_STEPS, MIN_STEPS, problems
from examples.task.checker import check_ids
from examples.task.tokenizer import CharTokenizer, prompt_ids, prompt_text


def _tokenizer(path: str) -> CharTokenizer:
    return CharTokenizer.load(path) if path else CharTokenizer()


def cmd_prompts(a: argparse.Namespace) -> int:
    tok = _tokenizer(a.tokenizer)
    for i, p in enumerate(problems(a.seed, a.count, start=a.start, min_steps=a.min_steps, max_steps=a.max_steps)):
        # A valid rollout-JSONL line (sample 0, no response yet), so longtail-demo --prompts and
        # longtail-generate --prompts both read it.
        print(json.dumps({"prompt_id": f"s{a.seed}-{a.start + i}", "sample": 0,
                          "prompt_tokens": prompt_ids(tok, p.prompt), "response_tokens": [],
                          "text": p.prompt, "steps": p.steps}))
    return 0


def _bucket(steps: int) -> str:
    for lo, hi in ((1, 4), (5, 9), (10, 19), (20, 39)):
        if lo <= steps <= hi:
            return f"{lo}-{hi}"
    return f"40-{MAX_STEPS}"


def cmd_score(a: argparse.Namespace) -> int:
    tok = _tokenizer(a.tokenizer)
    n = correct = finished = 0
    reward_sum = 0.0
    sample = ""
    by: Dict[str, List[int]] = collections.defaultdict(lambda: [0, 0])
    with open(a.responses) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
                v = check_ids(tok, j["prompt_tokens"], j["response_tokens"], graded=a.graded)
            except (ValueError, KeyError, TypeError) as exc:
                print(f"{a.responses}:{lineno}: {exc}", file=sys.stderr)
                return 2
            if not sample:
                sample = (f"sample: {prompt_text(tok, j['prompt_tokens'])} -> {tok.decode(j['response_tokens'])} "
                          f"({'right' if v.correct else 'wrong'})")
            n += 1
            correct += v.correct
            finished += v.finished
            reward_sum += v.reward
            b = by[_bucket(v.lines_expected)]
            b[0] += 1
            b[1] += v.correct
    if n == 0:
        print(f"{a.responses}: no responses", file=sys.stderr)
        return 2
    order = sorted(by, key=lambda k: int(k.split("-")[0]))
    if a.json:
        print(json.dumps({"responses": n, "pass_rate": correct / n, "mean_reward": reward_sum / n,
                          "finished": finished / n,
                          "pass_rate_by_steps": {k: by[k][1] / by[k][0] for k in order}}))
    else:
        buckets = ", ".join(f"{k} steps {by[k][1]}/{by[k][0]}" for k in order)
        print(f"reward (chain-arithmetic checker): pass rate {100 * correct / n:.1f}% ({correct}/{n}), "
              f"mean reward {reward_sum / n:.3f}, finished {finished}/{n}; by steps: {buckets}")
        print(sample)
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    ks = collections.Counter()
    lengths = []
    for p in problems(a.seed, a.count, min_steps=a.min_steps, max_steps=a.max_steps):
        ks[p.steps] += 1
        lengths.append(len(p.solution) + 1)
    lengths.sort()
    q = lambda f: lengths[min(len(lengths) - 1, int(f * len(lengths)))]
    print(f"{a.count} problems, steps: " + " ".join(f"{k}:{ks[k]}" for k in sorted(ks)))
    print(f"response tokens: mean {sum(lengths) / len(lengths):.1f}, median {q(0.5)}, p90 {q(0.9)}, "
          f"p99 {q(0.99)}, max {lengths[-1]}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.task", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("prompts", "stats"):
        s = sub.add_parser(name)
        s.add_argument("--seed", type=int, default=1, help="prompt set (default 1)")
        s.add_argument("--count", type=int, default=8, help="problems (default 8)")
        s.add_argument("--min-steps", type=int, default=MIN_STEPS, help=f"clip step counts (default {MIN_STEPS})")
        s.add_argument("--max-steps", type=int, default=MAX_STEPS, help=f"clip step counts (default {MAX_STEPS})")
    p = sub.choices["prompts"]
    p.add_argument("--start", type=int, default=0, help="index of the first problem (default 0)")
    p.add_argument("--tokenizer", default="", help="checkpoint directory with tokenizer.json (default: built-in)")
    s = sub.add_parser("score")
    s.add_argument("responses", help="JSONL with prompt_tokens and response_tokens per line")
    s.add_argument("--tokenizer", default="", help="checkpoint directory with tokenizer.json (default: built-in)")
    s.add_argument("--graded", action="store_true", help="graded reward (share of right lines) instead of 1/0")
    s.add_argument("--json", action="store_true", help="one JSON object instead of the summary line")
    a = ap.parse_args(argv)
    if a.cmd != "score" and (a.count < 1 or not 1 <= a.min_steps <= a.max_steps):
        ap.error("--count must be >= 1 and 1 <= --min-steps <= --max-steps")
    return {"prompts": cmd_prompts, "score": cmd_score, "stats": cmd_stats}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
