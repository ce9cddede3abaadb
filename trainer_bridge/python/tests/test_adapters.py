"""Batch.to_verl() and Batch.to_slime_samples(): verl's padded rollout tensors and slime's Sample
dicts, checked value by value on a hand-made batch."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from longtail.types import decode_batch
from test_types import batch_frames


def two_trajectories():
    # prompts [100, 100] and [101]; responses [0, 1, 2] and [0, 1, 2, 3, 4]; the second crossed a
    # weight update (current logprobs -0.5); behaviour logprobs -0.25, policy version 2 everywhere.
    header, frames = batch_frames([(2, 3), (1, 5)], current=(False, True))
    return decode_batch(msgpack.unpackb(frames[0]), frames, 10)


def test_to_verl_left_pads_prompts_and_right_pads_responses():
    out = two_trajectories().to_verl(pad_token_id=-7)
    t = out["batch"]
    assert t["prompts"].tolist() == [[100, 100], [-7, 101]]
    assert t["responses"].tolist() == [[0, 1, 2, -7, -7], [0, 1, 2, 3, 4]]
    assert t["input_ids"].tolist() == [[100, 100, 0, 1, 2, -7, -7], [-7, 101, 0, 1, 2, 3, 4]]
    assert t["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1]]
    # positions count real tokens from 0 and run on through the response (padding included), as verl's
    assert t["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6], [0, 0, 1, 2, 3, 4, 5]]
    assert t["response_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert t["rollout_log_probs"].tolist() == [[-0.25] * 3 + [-1, -1], [-0.25] * 5]
    assert t["current_log_probs"].tolist() == [[-0.25] * 3 + [-1, -1], [-0.5] * 5]
    assert t["policy_versions"].tolist() == [[2, 2, 2, -1, -1], [2] * 5]
    assert t["token_tis"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert t["input_ids"].dtype == np.int64 and t["rollout_log_probs"].dtype == np.float32
    assert np.isnan(t["reward"]).all() and t["weight"].tolist() == [1.0, 1.0]
    assert all(v.shape[0] == 2 for v in t.values())
    nt = out["non_tensor_batch"]
    assert nt["uid"].tolist() == ["g", "g"]  # verl's GRPO groups by uid
    assert nt["trajectory_uid"].tolist() == [0, 1] and nt["finish_reason"].tolist() == ["stop", "stop"]
    assert all(isinstance(v, np.ndarray) and v.dtype == object for v in nt.values())
    assert out["meta_info"]["seq"] == 7 and out["meta_info"]["policy_version"] == 2


def test_to_verl_fixed_widths_and_no_truncation():
    t = two_trajectories().to_verl(prompt_length=4, response_length=6)["batch"]
    assert t["prompts"].shape == (2, 4) and t["responses"].shape == (2, 6)
    assert t["position_ids"][1].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="response_length=4 is shorter than the batch's longest \\(5\\)"):
        two_trajectories().to_verl(response_length=4)


def test_to_slime_samples_uses_sample_field_names():
    s0, s1 = two_trajectories().to_slime_samples()
    assert s0["tokens"] == [100, 100, 0, 1, 2] and s0["response_length"] == 3
    assert s1["tokens"] == [101, 0, 1, 2, 3, 4] and s1["response_length"] == 5
    assert s0["loss_mask"] == [1, 1, 1] and s1["rollout_log_probs"] == [-0.25] * 5
    assert s0["status"] == "completed" and s0["weight_versions"] == ["2"]
    assert s0["group_index"] == s1["group_index"] == 0 and (s0["index"], s1["index"]) == (0, 1)
    assert s0["reward"] is None and s0["response"] == ""
    assert s1["current_log_probs"] == [-0.5] * 5 and s0["current_log_probs"] is None
    assert s0["metadata"]["group_id"] == "g" and s0["metadata"]["group_metadata"] == b"m"


def test_slime_status_and_weight_versions_follow_the_trajectory():
    b = two_trajectories()
    b.trajectories[0].finish_reason = "length"
    b.trajectories[1].finish_reason = "aborted"
    b.trajectories[1].policy_versions = np.array([3, 3, 4, 4, 5], np.int64)
    s0, s1 = b.to_slime_samples()
    assert s0["status"] == "truncated" and s1["status"] == "aborted"
    assert s1["weight_versions"] == ["3", "4", "5"]
    b.trajectories[0].finish_reason = "exploded"
    with pytest.raises(ValueError, match="exploded"):
        b.to_slime_samples()
