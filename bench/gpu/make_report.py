#!/usr/bin/env python3
"""Turns the GPU benchmark's JSON (gpu_bench) and the HF baseline's JSON (hf_generate.py), both
from the same device run, into the markdown results page with each target next to its value."""
import argparse
import json
import re

HF_EARLIER = 2913.0  # tok/s, HF generate() on an H100, 1.5B shape, batch 256 (DESIGN.md)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--hf")
    ap.add_argument("--tests")
    ap.add_argument("--date", default="2026-11-23")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--command", default="bash bench/gpu/run_device.sh")
    a = ap.parse_args()
    b = json.load(open(a.bench))
    hf = {}
    hf_versions = ""
    if a.hf:
        try:
            h = json.load(open(a.hf))
            hf = {r["name"]: r for r in h["runs"]}
            hf_versions = f"torch {h['torch']}, transformers {h['transformers']}"
        except (OSError, ValueError, KeyError):
            pass
    copy = b["copy_GBps"]
    o = []
    p = o.append
    p(f"# CUDA backend on the GPU: decode, verify, prefill, generate ({a.date})\n")
    p(f"- date: {a.date}; device: {b['device']} ({b['sms']} SMs); commit: `{a.commit}`")
    p(f"- command: `{a.command}`")
    p(f"- device-to-device copy measured in the same run: **{copy:.0f} GB/s** (bytes read + written)")
    if hf_versions:
        p(f"- HF baseline in the same run: {hf_versions}, bf16, sdpa, do_sample at T=1, prompt 128, "
          f"256 new tokens")
    p("- weights random (bf16), q/k/v bias, KV cache bf16 paged in 16-position blocks; every step "
      "goes through policy::Backend::forward (host planning, H2D metadata, graph replay or eager "
      "launch, device sampling, D2H of tokens/logprobs, one sync)")
    if a.tests:
        try:
            log = open(a.tests).read()
            m = re.findall(r"\[  PASSED  \] (\d+) test", log)
            f = re.findall(r"\[  FAILED  \] (\d+) test", log)
            s = re.findall(r"\[  SKIPPED \] (\d+) test", log)
            p(f"- correctness tests (tests/policy_cuda) in the same run: {m[-1] if m else 0} passed, "
              f"{f[-1] if f else 0} failed, {s[-1] if s else 0} skipped")
            for line in log.splitlines():
                if line.startswith("[golden") or line.startswith("[cuda vs cpu"):
                    p(f"  - {line.strip()}")
        except OSError:
            pass
    p("")
    p("## Targets\n")
    p("| target | model | measured | verdict |")
    p("|---|---|---|---|")
    for m in b["models"]:
        fr = [d for d in m["decode"] if "fraction_of_copy" in d and d["batch"] >= 16]
        if fr:
            lo = min(fr, key=lambda d: d["fraction_of_copy"])
            hi = max(fr, key=lambda d: d["fraction_of_copy"])
            ok = lo["fraction_of_copy"] >= 0.75
            p(f"| decode batch >= 16 at >= 75% of copy bandwidth | {m['name']} | "
              f"{100*lo['fraction_of_copy']:.0f}% (batch {lo['batch']}, ctx {lo['context']}) .. "
              f"{100*hi['fraction_of_copy']:.0f}% (batch {hi['batch']}, ctx {hi['context']}) | "
              f"{'met' if ok else 'missed at the low end'} |")
        pts = {(q["batch"], q["k"]): q["step_ms"] for q in m["verify"]["points"]
               if q.get("context", 512) == 512}
        if (64, 1) in pts and (64, 8) in pts:
            r = pts[(64, 8)] / pts[(64, 1)]
            p(f"| verify k=8 at batch 64 <= 1.3x decode step | {m['name']} | {r:.2f}x "
              f"({pts[(64, 8)]:.2f} vs {pts[(64, 1)]:.2f} ms) | {'met' if r <= 1.3 else 'missed'} |")
        g = m["generate"]
        if m["name"] in hf:
            r = g["tokens_per_s"] / hf[m["name"]]["tokens_per_s"]
            p(f"| >= 25x HF generate() tok/s, batch 256 | {m['name']} | {g['tokens_per_s']:.0f} vs "
              f"HF {hf[m['name']]['tokens_per_s']:.0f} tok/s = **{r:.1f}x** | "
              f"{'met' if r >= 25 else 'missed'} |")
        if m["name"] == "Qwen2.5-1.5B":
            p(f"| (vs HF measured earlier, {HF_EARLIER:.0f} tok/s) | {m['name']} | "
              f"{g['tokens_per_s'] / HF_EARLIER:.1f}x | reference only |")
    p("")
    for m in b["models"]:
        p(f"## {m['name']}\n")
        p(f"weights read per step {m['weight_bytes_per_step']/1e9:.3f} GB; KV {m['kv_bytes_per_token']} "
          f"bytes per position; cache {m['kv_tokens']} positions; graph replays {m['graph_replays']}\n")
        p("### Decode (1 token per sequence per step, T=1)\n")
        p("| batch | context | step ms | tokens/s | GB/s (weights + KV) | of copy |")
        p("|---|---|---|---|---|---|")
        for d in m["decode"]:
            if "skipped" in d:
                p(f"| {d['batch']} | {d['context']} | skipped: {d['skipped']} | | | |")
            else:
                p(f"| {d['batch']} | {d['context']} | {d['step_ms']:.3f} | {d['tokens_per_s']:.0f} | "
                  f"{d['bandwidth_GBps']:.0f} | {100*d['fraction_of_copy']:.0f}% |")
        v = m["verify"]
        f = v["fit"]
        ctx = v.get("fit_context", v.get("context", 512))
        at_ctx = [q for q in v["points"] if q.get("context", ctx) == ctx]
        p(f"\n### Verify (k tokens per sequence, context {ctx})\n")
        p(f"fit: t = {f['c_base_us']:.0f} us + {f['c_tok_us']:.2f} us x tokens "
          f"(R^2 = {f['r2']:.3f})\n")
        ks = sorted({q["k"] for q in at_ctx})
        batches = sorted({q["batch"] for q in at_ctx})
        pts = {(q["batch"], q["k"]): q["step_ms"] for q in at_ctx}
        p("| k | " + " | ".join(f"batch {bb} ms (x k=1)" for bb in batches) + " |")
        p("|---|" + "---|" * len(batches))
        for k in ks:
            cells = []
            for bb in batches:
                if (bb, k) in pts:
                    cells.append(f"{pts[(bb, k)]:.2f} ({pts[(bb, k)] / pts[(bb, 1)]:.2f}x)")
                else:
                    cells.append("")
            p(f"| {k} | " + " | ".join(cells) + " |")
        pf = m["prefill"]
        g = m["generate"]
        p(f"\n### Prefill and generate\n")
        p(f"- prefill of one {pf['tokens']}-token prompt: {pf['ms']:.2f} ms = {pf['tokens_per_s']:.0f} tok/s")
        line = (f"- generate equivalent (batch {g['batch']}, prompt {g['prompt']}, {g['new_tokens']} new, "
                f"T=1): {g['seconds']:.2f} s ({g['prefill_seconds']:.2f} s prefill) = "
                f"{g['tokens_per_s']:.0f} tok/s")
        if m["name"] in hf:
            h = hf[m["name"]]
            line += (f"; HF generate() same shape/batch, same run: {h['seconds']:.2f} s = "
                     f"{h['tokens_per_s']:.0f} tok/s -> **{g['tokens_per_s'] / h['tokens_per_s']:.1f}x**")
        p(line + "\n")
    print("\n".join(o))


if __name__ == "__main__":
    main()
