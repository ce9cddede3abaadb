"""SLEEP / WAKE_UP against a real longtail-worker (CPU backend, bundled tiny checkpoint): a sleep in
the middle of generation loses no sample and changes no token (paused samples re-prefill after the
wake), nothing is generated while asleep but groups are admitted and held, HELLO / STATS / metrics
report the state, weight updates work asleep (level 2 needs one before the wake), and bad or
repeated requests get clear answers while the worker keeps serving."""

from __future__ import annotations

import time
import urllib.request

import msgpack
import pytest

from longtail import Client, Group, WorkerError
from longtail.safetensors_np import read_f32
from conftest import MODEL, free_port
from test_worker import collect, raw_reply, raw_socket


def seeded_groups(prefix: str, count: int, max_new_tokens: int):
    # Seeded: a sample's draws depend on (seed, group id, index, position) only, so two workers
    # (one that sleeps, one that does not) must give the same tokens.
    return [Group(group_id=f"{prefix}{i}", prompt_tokens=[5 + i, 6, 7, 8], n=3, max_new_tokens=max_new_tokens,
                  seed=11, ignore_eos=True) for i in range(count)]


def outputs(batches):
    trs = sorted((t for b in batches for t in b.trajectories), key=lambda t: (t.group_id, t.sample_index))
    return [(t.group_id, t.sample_index, t.response_tokens.tolist(), t.behaviour_logprobs.tolist(), t.finish_reason)
            for t in trs]


def test_sleep_mid_generation_loses_nothing_and_changes_no_token(start_worker, tmp_path):
    gs = seeded_groups("g", 6, 120)
    ref = start_worker("--round-groups", "6", endpoint=f"ipc://{tmp_path}/reference.sock")
    with Client(ref.endpoint) as c:
        c.submit(gs)
        want = outputs(collect(c, 18, timeout=60))

    w = start_worker("--round-groups", "6")
    with Client(w.endpoint) as c:
        assert "sleep" in c.worker.capabilities and "sleep:2" in c.worker.capabilities
        assert c.worker.sleep_level == 0
        c.submit(gs)
        time.sleep(0.05)  # let generation start
        ok = c.sleep(level=1)
        assert (ok["type"], ok["level"], ok["previous_level"]) == ("SLEEP_OK", 1, 0)
        assert ok["seconds"] >= 0
        asleep = c.stats()
        assert asleep["worker"]["sleep_level"] == 1 and asleep["worker"]["sleeps"] == 1
        assert asleep["engine"]["kv_total_tokens"] == 0
        generated = asleep["engine"]["tokens_generated"]
        assert c.next_batch(timeout=0.5) is None  # nothing is generated while asleep
        assert c.stats()["engine"]["tokens_generated"] == generated
        assert generated < 18 * 120, "the sleep came after generation had finished: nothing was paused"
        woke = c.wake_up()
        assert (woke["type"], woke["previous_level"]) == ("WAKE_UP_OK", 1)
        assert c.worker.sleep_level == 0
        got = outputs(collect(c, 18, timeout=60))
        s = c.stats()["worker"]
        assert (s["sleep_level"], s["wake_ups"]) == (0, 1)
    assert got == want


def test_groups_submitted_asleep_are_held_and_state_is_reported(start_worker):
    port = free_port()
    w = start_worker("--metrics-port", str(port))
    with Client(w.endpoint) as c:
        assert c.sleep()["level"] == 1
        again = c.sleep(level=1)  # a repeat changes nothing and says so
        assert (again["level"], again["previous_level"], again["released_bytes"]) == (1, 1, 0)
        assert c.submit(seeded_groups("held", 2, 8)) == 2  # admitted, generated after the wake
        assert c.next_batch(timeout=0.5) is None
        assert c.stats()["engine"]["waiting_groups"] == 2
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5)
            pytest.fail("/ready must answer 503 while asleep")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and "asleep" in e.read().decode()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'longtail_sleep_level{worker="w-test"} 1' in metrics
    with Client(w.endpoint) as c:  # a new session sees the state in HELLO
        assert c.worker.sleep_level == 1
        c.wake_up()
        assert c.wake_up()["previous_level"] == 0  # awake: a no-op
        assert len(outputs(collect(c, 6))) == 6
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5).status == 200


def test_level_two_needs_a_weight_update_before_the_wake(start_worker, weights_dir):
    w = start_worker("--allow-weights-dir", str(weights_dir))
    with Client(w.endpoint) as c:
        def rollout():
            c.submit(seeded_groups("a", 1, 8))  # the same seeded group every time: the same draws
            return outputs(collect(c, 3))

        before = rollout()
        ok = c.sleep(level=2)
        assert ok["level"] == 2 and ok["released_bytes"] > 1_000_000  # the fp32 weights
        with pytest.raises(WorkerError) as e:
            c.wake_up()
        assert e.value.code == "INVALID_REQUEST" and "UPDATE_WEIGHTS first" in e.value.message
        assert c.stats()["worker"]["sleep_level"] == 2
        assert c.update_weights(1, weights_dir / "v1") == 1  # loads weights while asleep
        assert c.stats()["worker"]["sleep_level"] == 1
        c.wake_up()
        after_directory = rollout()
        # Level 1 and a weight update from shared memory while asleep.
        c.sleep(level=1)
        assert c.update_weights_from_tensors(2, read_f32(MODEL / "model.safetensors"), source="shm") == 2
        c.wake_up()
        after_shm = rollout()
    # The same weights came back both times (bf16 values widen to fp32 exactly): the same tokens
    # and logprobs as before the sleeps.
    assert after_directory == before
    assert after_shm == before


def test_bad_sleep_requests_get_errors_and_the_worker_keeps_serving(start_worker):
    w = start_worker()
    s = raw_socket(w.endpoint)
    hello = raw_reply(s, [msgpack.packb({"type": "HELLO", "version": 2, "credits": 4})])
    assert "sleep" in hello["capabilities"] and hello["sleep_level"] == 0
    for bad in (0, 3, "two"):
        e = raw_reply(s, [msgpack.packb({"type": "SLEEP", "req": 5, "level": bad})])
        assert (e["type"], e["code"], e["req"], e["request_type"]) == ("ERROR", "BAD_FIELD", 5, "SLEEP")
        assert "'level'" in e["message"]
    ok = raw_reply(s, [msgpack.packb({"type": "SLEEP", "req": 6})])  # level defaults to 1
    assert (ok["type"], ok["req"], ok["level"]) == ("SLEEP_OK", 6, 1)
    ok = raw_reply(s, [msgpack.packb({"type": "WAKE_UP", "req": 7})])
    assert (ok["type"], ok["req"], ok["previous_level"]) == ("WAKE_UP_OK", 7, 1)
    with Client(w.endpoint) as c:
        with pytest.raises(ValueError):
            c.sleep(level=3)
        c.submit(seeded_groups("after", 1, 4))
        assert len(outputs(collect(c, 3))) == 3


def test_shutdown_while_asleep_ends_in_flight_samples_as_aborted(start_worker):
    w = start_worker("--round-groups", "4")
    with Client(w.endpoint) as c:
        c.submit(seeded_groups("s", 4, 400))
        time.sleep(0.05)
        c.sleep()
        c.shutdown()
        got = outputs(collect(c, 12, timeout=30))
    assert w.proc.wait(30) == 0
    assert len(got) == 12  # every sample delivered, unfinished ones with the tokens they had
    assert any(t[4] == "aborted" for t in got)
