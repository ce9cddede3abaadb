"""What prompt affinity and shared history are worth: recorded traces replayed as a K-worker fleet.

Each round of a trace (JSONL as in /work/shared/traces: one rollout per prompt per "step") is routed
over K workers with longtail.fleet's own router (fleet_routing.split_round: affine = consistent
hashing of prompt_id with bounded load, random = uniform). Every worker's share is replayed by
``longtail-replay`` on its own, so a worker drafts only from the history it generated itself, as a
fleet without shared history does. With ``--shared-history`` every worker also gets the other
workers' rollouts of earlier rounds as history (JSONL ``"history_only": true`` lines: indexed at the
round boundary, never replayed or counted), as a fleet exchanging HISTORY messages does.

Reported per (trace, K, routing, history): tokens per step over all rollouts, and the projected
speedup of speculation for the fleet: sum over rounds of the slowest worker's plain makespan divided
by the sum over rounds of the slowest worker's speculative makespan (workers run a round in parallel).

    .venv/bin/python bench/fleet/replay_fleet.py --replay build/bin/longtail-replay \
        /work/shared/traces/*.jsonl --workers 1 2 4 8 --routing affine random [--shared-history]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import pathlib
import subprocess
import sys
import tempfile
from typing import Dict, List

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "trainer_bridge" / "python"))

from longtail.fleet_routing import Router, split_round  # noqa: E402


def read_rounds(path: pathlib.Path) -> Dict[int, List[dict]]:
    rounds: Dict[int, List[dict]] = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rounds[int(r.get("step", 0))].append(r)
    return dict(sorted(rounds.items()))


def shard_files(rounds: Dict[int, List[dict]], k: int, routing: str, shared: bool, max_new: int,
                out: pathlib.Path, seed: int) -> List[pathlib.Path]:
    """One JSONL per worker: its routed rollouts, plus (shared) the others' as history-only lines."""
    workers = [f"w{i}" for i in range(k)]
    router = Router(workers, policy=routing, seed=seed)
    lines: Dict[str, List[str]] = {w: [] for w in workers}
    for step, rs in rounds.items():
        # One group per prompt per round; its load as the fleet estimates it.
        by_prompt: Dict[str, List[dict]] = collections.defaultdict(list)
        for r in rs:
            by_prompt[r["prompt_id"]].append(r)
        prompts = list(by_prompt)
        groups = [{"prompt_id": p, "tokens": len(by_prompt[p]) * (len(by_prompt[p][0]["prompt_tokens"]) + max_new)}
                  for p in prompts]
        split = split_round(router, groups)
        for w, idx in split.items():
            for i in idx:
                for r in by_prompt[prompts[i]]:
                    text = json.dumps(r)
                    lines[w].append(text)
                    if shared:
                        hist = json.dumps(dict(r, history_only=True))
                        for other in workers:
                            if other != w:
                                lines[other].append(hist)
    files = []
    for w in workers:
        p = out / f"{w}.jsonl"
        p.write_text("\n".join(lines[w]) + "\n")
        files.append(p)
    return files


def replay(binary: str, path: pathlib.Path, extra: List[str]) -> dict:
    res = subprocess.run([binary, str(path), "--json", "--quiet", *extra], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{binary} {path}: exit {res.returncode}: {res.stderr[-2000:]}")
    return json.loads(res.stdout)


def fleet_figures(reports: List[dict]) -> dict:
    resp = sum(r["response_tokens"] for r in reports)
    steps = sum(r["verify_steps"] for r in reports)
    per_round_spec: Dict[int, float] = collections.defaultdict(float)
    per_round_plain: Dict[int, float] = collections.defaultdict(float)
    for r in reports:
        for rd in r["rounds"]:
            per_round_spec[rd["round"]] = max(per_round_spec[rd["round"]], rd["makespan_us"])
            per_round_plain[rd["round"]] = max(per_round_plain[rd["round"]], rd["plain_makespan_us"])
    spec, plain = sum(per_round_spec.values()), sum(per_round_plain.values())
    return {"tokens_per_step": resp / steps if steps else 0.0, "projected_speedup": plain / spec if spec else 1.0,
            "makespan_s": spec / 1e6, "plain_makespan_s": plain / 1e6, "response_tokens": resp,
            "rollouts": sum(r["rollouts"] for r in reports)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+", type=pathlib.Path)
    ap.add_argument("--replay", default=str(REPO / "build" / "bin" / "longtail-replay"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--routing", nargs="+", default=["affine", "random"])
    ap.add_argument("--shared-history", action="store_true", help="also run every case with shared history")
    ap.add_argument("--max-new-tokens", type=int, default=4096, help="the router's per-sample load estimate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="replays run in parallel")
    ap.add_argument("--replay-arg", action="append", default=[], help="extra longtail-replay argument")
    args = ap.parse_args()
    histories = [False, True] if args.shared_history else [False]
    results = []
    with tempfile.TemporaryDirectory(prefix="ltf-replay-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for trace in args.traces:
            rounds = read_rounds(trace)
            for k in args.workers:
                for routing in (["affine"] if k == 1 else args.routing):
                    for shared in ([False] if k == 1 else histories):
                        d = pathlib.Path(tmp) / f"{trace.stem}-{k}-{routing}-{int(shared)}"
                        d.mkdir()
                        files = shard_files(rounds, k, routing, shared, args.max_new_tokens, d, args.seed)
                        reports = list(pool.map(lambda f: replay(args.replay, f, args.replay_arg), files))
                        row = dict(trace=trace.stem, workers=k, routing=routing if k > 1 else "-",
                                   shared_history=shared, **fleet_figures(reports))
                        results.append(row)
                        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
