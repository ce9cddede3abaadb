#!/usr/bin/env python3
"""Worker memory with no credit: starts a real longtail-worker (CPU backend, bundled tiny
checkpoint), connects a trainer that grants no credit, and keeps submitting prompt groups for the
whole run. The worker must not generate (no credit) and must bound what it queues (QUEUE_FULL once
max_pending_groups wait), so its resident memory stays flat. Prints a markdown table: RSS right after
startup (the baseline), peak and final RSS, groups accepted and refused.

Usage: worker_memory.py [--seconds 60] [--build-dir build] [--max-pending-groups 1024]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "trainer_bridge" / "python"))

from longtail import Client, Group, WorkerError  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--build-dir", default=os.environ.get("LONGTAIL_BUILD_DIR", str(REPO / "build")))
    ap.add_argument("--max-pending-groups", type=int, default=1024)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="longtail-mem-")
    endpoint = f"ipc://{tmp}/w.sock"
    proc = subprocess.Popen([str(pathlib.Path(args.build_dir) / "bin" / "longtail-worker"),
                             "--model", str(REPO / "configs" / "models" / "tiny-qwen3"), "--endpoint", endpoint,
                             "--threads", "1", "--max-pending-groups", str(args.max_pending_groups),
                             "--log-level", "error"])
    try:
        c = Client(endpoint, credits=0, auto_credit=False)
        time.sleep(0.5)
        base = rss_kib(proc.pid)
        peak = base
        accepted = refused = 0
        start = time.monotonic()
        i = 0
        next_sample = start
        while time.monotonic() - start < args.seconds:
            batch = [Group(group_id=f"m{i}-{k}", prompt_tokens=[(i + k + t) % 2000 + 3 for t in range(args.prompt_tokens)],
                           n=8, max_new_tokens=256) for k in range(16)]
            i += 1
            try:
                accepted += c.submit(batch)
            except WorkerError as e:
                if e.code != "QUEUE_FULL":
                    raise
                refused += len(batch)
                time.sleep(0.005)
            if time.monotonic() >= next_sample:
                peak = max(peak, rss_kib(proc.pid))
                next_sample += 1.0
        final = rss_kib(proc.pid)
        peak = max(peak, final)
        stats = c.stats()
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"\n### Worker memory with no credit for {args.seconds:.0f} s (max_pending_groups {args.max_pending_groups}, "
          f"groups of 8 x {args.prompt_tokens}-token prompts submitted continuously)\n")
    print("| RSS after startup (baseline) KiB | peak RSS KiB | final RSS KiB | peak / baseline | groups accepted | "
          "groups refused (QUEUE_FULL) | tokens generated |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {base} | {peak} | {final} | {peak / base:.2f} | {accepted} | {refused} | "
          f"{stats['engine']['tokens_generated']} |")
    return 0 if stats["engine"]["tokens_generated"] == 0 and accepted <= args.max_pending_groups else 1


if __name__ == "__main__":
    sys.exit(main())
