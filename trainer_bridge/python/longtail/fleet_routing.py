"""Where a fleet sends each prompt group: consistent hashing of ``prompt_id`` with bounded load.

A prompt's drafter history lives on the worker that generated its earlier rollouts, so every group
of one prompt should go to the same worker, round after round. Consistent hashing gives that home
(and moves only 1/K of the prompts when a worker joins or leaves); the load bound keeps it from
overloading one worker: a worker whose queued tokens would exceed (1 + eps) x the fleet's mean
passes the prompt on to the next worker clockwise on the ring (Mirrokni et al., "Consistent Hashing
with Bounded Loads"). A prompt that had to move remembers its new worker, so its later groups follow
its history there instead of splitting it again.

Pure Python, no Ray: the replay tool (rollout/replay_fleet.*) implements the same hash, ring and
bound so that its projections match what a live fleet does.
"""

from __future__ import annotations

import bisect
import collections
import random
from typing import Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: Routing decisions, as counted in :meth:`Router.stats`.
REASONS = ("home", "sticky", "overflow", "least_loaded", "random")

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def ring_hash(text: str) -> int:
    """64-bit FNV-1a of the UTF-8 bytes, then the splitmix64 finalizer (FNV alone clusters short
    keys that differ in the last character, e.g. ``w0#1`` and ``w0#2``)."""
    h = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def group_tokens(n: int, prompt_len: int, max_new_tokens: int) -> int:
    """The load a group puts on a worker until it is delivered: every sample holds its prompt and
    up to ``max_new_tokens`` generated tokens."""
    return int(n) * (int(prompt_len) + int(max_new_tokens))


class Router:
    """Assigns groups to workers and tracks each worker's queued tokens.

    Args:
        workers: worker ids (order does not matter; the ring depends only on the ids).
        policy: ``affine`` (consistent hashing with bounded load) or ``random`` (uniform, for
            comparisons: it scatters each prompt's history over the fleet).
        eps: the load bound's slack: a worker may hold up to (1 + eps) x the mean queued tokens.
        virtual_nodes: points per worker on the ring; more points, more even shares of prompts.
        seed: seed of the ``random`` policy.
        max_sticky: prompts remembered after moving off their home worker (oldest forgotten first).
    """

    def __init__(self, workers: Iterable[str], policy: str = "affine", eps: float = 0.25,
                 virtual_nodes: int = 128, seed: int = 0, max_sticky: int = 1_000_000) -> None:
        if policy not in ("affine", "random"):
            raise ValueError(f"routing policy must be 'affine' or 'random', got {policy!r}")
        if not eps >= 0:
            raise ValueError(f"routing eps must be >= 0, got {eps!r}")
        if virtual_nodes < 1:
            raise ValueError(f"virtual_nodes must be >= 1, got {virtual_nodes!r}")
        self.policy = policy
        self.eps = float(eps)
        self.virtual_nodes = int(virtual_nodes)
        self._rng = random.Random(seed)
        self._ring: List[Tuple[int, str]] = []
        self._points: List[int] = []
        self.load: Dict[str, int] = {}
        self._sticky: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        self._max_sticky = max_sticky
        self.decisions: Dict[str, int] = {r: 0 for r in REASONS}
        self.per_worker: Dict[str, Dict[str, int]] = {}
        self.recent: Deque[Tuple[str, str, str, str]] = collections.deque(maxlen=64)
        for w in workers:
            self.add_worker(w)

    # ------------------------------------------------------------------ membership
    def add_worker(self, worker: str) -> None:
        if worker in self.load:
            return
        self.load[worker] = 0
        self.per_worker.setdefault(worker, {r: 0 for r in REASONS})
        for i in range(self.virtual_nodes):
            self._ring.append((ring_hash(f"{worker}#{i}"), worker))
        self._ring.sort()
        self._points = [p for p, _ in self._ring]

    def remove_worker(self, worker: str) -> None:
        """Takes a worker off the ring (dead for good); its prompts go to their next workers."""
        if worker not in self.load:
            return
        del self.load[worker]
        self._ring = [(p, w) for p, w in self._ring if w != worker]
        self._points = [p for p, _ in self._ring]
        for pid in [p for p, w in self._sticky.items() if w == worker]:
            del self._sticky[pid]

    @property
    def workers(self) -> List[str]:
        return sorted(self.load)

    # ------------------------------------------------------------------ routing
    def ring_order(self, prompt_id: str) -> List[str]:
        """Distinct workers clockwise from the prompt's point: its home first."""
        if not self._ring:
            return []
        start = bisect.bisect_left(self._points, ring_hash(prompt_id)) % len(self._ring)
        order: List[str] = []
        for k in range(len(self._ring)):
            w = self._ring[(start + k) % len(self._ring)][1]
            if w not in order:
                order.append(w)
                if len(order) == len(self.load):
                    break
        return order

    def route(self, prompt_id: str, tokens: int, pending_tokens: int = 0,
              exclude: Sequence[str] = (), group_id: str = "") -> Tuple[str, str]:
        """Chooses the worker for one group of ``tokens`` and charges it; returns (worker, reason).

        ``pending_tokens``: tokens of further groups being routed in the same call, counted in the
        mean so that a burst of submissions is spread by where it will end, not by its first groups.
        ``exclude``: workers not to use now (e.g. one that is restarting)."""
        live = [w for w in self.load if w not in exclude]
        if not live:
            raise RuntimeError("no live worker to route to")
        if self.policy == "random":
            w, reason = self._rng.choice(sorted(live)), "random"
        else:
            w, reason = self._affine(prompt_id, tokens, pending_tokens, live)
        self.charge(w, tokens)
        self.decisions[reason] += 1
        self.per_worker[w][reason] += 1
        self.recent.append((group_id, prompt_id, w, reason))
        return w, reason

    def _affine(self, prompt_id: str, tokens: int, pending_tokens: int, live: List[str]) -> Tuple[str, str]:
        total = sum(self.load[w] for w in live) + tokens + pending_tokens
        bound = (1.0 + self.eps) * total / len(live)
        order = [w for w in self.ring_order(prompt_id) if w in live]
        sticky = self._sticky.get(prompt_id)
        if sticky in live and self.load[sticky] + tokens <= bound:
            self._sticky.move_to_end(prompt_id)
            return sticky, "sticky"
        for i, w in enumerate(order):
            if self.load[w] + tokens <= bound:
                if i == 0:
                    self._sticky.pop(prompt_id, None)
                    return w, "home"
                self._remember(prompt_id, w)
                return w, "overflow"
        # One group larger than every worker's room (only possible with very uneven groups).
        w = min(live, key=lambda x: (self.load[x], order.index(x)))
        self._remember(prompt_id, w)
        return w, "least_loaded"

    def _remember(self, prompt_id: str, worker: str) -> None:
        self._sticky[prompt_id] = worker
        self._sticky.move_to_end(prompt_id)
        while len(self._sticky) > self._max_sticky:
            self._sticky.popitem(last=False)

    def charge(self, worker: str, tokens: int) -> None:
        if worker in self.load:
            self.load[worker] += int(tokens)

    def release(self, worker: str, tokens: int) -> None:
        """The group charged to ``worker`` was delivered (or moved): its tokens leave the queue."""
        if worker in self.load:
            self.load[worker] = max(0, self.load[worker] - int(tokens))

    def stats(self) -> Dict[str, object]:
        live = list(self.load)
        mean = sum(self.load.values()) / len(live) if live else 0.0
        return {
            "policy": self.policy,
            "eps": self.eps,
            "virtual_nodes": self.virtual_nodes,
            "decisions": dict(self.decisions),
            "per_worker": {w: dict(c, queued_tokens=self.load.get(w, 0)) for w, c in self.per_worker.items()},
            "mean_queued_tokens": mean,
            "max_queued_tokens": max(self.load.values(), default=0),
            "sticky_prompts": len(self._sticky),
            "recent": [{"group_id": g, "prompt_id": p, "worker": w, "reason": r} for g, p, w, r in self.recent],
        }


def placement_order(prompt_ids: Sequence[str]) -> List[int]:
    """The order in which a burst of groups is placed: by ring position, so that the same prompts
    land on the same workers whatever order the trainer lists them in."""
    return sorted(range(len(prompt_ids)), key=lambda i: (ring_hash(prompt_ids[i]), i))


def split_round(router: Router, groups: Sequence[Mapping[str, object]]) -> Dict[str, List[int]]:
    """Routes one round's groups (maps with ``prompt_id`` and ``tokens``) as a fleet whose previous
    round was delivered before this one: placed as one burst, released at the end (sticky prompts
    stay). Returns the indices of the groups per worker. The replay of recorded traces as a fleet
    (bench/fleet/, longtail-replay --workers) splits every round this way."""
    out: Dict[str, List[int]] = {w: [] for w in router.workers}
    left = sum(int(g["tokens"]) for g in groups)
    placed = []
    for i in placement_order([str(g["prompt_id"]) for g in groups]):
        g = groups[i]
        t = int(g["tokens"])
        left -= t
        w, _ = router.route(str(g["prompt_id"]), t, pending_tokens=left)
        out[w].append(i)
        placed.append((w, t))
    for w, t in placed:
        router.release(w, t)
    return out
