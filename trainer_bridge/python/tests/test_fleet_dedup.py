"""Group-level dedup of the fleet (a batch with some already-delivered groups), without Ray."""

from __future__ import annotations

import numpy as np

from longtail.fleet import _subset
from longtail.types import Batch, Trajectory


def make_batch():
    trs = []
    arrays = {k: [] for k in ("prompt_tokens", "response_tokens", "behaviour_logprobs", "policy_versions",
                              "current_logprobs", "token_tis")}
    for i, (gid, w) in enumerate([("a", 1.0), ("a", 1.0), ("b", 4.0), ("b", 0.5)]):
        p = np.array([1, 2, i], dtype=np.int32)
        r = np.arange(i + 1, dtype=np.int32) + 10 * i
        lp = -np.ones(i + 1, dtype=np.float32) * i
        pv = np.zeros(i + 1, dtype=np.int64)
        cur = lp - 1 if gid == "b" else None
        trs.append(Trajectory(uid=i, group_id=gid, prompt_id="p" + gid, sample_index=i % 2, prompt_tokens=p,
                              response_tokens=r, behaviour_logprobs=lp, policy_versions=pv, current_logprobs=cur,
                              token_tis=None, finish_reason="stop", metadata=b"", reward=None,
                              log_ratio=float(np.log(w)), weight=w, truncated_weight=w))
        for k, v in (("prompt_tokens", p), ("response_tokens", r), ("behaviour_logprobs", lp), ("policy_versions", pv)):
            arrays[k].append(v)
        if cur is not None:
            arrays["current_logprobs"].append(cur)
    flat = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in arrays.items()}
    imp = {"trajectories": 4, "ess": 1.0, "baselines": [{"group_id": "a", "baseline": 0.1, "valid": True},
                                                         {"group_id": "b", "baseline": 0.2, "valid": True}]}
    return Batch(worker_id="w", seq=3, round=1, policy_version=0, created_ns=0, received_ns=0, trajectories=trs,
                 importance=imp, stats={}, arrays=flat)


def test_subset_keeps_only_the_new_groups():
    b = make_batch()
    s = _subset(b, [2, 3])
    assert s.key == b.key and [t.group_id for t in s.trajectories] == ["b", "b"]
    assert s.arrays["response_tokens"].tolist() == [20, 21, 22, 30, 31, 32, 33]
    assert s.arrays["prompt_tokens"].tolist() == [1, 2, 2, 1, 2, 3]
    assert s.arrays["current_logprobs"].size == 7
    assert [x["group_id"] for x in s.importance["baselines"]] == ["b"]
    w = np.array([4.0, 0.5])
    assert abs(s.importance["ess"] - w.sum() ** 2 / (w * w).sum()) < 1e-12
    assert s.importance["trajectories"] == 2 and s.importance["off_policy_trajectories"] == 2
    p = s.padded(as_torch=False)
    assert p["response_tokens"].shape == (2, 4)
    assert len(b.trajectories) == 4  # the original is untouched
