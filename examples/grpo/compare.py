"""Compares GRPO runs (metrics.jsonl of each): one overlaid plot of reward and rollout seconds per
step, and a Markdown table of per-run totals with each run's ratio to the first, plus whether the
reward curves are bitwise identical to the first run's. Torch-free.

  python -m examples.grpo.compare --out runs/cmp off=runs/off das=runs/das   # runs/cmp.{png,svg,table.md}
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Dict, List, Mapping, Sequence

from examples.grpo.metrics import plot_runs, read_jsonl


def summary(recs: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    tot = lambda k: sum(r[k] for r in recs if r.get(k) is not None)
    tokens, forwards, drafted = tot("response_tokens"), tot("forward_passes"), tot("tokens_drafted")
    return {
        "steps": len(recs),
        "rollout_s": tot("rollout_s"),
        "makespan_s": tot("makespan_s"),
        "draft_s": tot("draft_s"),
        "forward_s": tot("forward_s"),
        "sample_s": tot("sample_s"),
        "forward_passes": forwards,
        "response_tokens": tokens,
        "tokens_verified": tot("tokens_verified"),
        "tokens_per_forward": tokens / forwards if forwards else 0.0,
        "acceptance": tot("tokens_accepted") / drafted if drafted else 0.0,
        "weight_update_s_mean": tot("weight_update_s") / len(recs),
        "reward_first": recs[0]["reward_mean"],
        "reward_last": recs[-1]["reward_mean"],
        "reward_mean": tot("reward_mean") / len(recs),
    }


def markdown(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    names = list(runs)
    base_name = names[0]
    base = summary(runs[base_name])
    rows = ["| run | steps | rollout s (trainer wait) | vs first | worker makespan s | forwards | vs first | "
            "verified tokens | tokens/forward | "
            "acceptance | update s (mean) | reward first → last (mean) | reward curve = first | loss curve = first |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        s = summary(runs[n])
        same = [r["reward_mean"] for r in runs[n]] == [r["reward_mean"] for r in runs[base_name]]
        same_loss = [r.get("loss") for r in runs[n]] == [r.get("loss") for r in runs[base_name]]
        rows.append(f"| {n} | {s['steps']} | {s['rollout_s']:.2f} | {s['rollout_s'] / base['rollout_s']:.2f}x | "
                    f"{s['makespan_s']:.2f} | {s['forward_passes']} | {s['forward_passes'] / max(1, base['forward_passes']):.2f}x | {s['tokens_verified']} | "
                    f"{s['tokens_per_forward']:.2f} | {s['acceptance']:.2f} | {s['weight_update_s_mean']:.3f} | "
                    f"{s['reward_first']:.3f} → {s['reward_last']:.3f} ({s['reward_mean']:.3f}) | "
                    f"{'yes (bitwise)' if same else 'NO'} | {'yes (bitwise)' if same_loss else 'no'} |")
    return "\n".join(rows)


def time_split_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Where each run's rollout time went: the worker's forwards, drafting and acceptance (host), the
    rest of its round (scheduling, admission, batch assembly), and the trainer's wait beyond the
    worker's round (transport, submission, work outside the round clock)."""
    rows = ["| run | rollout s | worker makespan s | forwards s | draft s | accept/sample s | rest of round s | "
            "wait beyond the round s | ms per forward |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n, recs in runs.items():
        s = summary(recs)
        rest = s["makespan_s"] - s["forward_s"] - s["draft_s"] - s["sample_s"]
        per = 1e3 * s["makespan_s"] / s["forward_passes"] if s["forward_passes"] else 0.0
        rows.append(f"| {n} | {s['rollout_s']:.3f} | {s['makespan_s']:.3f} | {s['forward_s']:.3f} | {s['draft_s']:.3f} | "
                    f"{s['sample_s']:.3f} | {rest:.3f} | {s['rollout_s'] - s['makespan_s']:.3f} | {per:.3f} |")
    return "\n".join(rows)


def per_step_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    names = list(runs)
    head = "| step | " + " | ".join(f"{n} reward | {n} rollout s | {n} forwards" for n in names) + " |"
    rows = [head, "|" + "---|" * (1 + 3 * len(names))]
    for i in range(min(len(r) for r in runs.values())):
        cells = []
        for n in names:
            r = runs[n][i]
            cells.append(f"{r['reward_mean']:.4f} | {r['rollout_s']:.2f} | {r['forward_passes']}")
        rows.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="NAME=DIR", help="run directories holding metrics.jsonl, first = baseline")
    ap.add_argument("--out", required=True, help="output stem: <out>.png, <out>.svg, <out>.table.md")
    a = ap.parse_args(argv)
    runs: Dict[str, List[Dict[str, Any]]] = {}
    for item in a.runs:
        name, _, d = item.partition("=")
        if not d:
            ap.error(f"{item!r} is not NAME=DIR")
        path = pathlib.Path(d) / "metrics.jsonl"
        if not path.exists():
            ap.error(f"{path} does not exist")
        runs[name] = read_jsonl(path)
        if not runs[name]:
            ap.error(f"{path} is empty")
    stem = pathlib.Path(a.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    plot_runs(runs, stem)
    text = (markdown(runs) + "\n\nWhere the rollout time went:\n\n" + time_split_table(runs) +
            "\n\nPer step:\n\n" + per_step_table(runs) + "\n")
    stem.with_suffix(".table.md").write_text(text)
    print(text)
    print(json.dumps({n: summary(r) for n, r in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
