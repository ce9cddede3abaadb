"""Weight updates from in-process tensors through shared memory, against a real longtail-worker:
the same tensors give the same tokens and logprobs as their checkpoint directory, and a bad
manifest is refused with an error naming the problem while the previous version keeps serving.
No torch: the tiny checkpoint is read with numpy (its bf16 values widen to fp32 exactly)."""

from __future__ import annotations

import glob
import shutil

import msgpack
import numpy as np
import pytest

from longtail import Client, Group, WorkerError
from longtail.protocol import PROTOCOL_VERSION
from longtail.safetensors_np import read_f32, write_f32
from longtail.shared_weights import TensorSegment
from conftest import MODEL
from test_worker import collect, raw_reply, raw_socket


def perturbed():
    t = read_f32(MODEL / "model.safetensors")
    t["model.norm.weight"] = t["model.norm.weight"] * np.float32(1.5)
    return t


def rollout(c):
    # Greedy: a sampled draw is keyed by the sequence uid, which every SUBMIT renews.
    gs = [Group(group_id=f"g{i}", prompt_tokens=[5 + i, 6, 7, 8], n=1, max_new_tokens=8, temperature=0.0)
          for i in range(3)]
    c.submit(gs)
    trs = sorted((t for b in collect(c, 3) for t in b.trajectories), key=lambda t: (t.group_id, t.sample_index))
    return [(t.response_tokens.tolist(), t.behaviour_logprobs.tolist()) for t in trs]


def our_segments():
    return set(glob.glob("/dev/shm/longtail-*"))


def test_tensors_match_the_checkpoint_directory(start_worker, tmp_path):
    d = tmp_path / "weights" / "v2"
    shutil.copytree(MODEL, d)
    write_f32(d / "model.safetensors", perturbed())
    w = start_worker("--allow-weights-dir", str(tmp_path / "weights"))
    before = our_segments()
    with Client(w.endpoint) as c:
        base = rollout(c)
        assert c.update_weights_from_tensors(1, perturbed(), check_finite=True) == 1
        from_tensors = rollout(c)
        assert c.update_weights(2, d) == 2
        from_dir = rollout(c)
        assert c.stats()["engine"]["policy_version"] == 2
    assert from_tensors == from_dir
    assert from_tensors != base  # the perturbation is visible, so the comparison means something
    assert our_segments() == before  # unlinked after the update


@pytest.mark.parametrize("change, needle", [
    (lambda t: t.__setitem__("model.embed_tokens.weight", t["model.embed_tokens.weight"].T.copy()),
     '"model.embed_tokens.weight": wrong shape'),
    (lambda t: t.__setitem__("model.bogus.weight", np.zeros(4, np.float32)), '"model.bogus.weight": unexpected tensor'),
    (lambda t: t.pop("model.norm.weight"), '"model.norm.weight": missing tensor'),
    (lambda t: t.__setitem__("model.norm.weight", t["model.norm.weight"].astype(np.int32)), 'unsupported dtype "I32"'),
    (lambda t: t["model.norm.weight"].__setitem__(3, np.nan), "non-finite value at flat index 3"),
])
def test_bad_tensors_are_refused_and_the_old_version_serves(start_worker, change, needle):
    w = start_worker()
    before = our_segments()
    with Client(w.endpoint) as c:
        assert c.update_weights_from_tensors(1, perturbed()) == 1
        served = rollout(c)
        bad = perturbed()
        change(bad)
        with pytest.raises(WorkerError) as e:
            c.update_weights_from_tensors(2, bad, check_finite=True)
        assert e.value.code == "BAD_CHECKPOINT"
        assert needle in e.value.message and "still serving policy version 1" in e.value.message, e.value.message
        assert c.stats()["engine"]["policy_version"] == 1
        assert rollout(c) == served
    assert our_segments() == before


def test_segment_names_and_sizes_are_checked(start_worker):
    w = start_worker()
    s = raw_socket(w.endpoint)
    assert raw_reply(s, [msgpack.packb({"type": "HELLO", "version": PROTOCOL_VERSION, "client_id": "raw", "credits": 0})])["type"] == "HELLO"

    def update(req, **fields):
        return raw_reply(s, [msgpack.packb({"type": "UPDATE_WEIGHTS", "req": req, "version": 5, **fields})])

    empty = {"size": 1, "tensors": []}
    r = update(1, shm={"name": "psm_other", **empty})
    assert r["code"] == "BAD_CHECKPOINT" and "must start with 'longtail-'" in r["message"]
    r = update(2, shm={"name": "longtail-../../etc/passwd", **empty})
    assert r["code"] == "BAD_CHECKPOINT" and "no '/'" in r["message"]
    r = update(3, shm={"name": "longtail-absent-segment", **empty})
    assert r["code"] == "BAD_CHECKPOINT" and "does not exist" in r["message"]
    with TensorSegment(perturbed()) as seg:
        wire = seg.wire()
        r = update(4, shm={**wire, "size": wire["size"] + 1})
        assert r["code"] == "BAD_CHECKPOINT" and "the request declares" in r["message"]
        wire["tensors"][0]["end"] = 10 ** 12
        r = update(5, shm=wire)
        assert r["code"] == "BAD_CHECKPOINT" and "end beyond the data" in r["message"]
        r = update(6, shm=seg.wire(), path="/tmp")
        assert r["code"] == "BAD_FIELD" and "exactly one of 'path' (non-empty) and 'shm'" in r["message"]
    s.close()


def test_one_segment_serves_every_update_of_a_layout(start_worker):
    # Creating and unlinking a segment per update is most of its cost for a small model: a Client
    # refills one segment while the layout stays, makes a new one when it changes, unlinks on close.
    w = start_worker()
    before = our_segments()
    with Client(w.endpoint) as c:
        assert c.update_weights_from_tensors(1, perturbed()) == 1
        first = our_segments() - before
        assert len(first) == 1
        twice = perturbed()
        twice["model.norm.weight"] = twice["model.norm.weight"] * np.float32(2)
        assert c.update_weights_from_tensors(2, twice) == 2
        assert our_segments() - before == first
        after_refill = rollout(c)
        assert c.update_weights_from_tensors(3, {k: v.astype(np.float16) for k, v in twice.items()}) == 3
        assert len(our_segments() - before) == 1 and our_segments() - before != first
        assert c.update_weights_from_tensors(4, twice) == 4
        assert rollout(c) == after_refill  # the refilled segment carried the new values
    assert our_segments() == before
