"""The rollout-time accounting of the GRPO tools, torch-free: round_overheads.py drives a live worker
through two rounds and splits each trainer wait into makespan, transport and the rest; compare.py's
time split adds the worker's forward / draft / sample seconds up per run. Skipped when the worker is
not built."""

import json
import pathlib

import pytest

from examples.grpo import compare, round_overheads
from examples.grpo.worker import worker_binary


def test_round_overheads_splits_the_wait(tmp_path):
    if not worker_binary().exists():
        pytest.skip(f"{worker_binary()} is not built (set LONGTAIL_BUILD_DIR)")
    out = tmp_path / "ov.json"
    assert round_overheads.main(["--rounds", "2", "--groups", "2", "--samples", "2", "--max-new-tokens", "16",
                                 "--train-s", "0.01", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    for r in rows:
        assert r["wait_s"] > 0 and r["makespan_s"] > 0 and r["transport_s"] >= 0
        assert r["outside_s"] == pytest.approx(r["wait_s"] - r["makespan_s"] - r["transport_s"])
        assert r["forward_passes"] >= 1 and r["forward_s"] <= r["makespan_s"]


def test_time_split_adds_up():
    recs = [{"rollout_s": 1.0, "makespan_s": 0.8, "forward_s": 0.5, "draft_s": 0.1, "sample_s": 0.05,
             "forward_passes": 100, "response_tokens": 200, "tokens_drafted": 0, "tokens_accepted": 0,
             "tokens_verified": 300, "weight_update_s": 0.01, "reward_mean": 0.5}]
    table = compare.time_split_table({"das": recs})
    row = table.splitlines()[2].split("|")
    assert [c.strip() for c in row[1:-1]] == ["das", "1.000", "0.800", "0.500", "0.100", "0.050", "0.150", "0.200",
                                              "8.000"]
