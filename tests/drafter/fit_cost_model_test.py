"""scripts/fit_cost_model.py recovers known constants: a gpu_bench JSON generated from
t = 2000 + 0.01 us x cached positions + 5 us x min(T, 256) + 12 us x max(T - 256, 0) (decode at batch
1..256 and two contexts, verify at batch 1..256 x k = 1..16, one point skipped) is fitted back
exactly, the crossover included, and the YAML has every key load_cost_model reads, plus the device
and the model shape that rollout/measured_cost_model.h matches a checkpoint by.
Run: python tests/drafter/fit_cost_model_test.py (exit 77 = skipped: no numpy)."""
import json
import os
import re
import sys
import tempfile

try:
    import numpy  # noqa: F401
except ImportError:
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import fit_cost_model  # noqa: E402


def step_ms(tokens, cached):
    return (2000 + 0.01 * cached + 5 * min(tokens, 256) + 12 * max(tokens - 256, 0)) / 1e3


def main():
    decode = [{"batch": b, "context": c, "step_ms": step_ms(b, b * c)} for b in (1, 4, 16, 64, 256) for c in (512, 4096)]
    decode.append({"batch": 256, "context": 8192, "skipped": "out of memory"})
    verify = [{"batch": b, "k": k, "context": c, "step_ms": step_ms(b * k, b * c)}
              for b in (1, 16, 64, 256) for k in (1, 2, 4, 8, 16) for c in (512, 4096)]
    data = {"device": "test GPU", "models": [{"name": "shape-a", "shape": {"hidden_size": 64, "num_hidden_layers": 2}, "decode": decode, "verify": {"points": verify}}]}
    with tempfile.TemporaryDirectory() as d:
        src, out, rep = (os.path.join(d, n) for n in ("gpu.json", "cost.yaml", "report.md"))
        with open(src, "w") as f:
            json.dump(data, f)
        fit_cost_model.main([src, "--out", out, "--report", rep])
        text = open(out).read()
        entry = re.search(r'"shape-a": \{(.*)\}', text).group(1)
        got = {k: float(v) for k, v in re.findall(r"(\w+): ([-0-9.e+]+)", entry)}
        want = {"base_us": 2000, "per_context_us": 0.01, "per_token_us": 5, "per_token_above_us": 12,
                "crossover_tokens": 256}
        for k, v in want.items():
            assert abs(got[k] - v) <= 1e-6 * max(1, v), (k, got[k], v)
        assert got["rms_rel_err"] < 1e-6, got
        assert text.count("step_cost:") == 1 and "per_model:" in text
        assert 'device: "test GPU"' in text, text
        assert "shape: {hidden_size: 64, num_hidden_layers: 2}" in entry, entry
        assert "| shape-a | 50 |" in open(rep).read()  # 10 decode + 40 verify points, the skipped one left out
    # Steps whose first few tokens cost more than the rest (launch cost of verify rows): the fit
    # keeps a crossover only where tokens past it cost at least as much as before.
    steep = {"device": "test GPU", "models": [{"name": "shape-b", "decode": [
        {"batch": b, "context": 512, "step_ms": (1000 + 20 * min(b, 8) + 4 * max(b - 8, 0)) / 1e3}
        for b in (1, 2, 4, 8, 16, 64, 256)]}]}
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "gpu.json"), os.path.join(d, "cost.yaml")
        with open(src, "w") as f:
            json.dump(steep, f)
        fit_cost_model.main([src, "--out", out])
        entry = re.search(r'"shape-b": \{(.*)\}', open(out).read()).group(1)
        got = {k: float(v) for k, v in re.findall(r"(\w+): ([-0-9.e+]+)", entry)}
        assert got.get("per_token_above_us", got["per_token_us"]) >= got["per_token_us"], got
    steps_join_the_fit(data)
    kinds_weigh_the_same()
    verify_steps_fixed_cost_is_fitted()
    print("ok")


def fitted(out, name):
    entry = re.search(r'"%s": \{(.*)\}' % name, open(out).read()).group(1)
    return {k: float(v) for k, v in re.findall(r"(\w+): ([-0-9.e+]+)", entry)}


def kinds_weigh_the_same():
    """Decode steps 10% cheaper than the verify grid's model, 10 of them against 40 verify points:
    balanced (the default), the decode steps' error is at most half of what the unbalanced fit leaves
    them, which --no-balance reproduces."""
    decode = [{"batch": b, "context": c, "step_ms": 0.9 * step_ms(b, b * c)} for b in (1, 4, 16, 64, 256) for c in (512, 4096)]
    verify = [{"batch": b, "k": k, "context": c, "step_ms": step_ms(b * k, b * c)}
              for b in (1, 16, 64, 256) for k in (2, 4, 8, 16, 12) for c in (512, 4096)]
    data = {"device": "test GPU", "models": [{"name": "shape-c", "decode": decode, "verify": {"points": verify}}]}
    def decode_error(flag):
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "gpu.json"), os.path.join(d, "c.yaml")
            with open(src, "w") as f:
                json.dump(data, f)
            fit_cost_model.main([src, "--out", out] + flag)
            m = fitted(out, "shape-c")
            m.setdefault("per_token_above_us", m["per_token_us"])
            m.setdefault("crossover_tokens", 0)
            rel = [abs(fit_cost_model.predict(m, p["batch"], p["batch"] * p["context"]) / (p["step_ms"] * 1e3) - 1)
                   for p in decode]
            return sum(rel) / len(rel)
    balanced, flat = decode_error([]), decode_error(["--no-balance"])
    assert balanced <= 0.5 * flat, (balanced, flat)


def verify_steps_fixed_cost_is_fitted():
    """Verify steps (k > 1) that cost 400 us more than decode steps of as many tokens: the fit
    finds the constant and keeps the rest of the model; without it the YAML has no such key. A
    steps log marks its multi-token steps by more tokens than sequences (a .gz log reads too)."""
    import gzip
    def grid(extra):
        decode = [{"batch": b, "context": c, "step_ms": step_ms(b, b * c)} for b in (1, 4, 16, 64, 256) for c in (512, 4096)]
        verify = [{"batch": b, "k": k, "context": c, "step_ms": step_ms(b * k, b * c) + (extra / 1e3 if k > 1 else 0)}
                  for b in (1, 16, 64, 256) for k in (1, 2, 4, 8, 16) for c in (512, 4096)]
        return {"device": "test GPU", "models": [{"name": "shape-v", "decode": decode, "verify": {"points": verify}}]}
    with tempfile.TemporaryDirectory() as d:
        src, out, log = (os.path.join(d, n) for n in ("gpu.json", "c.yaml", "s.jsonl.gz"))
        with open(src, "w") as f:
            json.dump(grid(400), f)
        fit_cost_model.main([src, "--out", out])
        got = fitted(out, "shape-v")
        assert abs(got["verify_step_us"] - 400) < 1 and abs(got["base_us"] - 2000) < 1, got
        assert got["rms_rel_err"] < 1e-6, got
        with open(src, "w") as f:
            json.dump(grid(0), f)
        with gzip.open(log, "wt") as f:
            for i, (b, t) in enumerate([(b, b * k) for b in (2, 8, 32) for k in (1, 3, 9)] * 5):
                us = step_ms(t, 1000 * b) * 1e3 + (400 if t > b else 0)
                f.write(json.dumps({"mode": "das", "step": i, "sequences": b, "tokens_verified": t,
                                    "context_positions": 1000 * b, "token_trees": True, "forward_us": us}) + "\n")
        fit_cost_model.main([src, "--out", out])
        assert "verify_step_us" not in fitted(out, "shape-v")
        fit_cost_model.main([src, "--out", out, "--steps", "shape-v=" + log])
        got = fitted(out, "shape-v")
        assert got["verify_step_us"] > 100, got


def steps_join_the_fit(grid):
    """--steps: a rounds log's forwards (binned, median per bin) join the grid's points. Steps that
    follow the grid's model leave the fit where it was; tree verifies past the crossover that cost
    1.5x per token pull the slope above it up; a capture outlier in a bin does not move it; a bad
    line names its file and line, and an unknown shape name is refused."""
    import random
    rng = random.Random(5)
    def log(path, extra_above, outliers=False):
        with open(path, "w") as f:
            for i in range(3000):
                b = rng.choice((64, 128, 256))
                t = b * rng.randint(1, 17)
                c = sum(rng.randint(100, 1500) for _ in range(b))
                us = step_ms(t, c) * 1e3 + extra_above * 12 * max(t - 256, 0)
                if outliers and i % 97 == 0:
                    us *= 40  # a graph bucket's first use: its capture
                f.write(json.dumps({"mode": "das", "step": i, "sequences": b, "tokens_verified": t,
                                    "context_positions": c, "token_trees": True, "forward_us": us}) + "\n")
    with tempfile.TemporaryDirectory() as d:
        src, out, same, dear, bad = (os.path.join(d, n) for n in ("gpu.json", "c.yaml", "s.jsonl", "d.jsonl", "b.jsonl"))
        with open(src, "w") as f:
            json.dump(grid, f)
        log(same, 0.0, outliers=True)
        fit_cost_model.main([src, "--out", out, "--steps", "shape-a=" + same])
        got = fitted(out, "shape-a")
        assert abs(got["per_token_above_us"] - 12) < 0.05 and abs(got["base_us"] - 2000) < 20, got
        assert "+ shape-a=" in open(out).read()  # the header names the log
        log(dear, 0.5)
        fit_cost_model.main([src, "--out", out, "--steps", "shape-a=" + dear])
        got = fitted(out, "shape-a")
        assert got["per_token_above_us"] > 14, got
        with open(bad, "w") as f:
            f.write('{"tokens_verified": 3}\n')
        for args, message in ((["--steps", "shape-a=" + bad], "b.jsonl:1: not a step line"),
                              (["--steps", "no-such-shape=" + same], "no model of that name"),
                              (["--steps", "shape-a"], "expected NAME=FILE")):
            try:
                fit_cost_model.main([src, "--out", out] + args)
            except SystemExit as e:
                assert message in str(e), (message, e)
            else:
                raise AssertionError(f"{args}: accepted")


if __name__ == "__main__":
    main()
