#!/usr/bin/env python3
"""Turns a `longtail_gpu_bench --compare-modes --json` file into the grid schema that
scripts/fit_cost_model.py reads (bench/results/gpu_2026-12-02.json: models[].verify.points[] with
batch, context, k, tokens, step_ms, roofline_ms, over_roofline), one model entry per shape and
mode ("Qwen2.5-1.5B" for the fast mode, "Qwen2.5-1.5B deterministic"), and prints the det / fast
table in Markdown (with a previous compare-modes file's ratio beside it when given).

    python3 bench/gpu/compare_to_grid.py compare_modes.json --out grid.json [--before old.json]
"""
import argparse
import json
import statistics


def points(rows):
    return [{"batch": r["batch"], "context": r["context"], "k": r["k"], "tokens": r["batch"] * r["k"],
             "step_ms": r["step_ms"], "roofline_ms": r["roofline_ms"],
             "over_roofline": r["over_roofline"]} for r in rows]


def ratios(model):
    return {(f["context"], f["batch"], f["k"]): d["step_ms"] / f["step_ms"]
            for f, d in zip(model["fast"], model["deterministic"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("compare", help="longtail_gpu_bench --compare-modes --json output")
    ap.add_argument("--out", required=True, help="grid JSON to write")
    ap.add_argument("--before", help="an earlier --compare-modes JSON: its det / fast beside")
    args = ap.parse_args()
    with open(args.compare) as f:
        data = json.load(f)
    before = {}
    if args.before:
        with open(args.before) as f:
            before = {m["name"]: ratios(m) for m in json.load(f)["models"]}
    grid = {k: data[k] for k in ("device", "sms", "copy_GBps", "gemm_TFLOPs") if k in data}
    grid["models"] = []
    for m in data["models"]:
        for mode in ("fast", "deterministic"):
            name = m["name"] + ("" if mode == "fast" else " deterministic")
            grid["models"].append({"name": name, "mode": mode, "verify": {"points": points(m[mode])}})
        r = ratios(m)
        old = before.get(m["name"], {})
        within = sum(v <= 1.15 for v in r.values())
        print(f"\n### {m['name']}: det / fast median {statistics.median(r.values()):.2f}x, "
              f"{within} of {len(r)} cells <= 1.15x, worst {max(r.values()):.2f}x\n")
        print("| ctx | batch | k | fast ms | deterministic ms | det / fast |"
              + (" before |" if old else "") + " det / roofline |")
        print("|---|---|---|---|---|---|" + ("---|" if old else "") + "---|")
        for f, d in zip(m["fast"], m["deterministic"]):
            key = (f["context"], f["batch"], f["k"])
            prev = f" {old[key]:.2f}x |" if key in old else (" - |" if old else "")
            print(f"| {f['context']} | {f['batch']} | {f['k']} | {f['step_ms']:.2f} | {d['step_ms']:.2f} "
                  f"| **{r[key]:.2f}x** |{prev} {d['over_roofline']:.2f} |")
    with open(args.out, "w") as f:
        json.dump(grid, f, indent=1)


if __name__ == "__main__":
    main()
