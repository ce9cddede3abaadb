"""Prompt-affine routing with bounded load (longtail.fleet_routing), without Ray or workers."""

from __future__ import annotations

import collections
import json
import subprocess

import pytest

from conftest import worker_binary

from longtail.fleet_routing import Router, placement_order, ring_hash, split_round


def test_ring_hash_is_fixed():
    # The replay tool's C++ copy (rollout/replay_fleet.cc) must give the same values.
    assert ring_hash("") == 0xF52A15E9A9B5E89B
    assert ring_hash("prompt-1") == 0x782ABBD3AF766853
    assert ring_hash("w0#1") != ring_hash("w0#2")
    assert 0 <= ring_hash("aime24-0") < 2 ** 64


def rounds_of(router: Router, prompts, rounds: int, tokens: int = 100):
    """Routes every prompt once per round (a GRPO step) and delivers the round before the next."""
    where = collections.defaultdict(list)
    for _ in range(rounds):
        placed = []
        left = tokens * len(prompts)
        for i in placement_order(prompts):
            left -= tokens
            w, _ = router.route(prompts[i], tokens, left)
            placed.append(w)
            where[prompts[i]].append(w)
        for w in placed:
            router.release(w, tokens)
    return where


def test_same_prompt_same_worker_across_rounds():
    router = Router(["a", "b", "c"], eps=0.25)
    prompts = [f"p{i}" for i in range(60)]
    where = rounds_of(router, prompts, rounds=5)
    on_top = sum(collections.Counter(ws).most_common(1)[0][1] for ws in where.values())
    assert on_top / (60 * 5) >= 0.95
    assert all(router.load[w] == 0 for w in "abc")
    d = router.stats()["decisions"]
    assert d["home"] + d["sticky"] + d["overflow"] == 300 and d["random"] == 0


def test_load_stays_within_the_bound():
    router = Router([f"w{i}" for i in range(4)], eps=0.1)
    # Only a few distinct prompts, each with many groups: hashing alone would pile them up.
    for i in range(400):
        router.route(f"p{i % 5}", 50)
    mean = sum(router.load.values()) / 4
    assert max(router.load.values()) <= 1.1 * mean + 50
    assert router.stats()["decisions"]["overflow"] > 0


def test_removing_a_worker_moves_only_its_prompts():
    r3 = Router(["a", "b", "c"], eps=100.0)  # no load bound: pure consistent hashing
    before = {f"p{i}": r3.route(f"p{i}", 1)[0] for i in range(300)}
    r3.remove_worker("b")
    for w in r3.load:
        r3.load[w] = 0
    after = {p: r3.route(p, 1)[0] for p in before}
    moved = [p for p in before if before[p] != after[p]]
    assert moved and all(before[p] == "b" for p in moved)
    assert "b" not in set(after.values())


def test_random_policy_scatters_a_prompt():
    router = Router(["a", "b", "c"], policy="random", seed=3)
    ws = {router.route("same", 10)[0] for _ in range(50)}
    assert ws == {"a", "b", "c"}
    assert router.stats()["decisions"]["random"] == 50


def test_exclude_and_errors():
    router = Router(["a", "b"])
    assert router.route("x", 1, exclude=["a"])[0] == "b"
    with pytest.raises(RuntimeError):
        router.route("x", 1, exclude=["a", "b"])
    with pytest.raises(ValueError):
        Router(["a"], policy="round-robin")
    with pytest.raises(ValueError):
        Router(["a"], eps=-1)


def test_split_round_is_order_independent_and_releases():
    groups = [{"prompt_id": f"p{i}", "tokens": 10 + i % 3} for i in range(40)]
    a = split_round(Router(["w0", "w1"]), groups)
    rev = list(reversed(groups))
    router = Router(["w0", "w1"])
    b = split_round(router, rev)
    names_a = {w: sorted(groups[i]["prompt_id"] for i in ix) for w, ix in a.items()}
    names_b = {w: sorted(rev[i]["prompt_id"] for i in ix) for w, ix in b.items()}
    assert names_a == names_b
    assert sorted(i for ix in a.values() for i in ix) == list(range(40))
    assert router.load == {"w0": 0, "w1": 0}


def test_replay_tool_splits_as_the_fleet_does(tmp_path):
    """longtail-replay --workers (rollout/replay_fleet.cc) must route exactly like this module."""
    replay = worker_binary().parent / "longtail-replay"
    if not replay.exists():
        pytest.skip(f"{replay} is not built")
    lines, rounds = [], []
    for step in range(3):
        groups = []
        for p in range(25):
            samples = 1 + p % 3
            for s in range(samples):
                lines.append(json.dumps({"prompt_id": f"q{p}", "sample": step * 3 + s, "step": step,
                                         "prompt_tokens": list(range(1 + p % 5)), "response_tokens": [7, 8, 9]}))
            groups.append({"prompt_id": f"q{p}", "tokens": samples * ((1 + p % 5) + 4096)})
        rounds.append(groups)
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    router = Router([f"w{i}" for i in range(3)])
    expect = collections.Counter()
    for groups in rounds:
        for w, idx in split_round(router, groups).items():
            expect[w] += sum(1 + int(groups[i]["prompt_id"][1:]) % 3 for i in idx)
    out = subprocess.run([str(replay), str(trace), "--workers", "3", "--json", "--quiet"], capture_output=True,
                         text=True, check=True).stdout
    got = [w["rollouts"] for w in json.loads(out)["per_worker"]]
    assert got == [expect["w0"], expect["w1"], expect["w2"]]
