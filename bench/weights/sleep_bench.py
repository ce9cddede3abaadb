"""SLEEP / WAKE_UP on one GPU as a colocated trainer sees them: how much device memory a sleeping
CUDA longtail-worker gives back (torch.cuda.mem_get_info before and after), how long the client
round trips of SLEEP and WAKE_UP take, that the trainer can then allocate that memory, and that a
woken worker gives the same tokens and logprobs as before (deterministic mode; level 2: after the
weights come back by CUDA IPC while asleep).

    PYTHONPATH=trainer_bridge/python LONGTAIL_BUILD_DIR=build python3 bench/weights/sleep_bench.py \\
        --models small,1.5b --repeat 3 --kv-fraction 0.5 [--json OUT.json]

small = configs/models/chain-qwen3 (the bundled policy); 1.5b = random Qwen2.5-1.5B-shape weights
written by bench/replay/random_checkpoint.py.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from longtail import Client, Group

REPO = pathlib.Path(__file__).resolve().parents[2]
MiB = 1 << 20


def free_bytes() -> int:
    torch.cuda.synchronize()
    return torch.cuda.mem_get_info()[0]


def rollout(c: Client, vocab: int, tag: str):
    """Four seeded T = 1 samples of 24 tokens: the same draws on every call (sample key = group id)."""
    c.submit([Group(f"{tag}-{k}", [(7 * k + 3) % vocab, 5 % vocab, 9 % vocab], n=2, max_tokens=24, temperature=1.0,
                    seed=3, ignore_eos=True) for k in range(2)])
    got = []
    while len(got) < 4:
        b = c.next_batch(timeout=300)
        assert b is not None, "no batch"
        got += b.trajectories
        c.ack(b)
    got.sort(key=lambda t: (t.group_id, t.sample_index))
    return [(t.response_tokens.tolist(), t.behaviour_logprobs.tolist()) for t in got]


def checkpoint(name: str, tmp: pathlib.Path) -> pathlib.Path:
    if name == "small":
        return REPO / "configs/models/chain-qwen3"
    d = tmp / name
    subprocess.run([sys.executable, str(REPO / "bench/replay/random_checkpoint.py"), "--shape", name, "--out", str(d)],
                   check=True)
    return d


def bench(name: str, repeat: int, kv_fraction: float, worker_bin: str, tmp: pathlib.Path):
    from safetensors.torch import load_file

    d = checkpoint(name, tmp)
    vocab = json.loads((d / "config.json").read_text())["vocab_size"]
    endpoint = f"ipc://{tmp}/{name}.sock"
    log_path = tmp / f"{name}.log"
    log = open(log_path, "wb")
    base = free_bytes()
    proc = subprocess.Popen([worker_bin, "--model", str(d), "--backend", "cuda", "--backend-deterministic",
                             "--backend-kv-memory-fraction", str(kv_fraction), "--endpoint", endpoint],
                            stdout=log, stderr=subprocess.STDOUT)
    cycles = []
    try:
        with Client(endpoint, timeout=600.0) as c:
            assert "sleep:2" in c.worker.capabilities, c.worker.capabilities
            before = rollout(c, vocab, "r")
            worker_bytes = base - free_bytes()
            for _ in range(repeat):
                f0 = free_bytes()
                t0 = time.perf_counter()
                s = c.sleep(level=1)
                sleep_s = time.perf_counter() - t0
                f1 = free_bytes()
                # The trainer takes 90% of what came back, then gives it back before the wake.
                grab = torch.empty(int((f1 - f0) * 0.9), dtype=torch.uint8, device="cuda")
                del grab
                torch.cuda.empty_cache()
                t0 = time.perf_counter()
                w = c.wake_up()
                wake_s = time.perf_counter() - t0
                f2 = free_bytes()
                cycles.append({"freed_bytes": f1 - f0, "worker_reported_bytes": s["released_bytes"],
                               "sleep_s": sleep_s, "worker_sleep_s": s["seconds"], "wake_s": wake_s,
                               "worker_wake_s": w["seconds"], "retaken_bytes": f1 - f2})
            after_level1 = rollout(c, vocab, "r")
            # Level 2: the weights go too and come back from the trainer's CUDA tensors.
            # The checkpoint's own dtypes: the worker keeps norms in fp32, so a bf16 copy would change them.
            tensors = {k: v.to("cuda") for k, v in load_file(str(d / "model.safetensors")).items()}
            torch.cuda.synchronize()
            f0 = free_bytes()
            t0 = time.perf_counter()
            s2 = c.sleep(level=2)
            sleep2_s = time.perf_counter() - t0
            f1 = free_bytes()
            t0 = time.perf_counter()
            c.update_weights_from_tensors(1, tensors, source="cuda_ipc")
            update_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            c.wake_up()
            wake2_s = time.perf_counter() - t0
            after_level2 = rollout(c, vocab, "r")
            del tensors
            torch.cuda.empty_cache()
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    med = lambda k: statistics.median(x[k] for x in cycles)
    return {"model": name, "worker_device_bytes": worker_bytes, "kv_fraction": kv_fraction, "repeat": repeat,
            "level1_freed_bytes_median": med("freed_bytes"), "level1_sleep_s_median": med("sleep_s"),
            "level1_wake_s_median": med("wake_s"), "level1_worker_sleep_s_median": med("worker_sleep_s"),
            "level1_worker_wake_s_median": med("worker_wake_s"), "cycles": cycles,
            "level2_freed_bytes": f1 - f0, "level2_worker_reported_bytes": s2["released_bytes"],
            "level2_sleep_s": sleep2_s, "level2_ipc_update_s": update_s, "level2_wake_s": wake2_s,
            "same_outputs_after_level1": after_level1 == before, "same_outputs_after_level2": after_level2 == before,
            "worker_log_tail": log_path.read_text(errors="replace").splitlines()[-6:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,1.5b", help="comma list of small, 0.5b, 1.5b, 7b")
    ap.add_argument("--repeat", type=int, default=3, help="level-1 sleep/wake cycles per model (default 3)")
    ap.add_argument("--kv-fraction", type=float, default=0.5,
                    help="the worker's backend.kv_memory_fraction: share of free memory for KV (default 0.5)")
    ap.add_argument("--worker-bin", default=str(pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build"))
                                               / "bin" / "longtail-worker"))
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="longtail-sleepbench-") as tmp:
        for name in a.models.split(","):
            r = bench(name, a.repeat, a.kv_fraction, a.worker_bin, pathlib.Path(tmp))
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("cycles", "worker_log_tail")}), flush=True)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(out, indent=1))
    ok = all(r["same_outputs_after_level1"] and r["same_outputs_after_level2"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
