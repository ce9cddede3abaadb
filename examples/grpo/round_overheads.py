"""Where a GRPO step's rollout time goes besides the worker's forwards: the GRPO trainer's loop
(examples/grpo/train_grpo.py) without torch and without learning, so the per-round overheads
speculation does not touch can be measured on any machine. Each round: push the same weights as a
new version (shm), submit G chain-task groups x n samples, wait for the batch, set rewards, wait
--train-s (the optimizer step), ack. Per round it splits the trainer's wait into

  makespan_s   the worker's own round time (first step to the batch: admission, prefill, decode)
  transport_s  batch ready on the worker (created_ns) to decoded in the trainer (received_ns)
  outside_s    the rest: from SUBMIT_OK to the round's first step, and from the last step to
               the batch being ready (work the worker does outside its round clock)

and reports the worker's own draft / forward / sample seconds.

  PYTHONPATH=.:trainer_bridge/python python -m examples.grpo.round_overheads --rounds 6 --speculation das
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

from longtail import Client, Group
from longtail.safetensors_np import read_f32

from examples.grpo.worker import WorkerProcess, wait_for_socket, worker_binary, worker_config
from examples.task import CharTokenizer, problems, prompt_ids

REPO = pathlib.Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "configs/models/chain-qwen3"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--groups", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--speculation", choices=["off", "das"], default="das")
    ap.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--worker-bin", default="")
    ap.add_argument("--worker-set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--push", choices=["shm", "none"], default="shm", help="weight push per round (default shm)")
    ap.add_argument("--train-s", type=float, default=0.1,
                    help="seconds the trainer 'trains' between a batch and the next push (default 0.1)")
    ap.add_argument("--json", help="write per-round records here")
    a = ap.parse_args(argv)
    from examples.grpo.worker import parse_override

    model = pathlib.Path(a.model).resolve()
    tok = CharTokenizer.load(model)
    pool = problems(1, a.groups * 2)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="longtail-overheads-"))
    endpoint = f"ipc://{tmp}/worker.sock"
    cfg = worker_config(model, endpoint, tmp / "weights", backend=a.backend, threads=1, round_groups=a.groups,
                        speculation=a.speculation == "das", overrides=[parse_override(s) for s in a.worker_set])
    (tmp / "weights").mkdir()
    worker = WorkerProcess(worker_binary(a.worker_bin), cfg, tmp)
    wait_for_socket(tmp / "worker.sock", worker)
    tensors = read_f32(model / "model.safetensors")
    rows = []
    try:
        with Client(endpoint, credits=2, timeout=600.0) as c:
            for r in range(a.rounds):
                t0 = time.perf_counter()
                if a.push == "shm" and r > 0:
                    c.update_weights_from_tensors(r, tensors, source="shm")
                push_s = time.perf_counter() - t0
                gs = []
                for k in range(a.groups):
                    i = (r * a.groups + k) % len(pool)  # each prompt recurs every other round
                    gs.append(Group(group_id=f"p{i}#{r}", prompt_id=f"p{i}", prompt_tokens=prompt_ids(tok, pool[i].prompt),
                                    n=a.samples, max_new_tokens=a.max_new_tokens, temperature=1.0, seed=0))
                t1 = time.perf_counter()
                c.submit(gs)
                t_sub = time.perf_counter()
                b = c.next_batch(timeout=600)
                t_got = time.perf_counter()
                assert b is not None
                c.set_rewards({t.uid: 0.0 for t in b.trajectories})
                time.sleep(a.train_s)
                c.ack(b)
                s = b.stats
                wait = t_got - t_sub
                transport = (b.received_ns - b.created_ns) * 1e-9
                rows.append({"round": r, "wait_s": wait, "makespan_s": s["makespan_s"], "transport_s": transport,
                             "outside_s": wait - s["makespan_s"] - transport, "submit_s": t_sub - t1,
                             "push_s": push_s, "forward_passes": s["forward_passes"], "steps": s["steps"],
                             "draft_s": s.get("draft_s", 0.0), "forward_s": s.get("forward_s", 0.0),
                             "sample_s": s.get("sample_s", 0.0), "response_tokens": s["response_tokens"],
                             "tokens_verified": s.get("tokens_verified", 0)})
                print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
                      flush=True)
    finally:
        worker.stop()
    later = rows[1:] or rows
    med = {k: statistics.median(x[k] for x in later) for k in ("wait_s", "makespan_s", "transport_s", "outside_s",
                                                                "submit_s", "push_s", "draft_s", "forward_s",
                                                                "sample_s")}
    print("median of rounds 1..: " + "  ".join(f"{k} {1e3 * v:.2f} ms" for k, v in med.items()))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"args": vars(a), "rounds": rows, "median": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
