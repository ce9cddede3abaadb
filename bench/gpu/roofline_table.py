#!/usr/bin/env python3
"""Markdown tables of longtail_gpu_bench's verify grid (issue 10 target 2): for each model and
context, one row per k and one column per batch, each cell "step ms / roofline ms (ratio)", the
ratio in bold where it exceeds the 1.25x target; then the worst cell per model and context.

  python3 bench/gpu/roofline_table.py bench/results/gpu_2026-12-02.json [--batches 16,64,256]
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--batches", default="16,64,256", help="columns (comma separated)")
    ap.add_argument("--target", type=float, default=1.25)
    a = ap.parse_args()
    b = json.load(open(a.json))
    cols = [int(x) for x in a.batches.split(",")]
    print(f"device {b['device']}, copy {b['copy_GBps']:.0f} GB/s, bf16 GEMM "
          f"{b.get('gemm_TFLOPs', float('nan')):.0f} TFLOP/s (both measured in the same run)\n")
    for m in b["models"]:
        pts = m.get("verify", {}).get("points", [])
        for ctx in sorted({q["context"] for q in pts if "context" in q}):
            cell = {(q["batch"], q["k"]): q for q in pts if q.get("context") == ctx}
            ks = sorted({k for (_, k) in cell})
            print(f"### {m['name']}, context {ctx}: step ms / roofline ms (step / roofline)\n")
            print("| k | " + " | ".join(f"batch {c}" for c in cols) + " |")
            print("|---|" + "---|" * len(cols))
            worst = None
            for k in ks:
                row = []
                for c in cols:
                    q = cell.get((c, k))
                    if q is None:
                        row.append("")
                        continue
                    r = q["over_roofline"]
                    if worst is None or r > worst[0]:
                        worst = (r, c, k)
                    rs = f"**{r:.2f}x**" if r > a.target else f"{r:.2f}x"
                    row.append(f"{q['step_ms']:.2f} / {q['roofline_ms']:.2f} ({rs})")
                print(f"| {k} | " + " | ".join(row) + " |")
            if worst:
                met = sum(1 for (c, k), q in cell.items() if c in cols and q["over_roofline"] <= a.target)
                total = sum(1 for (c, k) in cell if c in cols)
                print(f"\nworst {worst[0]:.2f}x (batch {worst[1]}, k {worst[2]}); "
                      f"{met} of {total} cells within {a.target}x\n")


if __name__ == "__main__":
    main()
