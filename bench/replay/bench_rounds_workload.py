#!/usr/bin/env python3
"""Writes the trace-forced workload of longtail-bench-rounds as the replay's JSONL input, so
longtail-replay and longtail-bench-rounds run the engine over the same rollouts
(bench/replay/agreement.sh compares their counts).

bench-rounds' rule (tools/bench_rounds_main.cc): the first G prompts of the trace that have at least
warm + R*n samples and a prompt; prompts cut to their last max_prompt_tokens tokens; ids mapped
modulo the model's vocabulary when any id is beyond it; samples [0, warm) of those prompts loaded as
drafter history (round = sample); round r replays samples [warm + r*n, warm + r*n + n) of every
prompt as one group. Here: history lines are "history_only" at step = sample, round r's lines at
step = warm + r (after every history step), in the trace's prompt order.

    python bench/replay/bench_rounds_workload.py TRACE.jsonl --vocab 2048 -R 2 -G 4 --n 2 \
        --warm-history 6 > workload.jsonl
"""
import argparse
import json
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--vocab", type=int, required=True, help="the model's vocab_size (config.json)")
    ap.add_argument("-R", "--rounds", type=int, default=3)
    ap.add_argument("-G", "--groups", type=int, default=4)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--warm-history", type=int, default=0)
    ap.add_argument("--max-prompt-tokens", type=int, default=64)
    a = ap.parse_args(argv)
    lines = [json.loads(l) for l in open(a.trace) if l.strip()]
    modulo = a.vocab if any(t >= a.vocab for r in lines for t in r["prompt_tokens"] + r["response_tokens"]) else 0
    order, prompt, samples, by_key = [], {}, {}, {}
    for r in lines:
        pid = r["prompt_id"]
        if pid not in prompt:
            order.append(pid)
        p = r["prompt_tokens"]
        prompt[pid] = p[-a.max_prompt_tokens:] if len(p) > a.max_prompt_tokens else p
        samples[pid] = max(samples.get(pid, 0), r["sample"] + 1)
        by_key[(pid, r["sample"])] = r["response_tokens"]  # later lines win, as forced_from_trace
    need = a.warm_history + a.rounds * a.n
    usable = [p for p in order if samples[p] >= need and prompt[p]]
    if len(usable) < a.groups:
        sys.exit(f"{a.trace}: only {len(usable)} prompts with >= {need} samples; need {a.groups}")
    usable = usable[:a.groups]
    mod = (lambda t: t % modulo) if modulo else (lambda t: t)

    def line(pid, sample, step, history):
        out = {"prompt_id": pid, "sample": sample, "step": step,
               "prompt_tokens": [mod(t) for t in prompt[pid]],
               "response_tokens": [mod(t) for t in by_key[(pid, sample)]]}
        if history:
            out["history_only"] = True
        return json.dumps(out, separators=(",", ":"))

    # bench-rounds loads history in trace order; the replay indexes it by step, then line order.
    for s in range(a.warm_history):
        for pid in usable:
            if (pid, s) in by_key:
                print(line(pid, s, s, True))
    for r in range(a.rounds):
        for pid in usable:
            for i in range(a.n):
                print(line(pid, a.warm_history + r * a.n + i, a.warm_history + r, False))


if __name__ == "__main__":
    main()
