"""Weight-update latency: UPDATE_WEIGHTS from a checkpoint directory vs from in-process tensors
through shared memory, against a live longtail-worker on this host.

Both sources carry the same fp32 tensors (the model's own, widened): the directory is a safetensors
copy on local disk (page cache warm after the first load), the tensors come from numpy arrays in
the trainer process. Each figure is the client's round trip: request sent -> UPDATE_WEIGHTS_OK,
which for shared memory includes copying the arrays into the segment.

    PYTHONPATH=trainer_bridge/python .venv/bin/python bench/weights/weights_bench.py \\
        --model configs/models/tiny-qwen3 --repeat 20 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from longtail import Client
from longtail.safetensors_np import read_f32, write_f32

REPO = pathlib.Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "configs/models/tiny-qwen3"), help="HF checkpoint directory")
    ap.add_argument("--repeat", type=int, default=20, help="updates per source (default 20)")
    ap.add_argument("--threads", type=int, default=1, help="worker CPU threads (default 1)")
    ap.add_argument("--worker-bin", default=str(pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build"))
                                               / "bin" / "longtail-worker"))
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()
    model = pathlib.Path(a.model)
    tensors = read_f32(model / "model.safetensors")
    nbytes = sum(t.nbytes for t in tensors.values())
    with tempfile.TemporaryDirectory(prefix="longtail-wbench-") as tmp:
        tmp = pathlib.Path(tmp)
        ckpt = tmp / "weights" / "f32"
        ckpt.mkdir(parents=True)
        for f in ("config.json", "generation_config.json"):
            if (model / f).exists():
                shutil.copy(model / f, ckpt / f)
        write_f32(ckpt / "model.safetensors", tensors)
        endpoint = f"ipc://{tmp}/w.sock"
        log = open(tmp / "worker.log", "wb")
        proc = subprocess.Popen([a.worker_bin, "--model", str(model), "--endpoint", endpoint, "--threads",
                                 str(a.threads), "--allow-weights-dir", str(tmp / "weights")],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            times = {"directory": [], "tensors": []}
            with Client(endpoint, timeout=60.0) as c:
                version = 0
                for _ in range(a.repeat):
                    for source in ("directory", "tensors"):
                        version += 1
                        t0 = time.perf_counter()
                        if source == "directory":
                            c.update_weights(version, ckpt)
                        else:
                            c.update_weights_from_tensors(version, tensors)
                        times[source].append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    result = {"model": str(model), "weight_bytes_f32": nbytes, "repeat": a.repeat, "threads": a.threads}
    for source, ts in times.items():
        result[source] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{model.name}: {nbytes / 1e6:.1f} MB fp32, {a.repeat} updates per source, worker threads {a.threads}")
        for source in times:
            r = result[source]
            print(f"  {source:9s} median {r['median_s'] * 1e3:8.1f} ms  min {r['min_s'] * 1e3:8.1f}  max {r['max_s'] * 1e3:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
