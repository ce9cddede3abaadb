"""GRPO on a longtail worker through the Python client only: the loop the project exists for.

Each step: the worker rolls out G prompt groups x n samples of the chain task (examples/task) with
the live weights -> one BATCH of trajectories as tensors -> rewards from the task's checker ->
group-normalised advantages -> PPO-clip token loss against the batch's behaviour logprobs (TIS and
the VCPO learning-rate scale from the batch's importance statistics, both options) -> one optimizer
step -> the new weights pushed to the worker as the next policy version -> the next round, whose
drafts come from the earlier rounds' rollouts of the same prompts.

  python -m examples.grpo.train_grpo --steps 10 --speculation das --out runs/das
  python -m examples.grpo.train_grpo --endpoint tcp://host:5555 ...   # a worker you started

Starts its own longtail-worker (build/bin, or --worker-bin) with a generated config unless
--endpoint is given. Writes <out>/metrics.jsonl (one line per step), <out>/grpo.png and .svg
(reward and rollout seconds per step), <out>/worker.yaml and worker.log. With the CPU backend the
rollouts are bitwise independent of speculation, so --speculation off and das give identical
reward curves; on a GPU that takes the CUDA worker's deterministic mode and --deterministic.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np
import torch
import transformers

from longtail import Client, Group

from examples.grpo.loss import LossOptions, group_advantages, ppo_token_loss, response_logprobs
from examples.grpo.metrics import plot_run, step_record
from examples.grpo.weights import make_transport
from examples.grpo.worker import WorkerProcess, parse_override, wait_for_socket, worker_binary, worker_config
from examples.task import CharTokenizer, check_ids, problems, prompt_ids

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "configs" / "models" / "chain-qwen3"


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("run")
    g.add_argument("--model", default=str(DEFAULT_MODEL), help="initial HF checkpoint (default: the bundled SFT policy)")
    g.add_argument("--out", required=True, help="run directory: metrics.jsonl, plots, worker config and log")
    g.add_argument("--steps", type=int, default=10, help="GRPO steps = batches = weight updates (default 10)")
    g.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="trainer device (default cpu)")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    g.add_argument("--seed", type=int, default=0, help="torch seed and the worker's sampling seed")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic torch kernels (the CUDA worker's own mode is a worker setting: "
                        "--worker-set backend.deterministic=true)")
    g = ap.add_argument_group("rollouts")
    g.add_argument("--groups", type=int, default=8, help="prompt groups per step, G (default 8)")
    g.add_argument("--samples", type=int, default=8, help="samples per group, n (default 8)")
    g.add_argument("--max-new-tokens", type=int, default=512, help="response cap (default 512)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    g.add_argument("--prompt-seed", type=int, default=1, help="chain-task prompt set (default 1)")
    g.add_argument("--prompt-pool", type=int, default=16,
                   help="distinct prompts, cycled epoch by epoch in a seeded order (default 16)")
    g.add_argument("--speculation", choices=["off", "das"], default="das", help="worker speculation (default das)")
    g.add_argument("--partial-rollouts", type=float, default=1.0, metavar="F",
                   help="APRIL over-provisioning: keep ceil(F*G) groups in flight, carry the unfinished "
                        "over (default 1 = off)")
    g = ap.add_argument_group("worker")
    g.add_argument("--endpoint", default="", help="connect to this worker instead of starting one")
    g.add_argument("--weights-dir", default="",
                   help="where pushed checkpoints go (must be in the worker's weights.allowed_dirs; "
                        "default <out>/weights)")
    g.add_argument("--worker-bin", default="", help="longtail-worker binary (default $LONGTAIL_BUILD_DIR/bin or build/bin)")
    g.add_argument("--worker-backend", choices=["cpu", "cuda"], default="", help="default: --device")
    g.add_argument("--worker-threads", type=int, default=1, help="CPU backend threads (default 1)")
    g.add_argument("--sleep-level", type=int, choices=[0, 1, 2], default=0,
                   help="colocated trainer: put the worker to sleep while the trainer trains (1 frees its KV "
                        "cache, 2 its weights too; they come back with the push) and wake it before the next "
                        "round (vLLM sleep mode; default 0 = never)")
    g.add_argument("--worker-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra worker YAML setting, dotted key (repeatable), e.g. engine.speculation.max_budget=8")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=5e-5,
                   help="AdamW learning rate (default 5e-5; 5e-4 made the bundled policy drift, see bench/results)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (default 1)")
    g.add_argument("--clip-low", type=float, default=0.2, help="PPO epsilon below 1 (default 0.2)")
    g.add_argument("--clip-high", type=float, default=0.28, help="PPO epsilon above 1 (default 0.28, DAPO)")
    g.add_argument("--tis", action="store_true",
                   help="decoupled PPO ratio against the latest policy + truncated token importance weights "
                        "(token_tis) for tokens sampled under older weights (default off, as in verl)")
    g.add_argument("--vcpo", action="store_true",
                   help="scale the step's learning rate by the batch's importance lr_scale = sqrt(min(1, ESS/B)) "
                        "(default off)")
    g.add_argument("--seq-mean", action="store_true", help="per-sequence loss mean instead of DAPO's token mean")
    g.add_argument("--no-std", action="store_true", help="Dr. GRPO advantages (no division by the group std)")
    g.add_argument("--graded", action="store_true", help="graded reward (share of right lines) instead of 1/0")
    g.add_argument("--micro-tokens", type=int, default=8192, help="padded tokens per backward micro-batch")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.groups < 1 or a.samples < 2:
        ap.error("--steps, --groups must be >= 1 and --samples >= 2 (a group needs a baseline)")
    if not 1.0 <= a.partial_rollouts <= 16:
        ap.error("--partial-rollouts must be in [1, 16]")
    if a.prompt_pool < a.groups:
        ap.error("--prompt-pool must be at least --groups")
    a.worker_backend = a.worker_backend or a.device
    return a


class PromptSchedule:
    """Prompts of a fixed pool, each epoch in a new seeded order, as a trainer iterates a dataset."""

    def __init__(self, seed: int, pool: int) -> None:
        self.problems = problems(seed, pool)
        self.seed = seed
        self.rng = random.Random(seed)
        self.order: List[int] = []
        self.submitted = 0

    def next(self) -> tuple:
        if not self.order:
            self.order = list(range(len(self.problems)))
            self.rng.shuffle(self.order)
        i = self.order.pop(0)
        self.submitted += 1
        return f"s{self.seed}-{i}", self.problems[i]


def make_groups(sched: PromptSchedule, count: int, tok: CharTokenizer, a: argparse.Namespace) -> List[Group]:
    out = []
    for _ in range(count):
        pid, p = sched.next()
        out.append(Group(group_id=f"{pid}#{sched.submitted}", prompt_id=pid, prompt_tokens=prompt_ids(tok, p.prompt),
                         n=a.samples, max_new_tokens=a.max_new_tokens, temperature=a.temperature, seed=a.seed))
    return out


def micro_batches(order: List[int], lengths: List[int], budget: int) -> List[List[int]]:
    """Rows (sorted by length) cut into micro-batches of at most `budget` padded tokens."""
    out, cur = [], []
    for i in order:
        if cur and lengths[i] * (len(cur) + 1) > budget:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def train_step(model, opt, trajs, rewards: List[float], lr: float, a: argparse.Namespace, device) -> Dict[str, float]:
    """One optimizer step on the batch; returns loss statistics."""
    opts = LossOptions(clip_low=a.clip_low, clip_high=a.clip_high, tis=a.tis, seq_mean=a.seq_mean,
                       scale_by_std=not a.no_std)
    adv = group_advantages(rewards, [t.group_id for t in trajs], scale_by_std=opts.scale_by_std)
    total_tokens = float(sum(t.response_tokens.size for t in trajs))
    lengths = [t.prompt_tokens.size + t.response_tokens.size for t in trajs]
    order = sorted(range(len(trajs)), key=lambda i: (lengths[i], i))
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    stats = {"loss": 0.0, "clipped_tokens": 0.0, "kl_sum": 0.0}
    model.train()
    for rows in micro_batches(order, lengths, a.micro_tokens):
        width = max(lengths[i] for i in rows)
        rwidth = max(trajs[i].response_tokens.size for i in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), rwidth, dtype=torch.bool)
        mu = torch.zeros(len(rows), rwidth)
        prox = torch.zeros(len(rows), rwidth)
        tisw = torch.ones(len(rows), rwidth)
        for j, i in enumerate(rows):
            t = trajs[i]
            p, r = t.prompt_tokens.size, t.response_tokens.size
            ids[j, :p] = torch.from_numpy(t.prompt_tokens.astype(np.int64))
            ids[j, p:p + r] = torch.from_numpy(t.response_tokens.astype(np.int64))
            mask[j, :r] = True
            mu[j, :r] = torch.from_numpy(t.behaviour_logprobs.copy())
            prox[j, :r] = torch.from_numpy((t.behaviour_logprobs if t.current_logprobs is None
                                            else t.current_logprobs).copy())
            if t.token_tis is not None:
                tisw[j, :r] = torch.from_numpy(t.token_tis.copy())
        plen = torch.tensor([trajs[i].prompt_tokens.size for i in rows])
        rlen = torch.tensor([trajs[i].response_tokens.size for i in rows])
        logp = response_logprobs(model, ids.to(device), plen, rlen, rwidth)
        loss, s = ppo_token_loss(logp, mu.to(device), prox.to(device), tisw.to(device), adv[rows].to(device),
                                 mask.to(device), opts, total_tokens, float(len(trajs)))
        loss.backward()
        stats["loss"] += float(loss.detach())
        for k in ("clipped_tokens", "kl_sum"):
            stats[k] += s[k]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip))
    opt.step()
    return {"loss": stats["loss"], "clip_fraction": stats["clipped_tokens"] / total_tokens,
            "approx_kl": stats["kl_sum"] / total_tokens, "grad_norm": grad_norm,
            "advantage_nonzero": float((adv != 0).float().mean())}


def main(argv: Sequence[str] = None) -> int:
    a = parse_args(argv)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model_dir = pathlib.Path(a.model).resolve()
    tok = CharTokenizer.load(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.99))

    weights_dir = pathlib.Path(a.weights_dir or out / "weights").resolve()
    worker = None
    endpoint = a.endpoint
    if not endpoint:
        sock_dir = pathlib.Path(tempfile.mkdtemp(prefix="longtail-grpo-"))
        endpoint = f"ipc://{sock_dir}/worker.sock"
        overrides = [parse_override(s) for s in a.worker_set]
        cfg = worker_config(model_dir, endpoint, weights_dir, backend=a.worker_backend, threads=a.worker_threads,
                            round_groups=a.groups, overprovision=a.partial_rollouts,
                            speculation=a.speculation == "das", overrides=overrides)
        weights_dir.mkdir(parents=True, exist_ok=True)
        worker = WorkerProcess(worker_binary(a.worker_bin), cfg, out)
        wait_for_socket(sock_dir / "worker.sock", worker)
    transport = make_transport(endpoint, weights_dir, model_dir)
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    sched = PromptSchedule(a.prompt_seed, a.prompt_pool)
    records = []
    try:
        client = Client(endpoint, credits=2, timeout=60.0)
        in_flight = math.ceil(a.partial_rollouts * a.groups)
        client.submit(make_groups(sched, in_flight, tok, a))
        t_wait = time.perf_counter()
        for step in range(a.steps):
            batch = None
            while batch is None:
                batch = client.next_batch(timeout=5.0)
                if batch is None and worker is not None:
                    worker.check_alive()
            rollout_s = time.perf_counter() - t_wait
            # Finishing order depends on speculation; the loss must not.
            trajs = sorted(batch.trajectories, key=lambda t: (t.group_id, t.sample_index))
            verdicts = [check_ids(tok, t.prompt_tokens, t.response_tokens, graded=a.graded) for t in trajs]
            rewards = [v.reward for v in verdicts]
            client.set_rewards({t.uid: r for t, r in zip(trajs, rewards)})
            lr_scale = float(batch.importance.get("lr_scale", 1.0)) if a.vcpo else 1.0
            slept = client.sleep(a.sleep_level) if a.sleep_level else None  # samples in flight pause
            t0 = time.perf_counter()
            train = train_step(model, opt, trajs, rewards, a.lr * lr_scale, a, device)
            train_s = time.perf_counter() - t0
            push = transport.push(client, model, step + 1)
            if slept is not None:
                push["sleep_s"], push["released_bytes"] = slept["seconds"], slept["released_bytes"]
                push["wake_s"] = client.wake_up()["seconds"]
            client.ack(batch)
            if step + 1 < a.steps:  # keep ceil(F*G) groups in flight
                client.submit(make_groups(sched, len({t.group_id for t in trajs}), tok, a))
            t_wait = time.perf_counter()
            rec = step_record(step, batch, trajs, verdicts, rollout_s, train_s, push, train, lr_scale)
            records.append(rec)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"step {step:3d}  reward {rec['reward_mean']:.3f}  pass {rec['pass_rate']:.3f}  "
                  f"len {rec['response_len_mean']:.0f}/{rec['response_len_p99']:.0f}/{rec['response_len_max']}  "
                  f"rollout {rollout_s:.2f}s  tok/fwd {rec['tokens_per_forward']:.2f}  "
                  f"accept {rec['acceptance']:.2f}  off-policy {100 * rec['off_policy_token_share']:.1f}%  "
                  f"update {push['total_s']:.2f}s  loss {train['loss']:+.4f}", flush=True)
        client.close()
    finally:
        if worker is not None:
            worker.stop()
    plot_run(records, out / "grpo", title=f"GRPO, speculation {a.speculation}, partial {a.partial_rollouts:g}")
    print(f"wrote {metrics_path} and {out / 'grpo.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
