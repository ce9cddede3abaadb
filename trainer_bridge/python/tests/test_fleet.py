"""The Ray fleet end to end: three real longtail-worker processes (CPU backend, bundled tiny
checkpoint) under a local Ray with a small footprint (3 logical CPUs, no dashboard, loopback only).
One fleet serves the tests in order: rounds delivered exactly once and prompt-affine, a weight
update on every worker, sleep and wake-up on every worker, then a worker SIGKILLed mid-round with
nothing lost or duplicated."""

from __future__ import annotations

import collections
import os
import shutil
import time

import pytest

from conftest import MODEL, REPO, worker_binary

ray = pytest.importorskip("ray", reason="the fleet needs Ray (pip install 'longtail[fleet]')")

from longtail import Group  # noqa: E402
from longtail.fleet import Fleet  # noqa: E402

PROMPTS = 24
N = 2


def round_groups(r: int, prompts: int = PROMPTS, max_new_tokens: int = 12):
    return [Group(group_id=f"r{r}-p{i}", prompt_id=f"p{i}", prompt_tokens=[5 + i, 6 + r % 3, 7, 8], n=N,
                  max_new_tokens=max_new_tokens, seed=r * 1000 + i) for i in range(prompts)]


def collect(fleet: Fleet, expect_groups: int, timeout: float = 60.0):
    """Receives and acks until ``expect_groups`` groups arrived; returns {group_id: [worker, ...]}."""
    got = collections.defaultdict(list)
    samples = collections.defaultdict(list)
    deadline = time.monotonic() + timeout
    while len(got) < expect_groups:
        b = fleet.next_batch(timeout=max(0.1, deadline - time.monotonic()))
        assert b is not None, f"only {len(got)} of {expect_groups} groups arrived"
        assert b.worker_id in fleet.worker_ids
        for gid in {t.group_id for t in b.trajectories}:
            got[gid].append(b.worker_id)
        for t in b.trajectories:
            samples[t.group_id].append(t.sample_index)
        fleet.ack(b)
    return got, samples


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if not worker_binary().exists():
        pytest.skip(f"{worker_binary()} is not built (set LONGTAIL_BUILD_DIR)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for attempt in range(3):
        try:
            ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                     object_store_memory=100 * 1024 * 1024, configure_logging=False)
            break
        except Exception as exc:  # Ray gives its raylet 30 s to register: a busy machine may need a retry
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    weights = tmp_path_factory.mktemp("weights")
    shutil.copytree(MODEL, weights / "v1")
    f = Fleet(num_workers=3, config=REPO / "configs" / "worker.yaml",
              overrides={"backend.kind": "cpu", "backend.threads": 1, "log_level": "warn",
                         "weights.allowed_dirs": [str(weights)]},
              resources_per_worker={"CPU": 1}, failover_timeout_s=60)
    f.weights_dir = weights
    yield f
    f.shutdown()
    ray.shutdown()


def test_rounds_exactly_once_and_prompt_affine(fleet):
    per_prompt = collections.defaultdict(list)
    for r in range(3):
        assert fleet.submit(round_groups(r)) == PROMPTS
        got, samples = collect(fleet, PROMPTS)
        assert sorted(got) == sorted(g.group_id for g in round_groups(r))
        assert all(len(ws) == 1 for ws in got.values()), "a group was delivered twice"
        assert all(sorted(s) == list(range(N)) for s in samples.values())
        for gid, ws in got.items():
            per_prompt[gid.split("-")[1]].append(ws[0])
    assert fleet.pending() == 0
    on_top = sum(collections.Counter(ws).most_common(1)[0][1] for ws in per_prompt.values())
    assert on_top / (3 * PROMPTS) >= 0.95
    s = fleet.stats()
    assert s["fleet"]["groups_delivered"] == 3 * PROMPTS and s["fleet"]["duplicate_groups_dropped"] == 0
    assert set(s["routing"]["per_worker"]) == set(fleet.worker_ids)
    assert sum(s["routing"]["decisions"].values()) == 3 * PROMPTS
    assert len({w for ws in per_prompt.values() for w in ws}) == 3  # every worker had work
    assert all(w["worker"]["groups_accepted"] > 0 for w in s["workers"].values())
    # Shared history: every batch's rollouts went to the two other workers' drafters (the STATS
    # requests queue behind those HISTORY messages on each connection, so all are counted).
    assert s["fleet"]["history_trajectories"] == 2 * 3 * PROMPTS * N
    assert sum(w["worker"]["history_received"] for w in s["workers"].values()) == 2 * 3 * PROMPTS * N
    assert sum(w["worker"]["history_applied"] for w in s["workers"].values()) > 0


def test_weight_update_reaches_every_worker(fleet):
    assert fleet.update_weights(1, fleet.weights_dir / "v1") == 1
    s = fleet.stats()
    assert [w["engine"]["policy_version"] for w in s["workers"].values()] == [1, 1, 1]
    fleet.submit(round_groups(10, prompts=6))
    got, _ = collect(fleet, 6)
    assert len(got) == 6


def test_sleep_and_wake_up_reach_every_worker(fleet):
    slept = fleet.sleep(1)
    assert sorted(slept) == sorted(fleet.worker_ids) and all(r["level"] == 1 for r in slept.values())
    fleet.submit(round_groups(11, prompts=6))  # held while asleep
    assert fleet.next_batch(timeout=1.0) is None
    assert [w["worker"]["sleep_level"] for w in fleet.stats()["workers"].values()] == [1, 1, 1]
    woke = fleet.wake_up()
    assert all(r["previous_level"] == 1 for r in woke.values())
    got, _ = collect(fleet, 6)
    assert len(got) == 6


def test_worker_killed_mid_round_loses_and_duplicates_nothing(fleet):
    groups = round_groups(20, max_new_tokens=48)
    fleet.submit(groups)
    victim = max(fleet.worker_ids, key=lambda w: fleet.stats(timeout=5)["fleet"]["pending_per_worker"][w])
    # Mid-round: let a few batches arrive first.
    got = collections.defaultdict(list)
    first = fleet.next_batch(timeout=60)
    assert first is not None
    for gid in {t.group_id for t in first.trajectories}:
        got[gid].append(first.worker_id)
    fleet.ack(first)
    killed_at = time.monotonic()
    fleet.kill_worker(victim)
    rest, _ = collect(fleet, PROMPTS - len(got), timeout=120)
    for gid, ws in rest.items():
        got[gid].extend(ws)
    assert sorted(got) == sorted(g.group_id for g in groups)
    assert all(len(ws) == 1 for ws in got.values()), "a group was delivered twice"
    assert fleet.next_batch(timeout=2) is None  # no late copy
    s = fleet.stats()
    assert s["fleet"]["worker_restarts"] >= 1
    assert s["workers"][victim]["member"]["restarts"] >= 1
    assert s["workers"][victim]["engine"]["policy_version"] == 1  # restarted on the fleet's weights
    assert fleet.pending() == 0
    # The fleet keeps serving, the restarted worker included.
    fleet.submit(round_groups(30))
    got, _ = collect(fleet, PROMPTS)
    assert len(got) == PROMPTS and all(len(ws) == 1 for ws in got.values())
    print(f"recovery: {s['fleet']['recoveries']}, whole round after kill {time.monotonic() - killed_at:.1f} s")
