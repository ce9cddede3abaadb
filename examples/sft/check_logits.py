"""Checks that longtail's CPU backend computes what transformers computes on a trained checkpoint, and
writes the torch-free golden fixture that CI replays (examples/sft/tests/test_checkpoint.py).

transformers (fp32, eager attention) gives, for a few held-out chain problems, the greedy response
with its token logprobs and the teacher-forced logprobs of the reference solution; the same requests
go through `longtail-generate` (greedy with speculation off and on; --score for teacher forcing).
Prints max |delta logprob| and whether the greedy tokens agree; exits 1 if a token differs or a
logprob differs by more than 1e-4.

  /work/torchvenv/bin/python -m examples.sft.check_logits configs/models/chain-qwen3 \
      --write-fixture examples/sft/fixtures/chain-qwen3.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch
import transformers

from examples.task import CharTokenizer, problems, prompt_ids

from examples.sft.golden import TOLERANCE, compare, generate_bin, longtail_side


@torch.no_grad()
def reference(model_dir: pathlib.Path, seed: int, count: int, max_new: int) -> dict:
    tok = CharTokenizer.load(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    greedy, forced = [], []
    margin = float("inf")
    for p in problems(seed, count):
        ids = prompt_ids(tok, p.prompt)
        seq = list(ids)
        tokens, lps = [], []
        for _ in range(max_new):  # full recomputation per step: no cache path in the reference
            logits = model(torch.tensor([seq])).logits[0, -1].float()
            top2 = torch.topk(logits, 2).values
            margin = min(margin, float(top2[0] - top2[1]))
            t = int(torch.argmax(logits))
            tokens.append(t)
            lps.append(float(torch.log_softmax(logits, -1)[t]))
            seq.append(t)
            if t == tok.eos_id:
                break
        greedy.append({"prompt": ids, "tokens": tokens, "logprobs": lps})
        response = tok.encode(p.solution, eos=True)
        logits = model(torch.tensor([ids + response])).logits[0].float()
        lp = torch.log_softmax(logits[len(ids) - 1:-1], -1).gather(-1, torch.tensor(response)[:, None])
        forced.append({"prompt": ids, "response": response, "logprobs": lp.squeeze(-1).tolist()})
    return {"checkpoint": model_dir.name, "transformers_version": transformers.__version__,
            "torch_version": torch.__version__, "min_greedy_margin": margin, "greedy": greedy,
            "teacher_forced": forced}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--seed", type=int, default=999, help="prompt set (default 999, SFT's held-out set)")
    ap.add_argument("--count", type=int, default=6, help="problems (default 6)")
    ap.add_argument("--max-new-tokens", type=int, default=200, help="greedy cap (default 200)")
    ap.add_argument("--write-fixture", default="", help="write the transformers side as a JSON fixture")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    model_dir = pathlib.Path(a.checkpoint).resolve()
    fixture = reference(model_dir, a.seed, a.count, a.max_new_tokens)
    if a.write_fixture:
        pathlib.Path(a.write_fixture).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(a.write_fixture).write_text(json.dumps(fixture) + "\n")
    res = compare(fixture, longtail_side(model_dir, fixture, generate_bin()))
    res["min_greedy_margin"] = fixture["min_greedy_margin"]
    print(json.dumps(res))
    ok = res["greedy_mismatches"] == 0 and max(res["max_abs_dlogprob_greedy"], res["max_abs_dlogprob_forced"]) <= TOLERANCE
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
