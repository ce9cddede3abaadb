#!/usr/bin/env python3
"""Predicted vs measured GPU makespans (issue 14 item 4): reads what bench/replay/gpu_validation.sh
measured on the device (configs.txt + one longtail-bench-rounds JSON per row), replays each row's
workload (bench/replay/bench_rounds_workload.py) with longtail-replay's engine model under the same
cost model, and prints one Markdown row per configuration and mode.

    python bench/replay/gpu_compare.py DIR [--build build] [--cost-model configs/cost_model_h200.yaml] \
        [--price-cost-model bench/results/cost_model_h200_2026-12-06.yaml]

--cost-model is what the device run's budgets used; --price-cost-model (default: the same) prices
the replayed forwards, so a refit can be judged on the budgets' own choices.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ENTRY = {"0.5b": "Qwen2.5-0.5B", "1.5b": "Qwen2.5-1.5B", "7b": "Qwen2.5-7B"}
F = {"off": 1, "das": 1, "das+apr": 2}


def replay(build, workload, cfg_dir, cost, price, cap, mr, mode):
    cmd = [f"{build}/bin/longtail-replay", str(workload), "--model", str(cfg_dir), "--max-new-tokens", str(cap),
           "--max-running-sequences", str(mr), "--overprovision", str(F[mode]), "--cost-model", cost,
           "--json", "--quiet"]
    if price:
        cmd += ["--price-cost-model", price]
    if mode == "off":
        cmd += ["--speculation-mode", "off"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="the device run's $OUT (configs.txt, NAME.json)")
    ap.add_argument("--build", default="build")
    ap.add_argument("--cost-model", default="configs/cost_model_h200.yaml")
    ap.add_argument("--price-cost-model", help="price the forwards with this model (default: --cost-model)")
    ap.add_argument("--traces", default="/work/shared/traces")
    a = ap.parse_args()
    d = pathlib.Path(a.dir)
    py = sys.executable
    print("| config | mode | forwards: GPU / replay | verified: GPU / replay | measured (s) | predicted (s) | "
          "predicted / measured | measured vs off | predicted vs off | drafter CPU (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for line in (d / "configs.txt").read_text().splitlines():
            if not line.split():
                continue
            name, shape, trace, R, G, n, warm, cap, mr = line.split()
            try:
                measured = json.loads((d / f"{name}.json").read_text())
            except (OSError, json.JSONDecodeError):
                print(f"| {name} | (no measurement: the device run did not finish this row) |||||||||")
                continue
            cfg_dir = tmp / shape
            if not cfg_dir.exists():
                subprocess.run([py, str(HERE / "random_checkpoint.py"), "--shape", shape, "--out", str(cfg_dir),
                                "--config-only"], check=True, capture_output=True)
            vocab = json.loads((cfg_dir / "config.json").read_text())["vocab_size"]
            workload = tmp / f"{name}.jsonl"
            with open(workload, "w") as f:
                subprocess.run([py, str(HERE / "bench_rounds_workload.py"), f"{a.traces}/{trace}.jsonl",
                                "--vocab", str(vocab), "-R", R, "-G", G, "--n", n, "--warm-history", warm,
                                "--max-prompt-tokens", "512"], check=True, stdout=f)
            cost = f"{a.cost_model}#{ENTRY[shape]}"
            price = f"{a.price_cost_model}#{ENTRY[shape]}" if a.price_cost_model else None
            base_meas = base_pred = None
            label = f"{shape} {trace.split('_')[0]} R{R} G{G} n{n} cap {cap} max running {mr}"
            for m in measured["modes"]:
                mode = m["mode"]
                r = replay(a.build, workload, cfg_dir, cost, price, cap, mr, mode)
                meas, pred = m["total_makespan_s"], r["makespan_us"] / 1e6
                if mode == "off":
                    base_meas, base_pred = meas, pred
                print(f"| {label} | {mode} | {m['forward_passes']} / {r['engine_steps']} | "
                      f"{m['tokens_verified']} / {r['verified_tokens']} | {meas:.3f} | {pred:.3f} | {pred / meas:.3f} | "
                      f"{meas / base_meas:.3f} | {pred / base_pred:.3f} | {m['draft_s']:.3f} |")
                label = ""


if __name__ == "__main__":
    main()
