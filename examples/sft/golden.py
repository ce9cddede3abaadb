"""The longtail side of the golden check of a trained checkpoint, torch-free: runs longtail-generate
(greedy with speculation off and on, and --score) on the requests of a fixture that transformers
wrote (check_logits.py) and compares tokens and logprobs. Used by check_logits.py and by CI
(tests/test_checkpoint.py)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4  # max |delta logprob|, as tests/golden


def generate_bin() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build")) / "bin" / "longtail-generate"


def longtail_side(model_dir: pathlib.Path, fixture: dict, binary: pathlib.Path) -> dict:
    """Greedy tokens/logprobs (speculation off and on) and teacher-forced logprobs from longtail."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        prompts = pathlib.Path(tmp) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt_tokens": g["prompt"]}) + "\n" for g in fixture["greedy"]))
        max_new = max(len(g["tokens"]) for g in fixture["greedy"])
        for spec in ("off", "on"):
            r = subprocess.run([str(binary), "--model", str(model_dir), "--prompts", str(prompts), "--temperature", "0",
                                "--max-new-tokens", str(max_new), "--speculation", spec, "--threads", "1"],
                               check=True, capture_output=True, text=True)
            out[f"greedy_{spec}"] = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        score = pathlib.Path(tmp) / "score.jsonl"
        score.write_text("".join(json.dumps({"prompt_tokens": t["prompt"], "response_tokens": t["response"]}) + "\n"
                                 for t in fixture["teacher_forced"]))
        r = subprocess.run([str(binary), "--model", str(model_dir), "--score", str(score), "--temperature", "1",
                            "--threads", "1"], check=True, capture_output=True, text=True)
        out["forced"] = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    return out


def compare(fixture: dict, got: dict) -> dict:
    """max |delta logprob| (greedy, teacher-forced) and the number of greedy responses that differ."""
    res = {"greedy_mismatches": 0, "max_abs_dlogprob_greedy": 0.0, "max_abs_dlogprob_forced": 0.0}
    for spec in ("off", "on"):
        for want, have in zip(fixture["greedy"], got[f"greedy_{spec}"]):
            # longtail stops at EOS exactly like the reference loop.
            if have["tokens"] != want["tokens"]:
                res["greedy_mismatches"] += 1
                continue
            d = max((abs(a - b) for a, b in zip(have["logprobs"], want["logprobs"])), default=0.0)
            res["max_abs_dlogprob_greedy"] = max(res["max_abs_dlogprob_greedy"], d)
    for want, have in zip(fixture["teacher_forced"], got["forced"]):
        assert len(have["logprobs"]) == len(want["logprobs"])
        d = max(abs(a - b) for a, b in zip(have["logprobs"], want["logprobs"]))
        res["max_abs_dlogprob_forced"] = max(res["max_abs_dlogprob_forced"], d)
    return res


