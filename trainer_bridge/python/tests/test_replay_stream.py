"""`longtail-replay --stream`: recorded rollouts (JSONL) reach a trainer as BATCH messages, one batch
per recorded round, every rollout exactly once, with its tokens intact."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

import numpy as np
import pytest

from longtail import Client
from conftest import REPO


def replay_binary() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build")) / "bin" / "longtail-replay"


def test_replay_streams_jsonl_rounds_to_a_trainer(tmp_path):
    if not replay_binary().exists() or not (replay_binary().parent / "longtail-stream").exists():
        pytest.skip("longtail-replay / longtail-stream are not built (set LONGTAIL_BUILD_DIR)")
    rows = [{"prompt_id": f"p{p}", "sample": s, "step": s, "prompt_tokens": [1, 2, p],
             "response_tokens": list(range(10 + p, 20 + p + s))}
            for s in range(3) for p in range(4)]
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    endpoint = f"ipc://{tmp_path}/stream.sock"
    proc = subprocess.Popen([str(replay_binary()), str(trace), "--stream", endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        got = []
        with Client(endpoint, credits=8) as c:
            deadline = time.monotonic() + 30
            while sum(len(b) for b in got) < len(rows) and time.monotonic() < deadline:
                b = c.next_batch(timeout=1.0)
                if b is not None:
                    got.append(b)
                    c.ack([b])
        assert proc.wait(timeout=60) == 0, proc.stdout.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [len(b) for b in got] == [4, 4, 4]  # one batch per recorded step
    seen = {(t.prompt_id, t.sample_index): t for b in got for t in b.trajectories}
    assert len(seen) == len(rows)
    for r in rows:
        t = seen[(r["prompt_id"], r["sample"])]
        assert t.prompt_tokens.tolist() == r["prompt_tokens"]
        assert t.response_tokens.tolist() == r["response_tokens"]
        assert t.policy_versions.tolist() == [r["step"]] * len(r["response_tokens"])
        assert np.all(np.isnan(t.behaviour_logprobs))  # a recording has no logprobs
