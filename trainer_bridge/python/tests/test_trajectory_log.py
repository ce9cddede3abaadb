"""longtail.trajectory_log reads the engine's binary trajectory log (rollout/trajectory_log.h): a log
written by longtail-generate (--trajectory-log, the engine option) reads back with the tokens and
logprobs the tool printed, the same rollouts longtail-replay --export jsonl writes, and corrupt or
foreign files are refused with the byte offset."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from longtail.trajectory_log import TrajectoryLogError, read_trajectory_log

REPO = pathlib.Path(__file__).resolve().parents[3]
MODEL = REPO / "configs" / "models" / "tiny-qwen3"
BIN = pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build")) / "bin"


def tool(name: str) -> pathlib.Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


def generate_log(log: pathlib.Path, seed: int) -> list:
    out = subprocess.run([str(tool("longtail-generate")), "--model", str(MODEL), "--prompt", "1,2,3", "--prompt", "4,5",
                          "--n", "2", "--max-tokens", "8", "--seed", str(seed), "--trajectory-log", str(log)],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_generated_log_reads_back_as_printed(tmp_path):
    log = tmp_path / "run.ltlog"
    printed = generate_log(log, seed=3)
    rounds = read_trajectory_log(log)
    assert len(rounds) == 1 and rounds[0].round == 0
    by_key = {(int(t.group_id), t.sample_index): t for t in rounds[0].trajectories}
    assert len(by_key) == len(printed) == 4
    for line in printed:
        t = by_key[(line["prompt_index"], line["sample"])]
        assert t.response_tokens == line["tokens"]
        assert t.behaviour_logprobs == pytest.approx(line["logprobs"], abs=0, rel=1e-6)
        assert t.finish_reason == line["finish_reason"]
        assert t.prompt_tokens == ([1, 2, 3] if line["prompt_index"] == 0 else [4, 5])
        assert len(t.policy_versions) == len(t.response_tokens)

    # A second run appending to the same log continues its round numbers (issue 15: restarts).
    generate_log(log, seed=4)
    assert [r.round for r in read_trajectory_log(log)] == [0, 1]

    # The same rollouts as longtail-replay --export jsonl writes them.
    exported = subprocess.run([str(tool("longtail-replay")), str(log), "--export", "jsonl"], check=True,
                              capture_output=True, text=True).stdout
    lines = [json.loads(line) for line in exported.splitlines()]
    flat = [t for r in read_trajectory_log(log) for t in r.trajectories]
    assert [(x["prompt_id"], x["sample"], x["response_tokens"]) for x in lines] == \
        [(t.prompt_id, t.sample_index, t.response_tokens) for t in flat]


def test_foreign_and_corrupt_files_are_refused_with_the_offset(tmp_path):
    other = tmp_path / "x.jsonl"
    other.write_text('{"prompt_id": "p"}\n')
    with pytest.raises(TrajectoryLogError, match="not a longtail trajectory log"):
        read_trajectory_log(other)
    log = tmp_path / "run.ltlog"
    generate_log(log, seed=3)
    data = log.read_bytes()
    cut = tmp_path / "cut.ltlog"
    cut.write_bytes(data[:-5])  # inside the round boundary
    with pytest.raises(TrajectoryLogError, match="truncated record") as e:
        read_trajectory_log(cut)
    assert e.value.offset > 16
