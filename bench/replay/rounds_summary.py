#!/usr/bin/env python3
"""One line per mode of a longtail-bench-rounds --json file (makespan, forwards, verified tokens,
drafting seconds, preemptions, ratio to the off mode, CUDA graph captures and their seconds), for
the device scripts that run bench-rounds and print what each run measured
(bench/replay/gpu_validation.sh, bench/rollout/das_budget_variants.sh).

    python3 bench/replay/rounds_summary.py OUT/q15_sky.json
"""
import json
import sys


def capture_note(mode):
    """The CUDA backend's graph captures and their host seconds (absent on other backends)."""
    c = mode.get("cuda_passes")
    if not c or "capture_s" not in c or c["replayed"] + c["graphable_eager"] == 0:
        return ""
    return f'  captures {c["graphs_captured"]} ({c["capture_s"]:.3f} s)'


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: rounds_summary.py BENCH_ROUNDS_JSON")
    j = json.load(open(sys.argv[1]))
    for m in j["modes"]:
        print(f'  {m["mode"]:8s} makespan {m["total_makespan_s"]:8.3f} s  forwards {m["forward_passes"]:6d}  '
              f'verified {m["tokens_verified"]:8d}  draft {m["draft_s"]:6.3f} s  preempt {m["preemptions"]}  '
              f'vs off {m.get("makespan_ratio_vs_off", 1):.3f}' + capture_note(m))
    print("  identical to off:", j["identical_to_off"])


if __name__ == "__main__":
    main()
