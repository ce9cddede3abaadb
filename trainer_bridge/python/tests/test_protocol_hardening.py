"""Issue 16 against a live worker, written from PROTOCOL.md: admission bounded by samples and tokens
(TOO_LARGE / QUEUE_FULL naming the cap and whether retrying helps), uids unique across restarts
with the same journal, REWARDS answered with the VCPO baselines, strictly increasing weight
versions, HELLO reporting weights and limits, and the clear error messages of item 8."""

from __future__ import annotations

import msgpack
import pytest

from longtail import Client, Group, WorkerError
from conftest import MODEL
from test_worker import collect, groups, raw_reply, raw_socket, wait_until


def test_admission_is_bounded_by_samples_and_tokens(start_worker, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"model: {MODEL}\nbridge:\n  max_pending_samples: 8\n  max_pending_tokens: 400\n")
    w = start_worker(config=cfg)
    with Client(w.endpoint, credits=0, auto_credit=False) as c:
        with pytest.raises(WorkerError) as e:  # n = 10^7 alone: can never succeed
            c.submit([Group(group_id="huge", prompt_tokens=[5, 6, 7], n=10**7, max_new_tokens=4)])
        assert e.value.code == "TOO_LARGE" and "max_pending_samples" in e.value.message
        assert "cannot succeed" in e.value.message and e.value.req is not None
        with pytest.raises(WorkerError) as e:  # 2 x (3 + 1000) tokens > 400
            c.submit([Group(group_id="long", prompt_tokens=[5, 6, 7], n=2, max_new_tokens=1000)])
        assert e.value.code == "TOO_LARGE" and "max_pending_tokens" in e.value.message
        assert c.submit(groups(3, n=2)) == 3  # 6 samples pending, no credit: nothing is delivered
        with pytest.raises(WorkerError) as e:  # fits alone, not on top of the pending 6
            c.submit(groups(2, n=2, prefix="more"))
        assert e.value.code == "QUEUE_FULL" and "max_pending_samples" in e.value.message
        assert "retry" in e.value.message
        c.credit(8)
        got = collect(c, 6)
        c.ack(got)
        assert c.submit(groups(2, n=2, prefix="more")) == 2  # delivered samples no longer count
        collect(c, 4)


def test_error_carries_limit_and_retryable(start_worker):
    w = start_worker("--max-pending-groups", "2")
    s = raw_socket(w.endpoint)
    assert raw_reply(s, [msgpack.packb({"type": "HELLO", "version": 2, "credits": 0})])["type"] == "HELLO"
    def submit(req, prefix, count):
        return raw_reply(s, [msgpack.packb({"type": "SUBMIT", "req": req, "groups": [
            {"group_id": f"{prefix}{i}", "prompt_len": 1, "n": 1} for i in range(count)],
            "frames": {"prompt_tokens": 1}}), b"\x05\x00\x00\x00" * count])
    e = submit(4242, "g", 3)  # more groups than max_pending_groups: can never succeed
    assert (e["type"], e["code"], e["req"]) == ("ERROR", "TOO_LARGE", 4242)
    assert e["limit"] == "max_pending_groups" and e["retryable"] is False
    assert submit(4243, "g", 2)["type"] == "SUBMIT_OK"  # no credit: both stay queued
    e = submit(4244, "h", 1)
    assert (e["code"], e["limit"], e["retryable"]) == ("QUEUE_FULL", "max_pending_groups", True)
    s.close(0)


def test_uids_are_unique_across_restarts_with_a_journal(start_worker, tmp_path):
    journal = tmp_path / "journal"
    w = start_worker("--round-groups", "1", "--journal-dir", str(journal))
    with Client(w.endpoint, credits=4) as c:
        c.submit(groups(1, n=3))
        first = collect(c, 3)
        c.ack(first)
        wait_until(lambda: c.stats()["bridge"]["batches_acked"] >= len(first), what="acks")
    assert w.terminate() == 0
    old_uids = [t.uid for b in first for t in b.trajectories]

    w2 = start_worker("--round-groups", "1", "--journal-dir", str(journal))
    with Client(w2.endpoint, credits=4) as c:
        c.submit(groups(1, n=3, prefix="b"))
        second = collect(c, 3)
        new_uids = [t.uid for b in second for t in b.trajectories]
        assert not set(old_uids) & set(new_uids), "a restarted worker reused uids"
        # Rewards for the earlier run's trajectories are unknown to this one, not given to group B.
        assert sorted(c.set_rewards({u: 1.0 for u in old_uids})) == sorted(old_uids)
        assert c.set_rewards({u: 1.0 for u in new_uids}) == []
        c.ack(second)


def test_rewards_return_the_vcpo_baseline(start_worker):
    w = start_worker("--round-groups", "1")
    with Client(w.endpoint) as c:
        c.submit(groups(1, n=2))
        b = collect(c, 2)[0]
        a, z = [t.uid for t in b.trajectories]
        reply = c.request_raw([msgpack.packb({"type": "REWARDS", "req": 501, "uids": [a], "rewards": [1.0]})], 501)
        assert reply["type"] == "REWARDS_OK" and reply["unknown_uids"] == []
        [g] = reply["groups"]
        assert g["group_id"] == "g0" and g["valid"] is False and g["advantages"] == []
        reply = c.request_raw([msgpack.packb({"type": "REWARDS", "req": 502, "uids": [z], "rewards": [0.0]})], 502)
        [g] = reply["groups"]
        # On-policy samples have truncated weight 1: b = (1*1.0 + 1*0.0) / (1 + 1) = 0.5.
        assert g["valid"] is True and g["weights"] == [1.0, 1.0]
        assert g["baseline"] == pytest.approx(0.5)
        by_uid = dict(zip(g["uids"], g["advantages"]))
        assert by_uid[a] == pytest.approx(0.5) and by_uid[z] == pytest.approx(-0.5)


def test_versions_strictly_increase_and_hello_reports_weights(start_worker, weights_dir, tmp_path):
    w = start_worker("--allow-weights-dir", str(weights_dir))
    with Client(w.endpoint) as c:
        assert c.update_weights(3, weights_dir / "v1") == 3
        for bad in (3, 2, -1):
            with pytest.raises(WorkerError) as e:
                c.update_weights(bad, weights_dir / "v1")
            assert e.value.code == "INVALID_REQUEST" and "strictly increase" in e.value.message
        (weights_dir / "afile").write_text("x")
        with pytest.raises(WorkerError) as e:
            c.update_weights(4, weights_dir / "afile")
        assert e.value.code == "BAD_CHECKPOINT" and "not a directory" in e.value.message
        assert c.stats()["engine"]["policy_version"] == 3
    s = raw_socket(w.endpoint)  # nil optional fields are absent (issue 16 item 5)
    h = raw_reply(s, [msgpack.packb({"type": "HELLO", "version": 2, "client_id": None, "credits": None})])
    assert h["type"] == "HELLO" and h["version"] == 2 and h["policy_version"] == 3
    assert h["weights"].endswith("v1")
    assert h["limits"]["max_pending_samples"] > 0 and h["limits"]["peer_timeout_s"] > 0
    s.close(0)


def test_displaced_trainer_gets_session_taken(start_worker):
    w = start_worker()
    a = Client(w.endpoint, credits=1)
    b = Client(w.endpoint, credits=1)
    with pytest.raises(WorkerError) as e:
        a.request_raw([msgpack.packb({"type": "STATS", "req": 77})], 77)
    assert e.value.code == "SESSION_TAKEN" and e.value.req == 77
    assert b.stats()["bridge"]["sessions"] == 2
    a.close()
    b.close()


def test_shutdown_timeout_emits_unfinished_samples_as_aborted(start_worker, tmp_path):
    # Issue 16 item 8: sequences unfinished at the shutdown timeout vanished. Now they end as
    # aborted with their tokens so far, in the last batch, and that batch is journaled like any.
    journal = tmp_path / "journal"
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"model: {MODEL}\nshutdown:\n  timeout_s: 0.2\n  ack_wait_s: 0.5\n")
    w = start_worker("--journal-dir", str(journal), config=cfg)
    long = [Group(group_id="long", prompt_tokens=[5, 6, 7], n=2, max_tokens=4000, ignore_eos=True, seed=3)]
    with Client(w.endpoint, credits=4) as c:
        assert c.submit(long) == 1
        wait_until(lambda: c.stats()["engine"]["tokens_generated"] >= 20, what="generation to start")
        c.shutdown()
        (b,) = collect(c, 2)  # not acked: it stays in the journal
    assert w.proc.wait(30) == 0
    assert "end as aborted" in w.output() and "dropped" not in w.output()
    assert [t.finish_reason for t in b.trajectories] == ["aborted", "aborted"]
    for t in b.trajectories:
        assert 10 <= t.response_tokens.size < 4000
        assert t.behaviour_logprobs.size == t.policy_versions.size == t.response_tokens.size
    # The restarted worker re-sends the same batch from its journal: nothing was dropped at exit.
    w2 = start_worker("--journal-dir", str(journal))
    with Client(w2.endpoint, credits=4) as c:
        (again,) = collect(c, 2)
        assert again.seq == b.seq
        assert [t.response_tokens.tolist() for t in again.trajectories] == [t.response_tokens.tolist() for t in b.trajectories]
        c.ack([again])


def test_a_reused_routing_id_gets_an_error_not_silence(start_worker):
    # Issue 16 item 3: a second connection with the session's routing id took it over silently.
    import zmq
    from test_worker import raw_reply as reply
    w = start_worker()
    ctx = zmq.Context.instance()
    def dealer():
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 10000)
        s.setsockopt(zmq.ROUTING_ID, b"same-id")
        s.connect(w.endpoint)
        return s
    first = dealer()
    assert reply(first, [msgpack.packb({"type": "HELLO", "version": 2, "client_id": "first", "credits": 0})])["type"] == "HELLO"
    second = dealer()
    e = reply(second, [msgpack.packb({"type": "STATS", "req": 77})])
    assert (e["type"], e["code"], e["req"]) == ("ERROR", "ROUTING_ID_IN_USE", 77)
    assert "same-id" in e["message"] and "own routing id" in e["message"]
    # The session ended; this connection may start one, and is then served.
    assert reply(second, [msgpack.packb({"type": "HELLO", "version": 2, "client_id": "second"})])["type"] == "HELLO"
    assert reply(second, [msgpack.packb({"type": "STATS", "req": 78})])["type"] == "STATS"
    first.close(0)
    second.close(0)
