#!/usr/bin/env python3
"""Two builds of longtail-replay side by side on the trace-forced round workloads (the ones
longtail-bench-rounds runs on the device: bench_rounds_workload.py of ../shared/traces), so that a
change to the engine, drafter or budgets is measured by its predicted makespan before a device
run. Per trace, model shape and speculation mode: the makespan ratio to no speculation and the
forward count under each build, every forward priced by one cost model while the budgets keep
the repository's fit (--price-cost-model; default: the same fit).

    python bench/replay/ab_replay.py --base /work/base/build --new build \\
        [--price bench/results/whatif_cost_roofline_2026-12-04.yaml] [--extra="--chains"] [--json out.json]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ENTRY = {"1.5b": "Qwen2.5-1.5B", "7b": "Qwen2.5-7B"}
# name: (trace file stem, rounds, groups, samples per group, warm-history rounds, max running)
WORKLOADS = {
    "skythought": ("skythought_short_ckpts", 2, 16, 4, 3, 256),
    "tot_text": ("tot_text_gpt4_t1", 2, 8, 4, 2, 16),
    "codet": ("codet_humaneval_codegen16b_20", 2, 8, 4, 2, 64),
    "tot_text G64": ("tot_text_gpt4_t1", 2, 64, 4, 2, 256),
    "codet G64": ("codet_humaneval_codegen16b_20", 2, 64, 4, 2, 256),
}
MODES = {"off": ["--speculation-mode", "off"], "das": [], "das+apr": ["--overprovision", "2"]}


def replay(build, workload, cfg, shape, mr, mode, budgets, price, extra):
    cmd = [f"{build}/bin/longtail-replay", str(workload), "--model", str(cfg), "--max-new-tokens", "1024",
           "--max-running-sequences", str(mr), "--cost-model", f"{budgets}#{ENTRY[shape]}", "--json", "--quiet"]
    if price:
        cmd += ["--price-cost-model", f"{price}#{ENTRY[shape]}"]
    r = json.loads(subprocess.run(cmd + MODES[mode] + extra, check=True, capture_output=True, text=True).stdout)
    return {"makespan_s": r["makespan_us"] / 1e6, "forwards": r["engine_steps"],
            "verified": r["verified_tokens"], "drafted": r["drafted_tokens"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="build directory of the baseline")
    ap.add_argument("--new", required=True, help="build directory of the change")
    ap.add_argument("--budgets", default=str(ROOT / "configs/cost_model_h200.yaml"),
                    help="cost model the budgets see")
    ap.add_argument("--price", help="cost model the forwards are priced with (default: --budgets)")
    ap.add_argument("--traces", default=str(ROOT.parent / "shared/traces"))
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated names")
    ap.add_argument("--shapes", default="1.5b,7b")
    ap.add_argument("--extra", default="", help="more longtail-replay flags for both builds (--extra=\"--chains\")")
    ap.add_argument("--json", help="write every row here")
    a = ap.parse_args()
    rows = []
    print("| workload | shape | off s (forwards) | DAS: base / new | DAS + partial: base / new | "
          "forwards DAS base / new | forwards DAS + partial base / new |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for shape in a.shapes.split(","):
            cfg = tmp / shape
            subprocess.run([sys.executable, str(HERE / "random_checkpoint.py"), "--shape", shape, "--out", str(cfg),
                            "--config-only"], check=True, capture_output=True)
            vocab = json.loads((cfg / "config.json").read_text())["vocab_size"]
            for name in a.workloads.split(","):
                trace, R, G, n, warm, mr = WORKLOADS[name]
                workload = tmp / f"{trace}_{G}_{vocab}.jsonl"
                if not workload.exists():
                    with open(workload, "w") as f:
                        subprocess.run([sys.executable, str(HERE / "bench_rounds_workload.py"),
                                        f"{a.traces}/{trace}.jsonl", "--vocab", str(vocab), "-R", str(R), "-G", str(G),
                                        "--n", str(n), "--warm-history", str(warm), "--max-prompt-tokens", "512"],
                                       check=True, stdout=f)
                got = {}
                for build in ("base", "new"):
                    for mode in MODES:
                        got[build, mode] = replay(getattr(a, build), workload, cfg, shape, mr, mode, a.budgets,
                                                  a.price, a.extra.split())
                ratio = {k: v["makespan_s"] / got[k[0], "off"]["makespan_s"] for k, v in got.items()}
                off = got["base", "off"]
                print(f"| {name} | {shape} | {off['makespan_s']:.3f} ({off['forwards']}) | "
                      f"{ratio['base', 'das']:.3f}x / **{ratio['new', 'das']:.3f}x** | "
                      f"{ratio['base', 'das+apr']:.3f}x / **{ratio['new', 'das+apr']:.3f}x** | "
                      f"{got['base', 'das']['forwards']} / {got['new', 'das']['forwards']} | "
                      f"{got['base', 'das+apr']['forwards']} / {got['new', 'das+apr']['forwards']} |", flush=True)
                rows.append({"workload": name, "shape": shape, "runs": {f"{b}/{m}": v for (b, m), v in got.items()}})
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"budgets": a.budgets, "price": a.price, "extra": a.extra,
                                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
