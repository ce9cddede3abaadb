"""Client-side pieces that need no worker: SUBMIT encoding, BATCH decoding with its length checks,
padding into [B, L] arrays, and the duplicate-tracking set."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from longtail import Group, ProtocolViolation
from longtail.client import _SeqSet
from longtail.protocol import encode_submit
from longtail.types import decode_batch


def batch_frames(lens, current=(False, False)):
    trs, prompts, responses = [], [], []
    for i, (p, r) in enumerate(lens):
        trs.append({"uid": i, "group_id": "g", "prompt_id": "g", "sample_index": i, "prompt_len": p,
                    "response_len": r, "has_current_logprobs": current[i], "has_token_tis": False,
                    "finish_reason": "stop", "metadata": b"m", "reward": None, "log_ratio": 0.0,
                    "weight": 1.0, "truncated_weight": 1.0, "policy_version_min": 0})
        prompts += [100 + i] * p
        responses += list(range(r))
    nr = len(responses)
    nc = sum(r for (p, r), c in zip(lens, current) if c)
    header = {"type": "BATCH", "seq": 7, "worker_id": "w", "round": 1, "policy_version": 2, "created_ns": 5,
              "trajectories": trs, "importance": {"trajectories": len(lens)}, "stats": {"round": 1},
              "frames": {"prompt_tokens": 1, "response_tokens": 2, "behaviour_logprobs": 3,
                         "policy_versions": 4, "current_logprobs": 5, "token_tis": 6}}
    frames = [msgpack.packb(header), np.array(prompts, "<i4").tobytes(), np.array(responses, "<i4").tobytes(),
              np.full(nr, -0.25, "<f4").tobytes(), np.full(nr, 2, "<i8").tobytes(),
              np.full(nc, -0.5, "<f4").tobytes(), b""]
    return header, frames


def test_submit_encoding():
    g = Group(group_id="a", prompt_tokens=[1, 2, 3], n=4, temperature=0.5, stop_tokens=[9], metadata=b"x")
    frames = encode_submit(3, [g.to_wire(), Group(group_id="b", prompt_tokens=np.array([7], np.int64)).to_wire()])
    h = msgpack.unpackb(frames[0])
    assert h["type"] == "SUBMIT" and h["req"] == 3 and h["frames"] == {"prompt_tokens": 1}
    assert [x["prompt_len"] for x in h["groups"]] == [3, 1]
    assert h["groups"][0]["sampling"]["temperature"] == 0.5 and h["groups"][0]["stop_tokens"] == [9]
    assert np.frombuffer(frames[1], "<i4").tolist() == [1, 2, 3, 7]
    assert Group.coerce({"group_id": "c", "prompt_tokens": [1]}).n == 1


def test_batch_decoding_and_padding():
    header, frames = batch_frames([(2, 3), (1, 5)], current=(False, True))
    b = decode_batch(msgpack.unpackb(frames[0]), frames, 10)
    assert b.key == ("w", 7) and len(b) == 2
    t0, t1 = b.trajectories
    assert t0.prompt_tokens.tolist() == [100, 100] and t1.prompt_tokens.tolist() == [101]
    assert t0.response_tokens.tolist() == [0, 1, 2] and t1.response_tokens.tolist() == [0, 1, 2, 3, 4]
    assert t0.current_logprobs is None and t1.current_logprobs.tolist() == [-0.5] * 5
    assert t1.policy_versions.dtype == np.int64 and t0.metadata == b"m"
    p = b.padded(pad_token=-1, as_torch=False)
    assert p["response_tokens"].shape == (2, 5)
    assert p["response_tokens"][0].tolist() == [0, 1, 2, -1, -1]
    assert p["response_mask"].sum() == 8
    assert p["current_logprobs"][0, :3].tolist() == [-0.25] * 3  # behaviour where none was computed
    assert np.isnan(p["reward"]).all()


def test_batch_with_wrong_frame_size_is_refused():
    header, frames = batch_frames([(2, 3)])
    frames[2] = frames[2][:-4]
    with pytest.raises(ProtocolViolation, match="response_tokens"):
        decode_batch(msgpack.unpackb(frames[0]), frames, 0)
    header, frames = batch_frames([(2, 3)])
    with pytest.raises(ProtocolViolation, match="out of range"):
        decode_batch(msgpack.unpackb(frames[0]), frames[:3], 0)


def test_seq_set_compacts():
    s = _SeqSet()
    for x in [2, 0, 1, 5]:
        s.add(x)
    assert 0 in s and 1 in s and 2 in s and 5 in s and 3 not in s
    assert s.watermark == 3 and s.above == {5}
