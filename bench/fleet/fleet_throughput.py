"""Fleet throughput on CPU with K workers, and the time to recover from a killed worker.

Starts a local Ray (loopback only, no dashboard) and a longtail.fleet.Fleet of K CPU workers on the
bundled tiny checkpoint (one forward thread each), submits R rounds of G groups, and reports
generated tokens per second. With --kill it SIGKILLs the busiest worker after the first batch of
the last round and reports: kill -> restarted worker's journal re-sent (the fleet's recovery
record), kill -> last group of the round delivered, and the same round's time without a kill.

    .venv/bin/python bench/fleet/fleet_throughput.py --workers 1 2 --rounds 4 --groups 32 --kill --json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "trainer_bridge" / "python"))

from longtail import Group  # noqa: E402
from longtail.fleet import Fleet  # noqa: E402


def groups(r: int, g: int, n: int, max_new: int):
    return [Group(group_id=f"r{r}-p{i}", prompt_id=f"p{i}", prompt_tokens=[5 + i % 900, 6, 7, 8 + r % 5], n=n,
                  max_new_tokens=max_new, seed=r * 7919 + i) for i in range(g)]


def run_round(fleet: Fleet, gs, kill: bool = False):
    """Submits one round and receives it; returns (seconds, response tokens, kill info)."""
    t0 = time.monotonic()
    fleet.submit(gs)
    left = {g.group_id for g in gs}
    tokens = 0
    killed = None
    while left:
        b = fleet.next_batch(timeout=300)
        if b is None:
            raise RuntimeError(f"{len(left)} groups never arrived")
        for t in b.trajectories:
            left.discard(t.group_id)
            tokens += int(t.response_tokens.size)
        fleet.ack(b)
        if kill and killed is None:
            per = fleet.stats(timeout=5)["fleet"]["pending_per_worker"]
            victim = max(per, key=per.get)
            killed = (victim, time.monotonic())
            fleet.kill_worker(victim)
    return time.monotonic() - t0, tokens, killed


def bench(k: int, args) -> dict:
    fleet = Fleet(num_workers=k, config=REPO / "configs" / "worker.yaml",
                  overrides={"backend.kind": "cpu", "backend.threads": args.threads, "log_level": "warn",
                             "engine.round_groups": args.round_groups},
                  resources_per_worker={"CPU": 1}, routing=args.routing)
    try:
        run_round(fleet, groups(1000, k * 2, args.n, args.max_new_tokens))  # warm-up
        secs = toks = 0.0
        for r in range(args.rounds):
            s, t, _ = run_round(fleet, groups(r, args.groups, args.n, args.max_new_tokens))
            secs += s
            toks += t
        out = {"workers": k, "rounds": args.rounds, "groups_per_round": args.groups, "n": args.n,
               "max_new_tokens": args.max_new_tokens, "seconds": secs, "response_tokens": toks,
               "tokens_per_s": toks / secs, "round_s": secs / args.rounds}
        if args.kill and k > 1:
            s, t, (victim, at) = run_round(fleet, groups(99, args.groups, args.n, args.max_new_tokens), kill=True)
            done = time.monotonic()
            st = fleet.stats()["fleet"]
            rec = st["recoveries"][-1] if st["recoveries"] else {}
            out.update(kill_round_s=s, victim=victim, kill_to_round_done_s=done - at,
                       kill_to_new_instance_s=rec.get("restarted_at", at) - at,
                       kill_to_resubmitted_s=rec.get("replayed_at", at) - at,
                       groups_resubmitted=rec.get("groups_resubmitted"),
                       groups_delivered=st["groups_delivered"], duplicates_dropped=st["duplicate_groups_dropped"],
                       pending_after=st["groups_pending"])
        return out
    finally:
        fleet.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--groups", type=int, default=32, help="groups per round")
    ap.add_argument("--n", type=int, default=4, help="samples per group")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--round-groups", type=int, default=0, help="engine.round_groups of each worker (0: a batch "
                    "whenever the worker runs out of work; a fleet worker gets only part of each round)")
    ap.add_argument("--threads", type=int, default=1, help="forward threads per worker")
    ap.add_argument("--routing", default="affine")
    ap.add_argument("--kill", action="store_true", help="also measure recovery from a SIGKILLed worker")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import longtail

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", object_store_memory=100 * 1024 * 1024, configure_logging=False,
             runtime_env={"py_modules": [longtail]})
    results = [bench(k, args) for k in args.workers]
    ray.shutdown()
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        line = f"K={r['workers']}: {r['tokens_per_s']:.0f} tokens/s, {r['round_s']:.2f} s/round"
        if "kill_round_s" in r:
            line += (f"; killed {r['victim']}: new instance after {r['kill_to_new_instance_s']:.2f} s, lost groups "
                     f"resubmitted after {r['kill_to_resubmitted_s']:.2f} s, round done {r['kill_to_round_done_s']:.2f} s "
                     f"after the kill")
        print(line)


if __name__ == "__main__":
    main()
