"""Per-step records of a GRPO run (one JSON object per line of metrics.jsonl) and their plots.
Torch-free; matplotlib is imported only to plot."""

from __future__ import annotations

import pathlib
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np


def step_record(step: int, batch, trajs, verdicts, rollout_s: float, train_s: float, push: Mapping[str, float],
                train: Mapping[str, float], lr_scale: float) -> Dict[str, Any]:
    """Everything logged for one step. `rollout_s` is the trainer's wait for the batch (submission
    or previous update to arrival); `makespan_s` the worker's own round time."""
    lengths = np.array([t.response_tokens.size for t in trajs])
    s = batch.stats
    drafted, accepted = int(s.get("tokens_drafted", 0)), int(s.get("tokens_accepted", 0))
    forwards = int(s.get("forward_passes", 0))
    tokens = int(s.get("response_tokens", lengths.sum()))
    imp = batch.importance
    return {
        "step": step,
        "policy_version": batch.policy_version,
        "reward_mean": float(np.mean([v.reward for v in verdicts])),
        "pass_rate": float(np.mean([v.correct for v in verdicts])),
        "finished": float(np.mean([v.finished for v in verdicts])),
        "response_len_mean": float(lengths.mean()),
        "response_len_p99": float(np.percentile(lengths, 99)),
        "response_len_max": int(lengths.max()),
        "rollout_s": rollout_s,
        "makespan_s": float(s.get("makespan_s", 0.0)),
        # The worker's round split: host seconds drafting and accepting, seconds in forwards.
        "draft_s": float(s.get("draft_s", 0.0)),
        "forward_s": float(s.get("forward_s", 0.0)),
        "sample_s": float(s.get("sample_s", 0.0)),
        "response_tokens": tokens,
        "forward_passes": forwards,
        "tokens_per_forward": tokens / forwards if forwards else 0.0,
        "tokens_drafted": drafted,
        "tokens_accepted": accepted,
        # Tokens the forwards verified while decoding: each sequence-step checks its drafts plus one.
        # From the worker when it reports it (prefill included), else drafted + emitted - accepted.
        "tokens_verified": int(s["tokens_verified"]) if "tokens_verified" in s else drafted + tokens - accepted,
        "tokens_verified_source": "worker" if "tokens_verified" in s else "derived",
        "acceptance": accepted / drafted if drafted else 0.0,
        "off_policy_token_share": float(s.get("off_policy_token_share", 0.0)),
        "carried_over": int(s.get("carried_over", 0)),
        "ess_ratio": float(imp.get("ess_ratio", 1.0)),
        "lr_scale": lr_scale,
        "train_s": train_s,
        "weight_update_s": push["total_s"],
        "weight_write_s": push.get("write_s", 0.0),
        "weight_load_s": push.get("load_s", 0.0),
        "sleep_s": push.get("sleep_s", 0.0),            # the worker's SLEEP and WAKE_UP (--sleep-level)
        "wake_s": push.get("wake_s", 0.0),
        "sleep_released_bytes": int(push.get("released_bytes", 0)),
        **{k: float(v) for k, v in train.items()},
    }


def plot_run(records: Sequence[Mapping[str, Any]], stem: pathlib.Path, title: str = "") -> None:
    """<stem>.png and <stem>.svg: reward, rollout seconds and rollout forwards per step."""
    plot_runs({title or "run": records}, stem)


def plot_runs(runs: Mapping[str, Sequence[Mapping[str, Any]]], stem: pathlib.Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no plot {stem}.png (metrics.jsonl has every number)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.6))
    styles = ["-", "--", ":", "-."]
    for k, (name, recs) in enumerate(runs.items()):
        steps = [r["step"] for r in recs]
        ax1.plot(steps, [r["reward_mean"] for r in recs], styles[k % 4], marker="o", ms=3, label=name)
        ax2.plot(steps, [r["rollout_s"] for r in recs], styles[k % 4], marker="o", ms=3, label=name)
        ax3.plot(steps, [r["forward_passes"] for r in recs], styles[k % 4], marker="o", ms=3, label=name)
    ax1.set_xlabel("step")
    ax1.set_ylabel("mean reward")
    ax1.set_title("reward per step")
    ax2.set_xlabel("step")
    ax2.set_ylabel("seconds")
    ax2.set_title("rollout time per step")
    ax2.set_ylim(bottom=0)
    ax3.set_xlabel("step")
    ax3.set_ylabel("forward passes")
    ax3.set_title("rollout forwards per step")
    ax3.set_ylim(bottom=0)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    stem = pathlib.Path(stem)
    fig.savefig(stem.with_suffix(".png"), dpi=90)
    fig.savefig(stem.with_suffix(".svg"))
    plt.close(fig)


def read_jsonl(path: pathlib.Path) -> List[Dict[str, Any]]:
    import json
    return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines() if l.strip()]
