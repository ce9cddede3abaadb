#!/usr/bin/env python3
"""Puts the decode stage of several `longtail_gpu_bench --stages decode --json` runs of one call
side by side (variants of one build: e.g. --dependent-launch off / on, LONGTAIL_SKINNY_ROWS), as
a Markdown table per model: ms per step, the share of copy bandwidth, and each variant's ratio to
the first (the baseline), plus the batch-1 fixed cost (step - weight bytes / copy bandwidth).

    python3 bench/gpu/decode_variants.py base=dec_base.json pdl=dec_pdl.json skinny=dec_sk8.json
"""
import argparse
import json


def load(spec):
    name, path = spec.split("=", 1)
    with open(path) as f:
        return name, json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="name=file.json, the baseline first")
    args = ap.parse_args()
    runs = [load(r) for r in args.runs]
    base_name, base = runs[0]
    copy = base["copy_GBps"]
    print(f"device {base['device']}, copy {copy:.0f} GB/s (baseline run); ratios are variant / {base_name}\n")
    for mi, model in enumerate(base["models"]):
        weights = model["weight_bytes_per_step"]
        print(f"### {model['name']} ({weights / 1e9:.2f} GB of weights per step)\n")
        head = "| batch | ctx | " + " | ".join(
            f"{n} ms (of copy)" + ("" if i == 0 else f" | {n} / {base_name}") for i, (n, _) in enumerate(runs))
        print(head + " |")
        print("|---|---|" + "---|" * (2 * len(runs) - 1))
        for pi, point in enumerate(model["decode"]):
            if "step_ms" not in point:
                continue
            cells = []
            for i, (_, run) in enumerate(runs):
                p = run["models"][mi]["decode"][pi]
                cells.append(f"{p['step_ms']:.3f} ({100 * p['fraction_of_copy']:.0f}%)")
                if i:
                    cells.append(f"{p['step_ms'] / point['step_ms']:.3f}x")
            print(f"| {point['batch']} | {point['context']} | " + " | ".join(cells) + " |")
        fixed = []
        for name, run in runs:
            p = next(q for q in run["models"][mi]["decode"] if q.get("batch") == 1 and q.get("context") == 512)
            fixed.append(f"{name} {p['step_ms'] - weights / (run['copy_GBps'] * 1e9) * 1e3:.2f} ms")
        print("\nbatch-1 fixed cost, ctx 512: " + ", ".join(fixed) + "\n")


if __name__ == "__main__":
    main()
