"""Many rollout workers as one service, placed by Ray (``pip install 'longtail[fleet]'``).

Every worker is a Ray actor that owns one ``longtail-worker`` process (own endpoint, journal and,
on GPUs, one device); the trainer talks to each worker over the ordinary protocol with a
:class:`longtail.Client` on its own thread (fleet_link.py). The fleet routes each group by its
``prompt_id`` so a prompt's drafter history stays on one worker (fleet_routing.py), and delivers
every submitted group exactly once: a worker that dies is restarted by its actor, re-sends what it
had journaled, and the groups it lost are submitted again; late copies are dropped by group id.

Example::

    from longtail.fleet import Fleet

    with Fleet(num_workers=3, config="configs/worker.yaml", overrides={"backend.kind": "cpu"},
               resources_per_worker={"CPU": 1}) as fleet:
        fleet.submit(groups)                        # routed by prompt_id
        for batch in fleet.batches(timeout=60):     # batch.worker_id says which worker made it
            train_step(batch)
            fleet.ack(batch)
        fleet.update_weights(1, "/checkpoints/step-1")   # every worker; returns when all serve it
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import pathlib
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from longtail.client import Client
from longtail.fleet_history import CAPABILITY as HISTORY_CAPABILITY, encode_history
from longtail.fleet_link import Link
from longtail.fleet_routing import Router, group_tokens, placement_order
from longtail.fleet_worker import WorkerMember, member_config, package_digest
from longtail.protocol import WorkerError
from longtail.types import Batch, Group

log = logging.getLogger("longtail.fleet")

REPO = pathlib.Path(__file__).resolve().parents[3]
PACKAGE_DIR = str(pathlib.Path(__file__).resolve().parent)


class FleetError(Exception):
    """The fleet cannot serve (no worker left, a worker that cannot start, a failed request)."""


class SubmitRefused(FleetError):
    """Some groups were refused (bad input); ``refused`` maps their group ids to the worker's
    error. The other groups of the call were admitted and will be delivered."""

    def __init__(self, refused: Mapping[str, Exception], admitted: int) -> None:
        first = next(iter(refused.items()))
        super().__init__(f"{len(refused)} group(s) refused, {admitted} admitted; "
                         f"first: {first[0]}: {first[1]}")
        self.refused = dict(refused)
        self.admitted = admitted


def default_worker_binary() -> str:
    build = pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build"))
    return str(build / "bin" / "longtail-worker")


@dataclass
class _Pending:
    """A submitted group not yet delivered."""

    group: Group
    tokens: int
    worker: str
    instance: Optional[str] = None  # worker process that confirmed it (None: SUBMIT in transit)
    orphan: bool = False            # its worker restarted; waiting for the journal re-sends
    attempts: int = 1


def _subset(batch: Batch, keep: Sequence[int]) -> Batch:
    """The batch with only the trajectories at ``keep`` (group-level dedup after a failover).
    Per-group baselines follow their groups; the batch-wide importance figures are recomputed."""
    trs = [batch.trajectories[i] for i in keep]
    arrays: Dict[str, np.ndarray] = {}
    for name in ("prompt_tokens", "response_tokens", "behaviour_logprobs", "policy_versions"):
        parts = [getattr(t, name) for t in trs]
        arrays[name] = np.concatenate(parts) if parts else batch.arrays[name][:0]
    for name, attr in (("current_logprobs", "current_logprobs"), ("token_tis", "token_tis")):
        parts = [getattr(t, attr) for t in trs if getattr(t, attr) is not None]
        arrays[name] = np.concatenate(parts) if parts else batch.arrays[name][:0]
    gids = {t.group_id for t in trs}
    imp = dict(batch.importance)
    imp["baselines"] = [b for b in imp.get("baselines", []) if b.get("group_id") in gids]
    w = np.array([t.weight for t in trs], dtype=np.float64)
    if w.size:
        ess = float(w.sum() ** 2 / max((w * w).sum(), 1e-300))
        imp.update(trajectories=len(trs), off_policy_trajectories=sum(t.current_logprobs is not None for t in trs),
                   ess=ess, ess_ratio=ess / len(trs), lr_scale=float(np.sqrt(min(1.0, ess / len(trs)))),
                   max_weight=float(w.max()), min_weight=float(w.min()),
                   mean_log_ratio=float(np.mean([t.log_ratio for t in trs])))
    return replace(batch, trajectories=trs, importance=imp, arrays=arrays)


class Fleet:
    """A fleet of rollout workers.

    Args:
        num_workers: workers to start (one Ray actor and one longtail-worker process each).
        config: worker YAML (configs/worker.yaml documents every key); None = the worker defaults.
        overrides: dotted keys applied on top of ``config``, e.g. ``{"backend.kind": "cpu",
            "backend.threads": 1}``. ``worker_id``, ``bridge.endpoint`` and ``bridge.journal_dir``
            are set by the fleet for each worker.
        resources_per_worker: Ray resources of each actor, e.g. ``{"GPU": 1}`` (the worker then
            sees exactly that device through CUDA_VISIBLE_DEVICES) or ``{"CPU": 1}``.
        routing: ``affine`` (consistent hashing of prompt_id with bounded load) or ``random``.
        eps: load slack of affine routing: a worker above (1 + eps) x the mean queued tokens
            passes new prompts to the next worker on the ring.
        credits: per worker, batches it may send ahead of the trainer's consumption.
        name: prefix of the worker ids (``<name>-<i>``); keep it stable to reuse journals.
        run_dir: where members keep configuration, journal, socket and logs (default: a new
            directory under the system temp dir, removed at shutdown).
        worker_binary: longtail-worker to run (default: $LONGTAIL_BUILD_DIR/bin or <repo>/build/bin).
        ray_init: keyword arguments for ``ray.init`` when Ray is not initialized yet (it joins a
            running cluster when one is reachable, e.g. RAY_ADDRESS, else starts a local one).
        shared_history: send each batch's rollouts to the other workers' drafter history (HISTORY
            message; only to workers that list the ``history`` capability).
        failover_timeout_s: a dead worker not back (restarted, journal re-sent) within this long
            loses its groups to the other workers.
        start_timeout_s: bound on starting the fleet.
        max_restarts: restarts of a dead worker process before its member gives up (-1 = never).
        tokenizer: for text prompts, as for :class:`longtail.Client` (each connection loads it).
    """

    def __init__(self, num_workers: int, config: Optional[Union[str, os.PathLike]] = None,
                 overrides: Optional[Mapping[str, Any]] = None,
                 resources_per_worker: Optional[Mapping[str, float]] = None, *, routing: str = "affine",
                 eps: float = 0.25, credits: int = 4, name: str = "fleet", run_dir: Optional[str] = None,
                 worker_binary: Optional[str] = None, ray_init: Optional[Mapping[str, Any]] = None,
                 transport: str = "auto", shared_history: bool = True, failover_timeout_s: float = 30.0, start_timeout_s: float = 120.0,
                 max_restarts: int = -1, tokenizer: Any = None) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        import ray

        binary = worker_binary or default_worker_binary()
        if not os.access(binary, os.X_OK):
            raise FleetError(f"{binary} is not an executable longtail-worker (build it, or set "
                             "LONGTAIL_BUILD_DIR or worker_binary)")
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            # The actors must run this very package, not whatever version a node has installed:
            # Ray ships it to every node (py_modules works only at the job level, i.e. here).
            ray.init(**dict({"include_dashboard": False, "log_to_driver": False,
                             "runtime_env": {"py_modules": [PACKAGE_DIR]}}, **(ray_init or {})))
        self._ray = ray
        self._owns_run_dir = run_dir is None
        self.run_dir = run_dir or tempfile.mkdtemp(prefix="ltf-")
        self.failover_timeout_s = failover_timeout_s
        self.shared_history = shared_history
        self._lock = threading.RLock()
        self._pending: Dict[str, _Pending] = {}
        self._ghosts: Dict[str, int] = {}   # group id -> stale copies that may still arrive
        self._out: "queue.Queue[Batch]" = queue.Queue()
        self._weights: Optional[Tuple[int, str]] = None
        self._sleep_level = 0  # what a restarted worker is put back to (Fleet.sleep)
        self._down_since: Dict[str, float] = {}
        self._closed = False
        self._late_refusals: Dict[str, Exception] = {}
        self._context = 0  # the model's context length, from HELLO (for max_tokens=None)
        self._members: Dict[str, Any] = {}
        self._links: Dict[str, Link] = {}
        self.counters = {"groups_submitted": 0, "groups_delivered": 0, "groups_resubmitted": 0,
                         "groups_refused": 0, "duplicate_groups_dropped": 0, "unknown_groups_dropped": 0,
                         "batches_delivered": 0, "batches_filtered": 0, "batches_discarded": 0,
                         "worker_restarts": 0, "failovers": 0, "trajectories_delivered": 0,
                         "history_messages": 0, "history_trajectories": 0}
        self.recoveries: List[Dict[str, float]] = []
        self.worker_ids = [f"{name}-{i}" for i in range(num_workers)]
        self.router = Router(self.worker_ids, policy=routing, eps=eps)
        driver_node = ray.get_runtime_context().get_node_id()
        opts: Dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0}
        res = dict(resources_per_worker or {"CPU": 1})
        if "CPU" in res:
            opts["num_cpus"] = res.pop("CPU")
        if "GPU" in res:
            opts["num_gpus"] = res.pop("GPU")
        if res:
            opts["resources"] = res
        actor_cls = ray.remote(WorkerMember).options(**opts)
        cfg = None if config is None else str(pathlib.Path(config).resolve())
        round_groups = (member_config(cfg, dict(overrides or {}), "-", "-", "-").get("engine") or {}).get("round_groups")
        if round_groups:
            log.warning("engine.round_groups = %s: a fleet worker gets only its share of each round, so it may "
                        "hold finished groups until %s complete (use 0, or call drain())", round_groups, round_groups)
        self._members = {wid: actor_cls.remote(wid, self.run_dir, cfg, dict(overrides or {}), binary,
                                               driver_node, transport, max_restarts=max_restarts)
                         for wid in self.worker_ids}
        self._info: Dict[str, Dict[str, Any]] = {}
        try:
            infos = ray.get([self._members[w].info.remote() for w in self.worker_ids], timeout=start_timeout_s)
            for wid, info in zip(self.worker_ids, infos):
                if info.get("package_digest") != package_digest():
                    log.warning("%s runs another longtail (%s) than this trainer (%s): start Ray with "
                                "runtime_env={'py_modules': [longtail]} or install the same version on every node",
                                wid, info.get("package", "?"), PACKAGE_DIR)
                self._info[wid] = info
                self._links[wid] = Link(self, wid, info["endpoint"], credits=credits, tokenizer=tokenizer)
                self._links[wid].start()
            deadline = time.monotonic() + start_timeout_s
            for wid, link in self._links.items():
                while not link.connected.wait(0.2):
                    if link.error is not None:
                        raise FleetError(f"worker {wid} did not start: {link.error}")
                    if time.monotonic() > deadline:
                        raise FleetError(f"worker {wid} did not say HELLO within {start_timeout_s} s")
        except BaseException:
            self.shutdown()
            raise
        self._monitor = threading.Thread(target=self._watch, name="fleet-monitor", daemon=True)
        self._monitor.start()

    # ------------------------------------------------------------------ public API
    def submit(self, groups: Iterable[Union[Group, Mapping[str, Any]]], timeout: float = 30.0) -> int:
        """Routes the groups by prompt_id (group_id when prompt_id is empty) and queues them on their
        workers. Returns how many were admitted. Raises SubmitRefused naming the groups a worker
        refused (bad input); the others stay admitted. A group on a worker that is down waits for
        it (or for failover), it is not refused."""
        gs = [Group.coerce(g) for g in groups]
        seen = set()
        with self._lock:
            for g in gs:
                if not g.group_id:
                    raise ValueError("group_id must be non-empty")
                if g.group_id in seen or g.group_id in self._pending:
                    raise ValueError(f"group {g.group_id!r} is already in flight in this fleet")
                if g.group_id in self._ghosts:
                    raise ValueError(f"group {g.group_id!r} was resubmitted after a worker failure and a "
                                     "stale copy may still arrive; use a fresh group id")
                seen.add(g.group_id)
            by_worker = self._route(gs)
            self.counters["groups_submitted"] += len(gs)
        futs = {w: self._links[w].call(self._submit_fn(w, ps)) for w, ps in by_worker.items()}
        refused: Dict[str, Exception] = {}
        for w, fut in futs.items():
            try:
                refused.update(fut.result(timeout=timeout))
            except concurrent.futures.TimeoutError:
                pass  # still trying on the worker's thread; groups stay pending
        with self._lock:
            for gid in refused:
                self._late_refusals.pop(gid, None)
        if refused:
            raise SubmitRefused(refused, len(gs) - len(refused))
        return len(gs)

    def batches(self, timeout: Optional[float] = 60.0, limit: Optional[int] = None) -> Iterator[Batch]:
        """New batches from every worker as they arrive (``batch.worker_id`` set); stops after
        ``limit`` batches or when none arrives within ``timeout`` seconds."""
        n = 0
        while limit is None or n < limit:
            b = self.next_batch(timeout)
            if b is None:
                return
            n += 1
            yield b

    def next_batch(self, timeout: Optional[float] = 60.0) -> Optional[Batch]:
        try:
            b = self._out.get(timeout=timeout)
        except queue.Empty:
            self._raise_if_failed()
            return None
        link = self._links.get(b.worker_id)
        if link is not None:
            link.post(lambda c: c.credit(1))  # the trainer took it: the worker may send one more
        return b

    def ack(self, batches: Union[Batch, Sequence[Batch]]) -> None:
        """Acknowledges batches to the workers that made them (after they are durably consumed)."""
        items = batches if isinstance(batches, (list, tuple)) else [batches]
        for b in items:
            self._links[b.worker_id].post(lambda c, b=b: c.ack(b))

    def update_weights(self, version: int, path: Union[str, os.PathLike], timeout: float = 600.0) -> int:
        """Loads checkpoint ``path`` as policy ``version`` on every worker (in parallel); returns when
        all serve it. A worker restarted later loads it again before it gets new groups."""
        path = os.fspath(path)
        with self._lock:
            self._weights = (int(version), path)
        futs = {w: l.call(lambda c: c.update_weights(version, path, timeout=timeout)) for w, l in self._links.items()
                if l.error is None}
        failed = {}
        for w, f in futs.items():
            try:
                f.result(timeout=timeout + 5)
            except Exception as exc:
                failed[w] = exc
        if failed:
            raise FleetError(f"weight update to version {version} failed on {sorted(failed)}: "
                             + "; ".join(f"{w}: {e}" for w, e in failed.items()))
        return int(version)

    def stats(self, timeout: float = 10.0) -> Dict[str, Any]:
        """Fleet counters, routing decisions and reasons, and every worker's STATS plus its actor's
        view (restarts, pid, endpoint)."""
        futs = {w: l.call(lambda c: c.stats()) for w, l in self._links.items() if l.error is None}
        workers: Dict[str, Any] = {}
        for w, f in futs.items():
            try:
                workers[w] = f.result(timeout=timeout)
            except Exception as exc:
                workers[w] = {"error": str(exc)}
        with self._lock:
            for w in self.worker_ids:
                workers.setdefault(w, {})["member"] = {k: v for k, v in self._info.get(w, {}).items() if k != "log_tail"}
            pending = {w: sum(1 for p in self._pending.values() if p.worker == w) for w in self.worker_ids}
            return {"fleet": dict(self.counters, groups_pending=len(self._pending),
                                  stale_copies=sum(self._ghosts.values()),
                                  pending_per_worker=pending, recoveries=list(self.recoveries),
                                  policy_version=self._weights[0] if self._weights else None),
                    "routing": self.router.stats(), "workers": workers}

    def drain(self, timeout: float = 30.0) -> Dict[str, Optional[int]]:
        """DRAIN on every worker: what has finished is emitted now. Returns each worker's batch seq
        (None where nothing had finished)."""
        futs = {w: l.call(lambda c: c.drain(timeout)) for w, l in self._links.items() if l.error is None}
        return {w: f.result(timeout=timeout + 5) for w, f in futs.items()}

    def sleep(self, level: int = 1, timeout: float = 60.0) -> Dict[str, Dict[str, Any]]:
        """SLEEP on every worker (vLLM's sleep mode, for trainers colocated on the workers' GPUs):
        level 1 frees their KV caches, 2 their weights too. Samples in flight pause; groups
        submitted meanwhile are held; a worker restarted while the fleet sleeps is put to sleep
        again. Returns each worker's SLEEP_OK reply."""
        with self._lock:
            self._sleep_level = max(self._sleep_level, int(level))
        return self._on_every_worker(lambda c: c.sleep(level, timeout=timeout), timeout, f"sleep at level {level}")

    def wake_up(self, timeout: float = 60.0) -> Dict[str, Dict[str, Any]]:
        """WAKE_UP on every worker; returns each worker's WAKE_UP_OK reply."""
        with self._lock:
            self._sleep_level = 0
        return self._on_every_worker(lambda c: c.wake_up(timeout=timeout), timeout, "wake-up")

    def _on_every_worker(self, fn, timeout: float, what: str) -> Dict[str, Any]:
        futs = {w: l.call(fn) for w, l in self._links.items() if l.error is None}
        out, failed = {}, {}
        for w, f in futs.items():
            try:
                out[w] = f.result(timeout=timeout + 5)
            except Exception as exc:
                failed[w] = exc
        if failed:
            raise FleetError(f"{what} failed on {sorted(failed)}: " + "; ".join(f"{w}: {e}" for w, e in failed.items()))
        return out

    def pending(self) -> int:
        """Groups submitted and not yet delivered."""
        with self._lock:
            return len(self._pending)

    def kill_worker(self, worker_id: str, sig: int = 9) -> int:
        """Sends ``sig`` to a worker's process (failure drills); returns its pid."""
        return int(self._ray.get(self._members[worker_id].kill.remote(sig)))

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stops every worker gracefully (what is un-acked stays in its journal), then the actors,
        and Ray if this fleet started it."""
        if self._closed:
            return
        self._closed = True
        for l in self._links.values():
            l.stop()
        ray = self._ray
        stops = [m.stop.remote(timeout) for m in self._members.values()]
        try:
            ray.get(stops, timeout=timeout + 10)
        except Exception as exc:
            log.warning("stopping fleet workers: %s", exc)
        for m in self._members.values():
            ray.kill(m)
        for l in self._links.values():
            if l.is_alive():
                l.join(5)
        if self._owns_ray:
            ray.shutdown()
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ routing and resubmission
    def _route(self, gs: Sequence[Group], exclude: Sequence[str] = ()) -> Dict[str, List[_Pending]]:
        """Assigns groups to workers (lock held); returns the new pending entries per worker."""
        down = [w for w in self.router.workers if w in self._down_since] + list(exclude)
        if len(down) >= len(self.router.workers):
            down = list(exclude)  # everyone is down: queue on the ring anyway, they come back
        tokens = [self._tokens(g) for g in gs]
        left = sum(tokens)
        out: Dict[str, List[_Pending]] = {}
        for i in placement_order([g.prompt_id or g.group_id for g in gs]):
            g = gs[i]
            left -= tokens[i]
            w, _ = self.router.route(g.prompt_id or g.group_id, tokens[i], left, exclude=down, group_id=g.group_id)
            p = self._pending.get(g.group_id)
            if p is None:
                p = self._pending[g.group_id] = _Pending(g, tokens[i], w)
            else:
                p.worker, p.instance, p.orphan, p.attempts = w, None, False, p.attempts + 1
            out.setdefault(w, []).append(p)
        return out

    def _tokens(self, g: Group) -> int:
        # Text prompts are tokenized on the link; their prompt length is not known here.
        prompt_len = 0 if g.prompt_tokens is None else int(g.prompt_tokens.size)
        max_tokens = g.max_tokens if g.max_tokens is not None else max(1, self._context - prompt_len)
        return group_tokens(g.n, prompt_len, max_tokens)

    def _submit_fn(self, worker: str, ps: List[_Pending]):
        """The SUBMIT of ``ps`` as run on the worker's link thread. Returns {group_id: error} for
        groups the worker refused; QUEUE_FULL groups are retried there until they fit."""

        def run(c: Client) -> Dict[str, Exception]:
            link = self._links[worker]
            refused: Dict[str, Exception] = {}
            todo = [p for p in ps if self._still_assigned(p, worker)]
            while todo:
                before = link.instance
                try:
                    c.submit([p.group for p in todo])
                except WorkerError as e:
                    if e.code == "QUEUE_FULL":
                        # Try again after the commands queued behind this one (acks free the
                        # worker's outbox, so waiting here could stall it).
                        link.receive()
                        link.post(self._submit_fn(worker, todo))
                        return refused
                    if e.code == "SHUTTING_DOWN":
                        self._confirm(todo, worker, before)  # restart handling will move them
                        return refused
                    if len(todo) == 1:
                        if "already in flight" in e.message:
                            self._confirm(todo, worker, c.worker.instance)
                        else:
                            refused[todo[0].group.group_id] = e
                            self._refuse(todo[0], e)
                        return refused
                    # One refused group refuses the SUBMIT: find it by sending them one by one.
                    for p in todo:
                        refused.update(run_one(c, p))
                    return refused
                except TimeoutError:
                    # Not answered (worker down): it may or may not hold them; if it restarted, the
                    # restart handling resubmits them, else they arrive as usual.
                    self._confirm(todo, worker, before)
                    return refused
                link.check_instance()
                self._confirm(todo, worker, c.worker.instance)
                return refused
            return refused

        def run_one(c: Client, p: _Pending) -> Dict[str, Exception]:
            return self._submit_fn(worker, [p])(c)

        return run

    def _still_assigned(self, p: _Pending, worker: str) -> bool:
        with self._lock:
            return self._pending.get(p.group.group_id) is p and p.worker == worker

    def _confirm(self, ps: Sequence[_Pending], worker: str, instance: Optional[str]) -> None:
        with self._lock:
            link = self._links[worker]
            for p in ps:
                if self._pending.get(p.group.group_id) is not p or p.worker != worker:
                    continue
                p.instance = instance
                if instance != link.instance:
                    p.orphan = True  # sent to a process that has since been replaced

    def _refuse(self, p: _Pending, err: Exception) -> None:
        with self._lock:
            if self._pending.get(p.group.group_id) is p:
                del self._pending[p.group.group_id]
                self.router.release(p.worker, p.tokens)
                self.counters["groups_refused"] += 1
                self.counters["groups_submitted"] -= 1
                self._late_refusals[p.group.group_id] = err

    def _resubmit(self, ps: List[_Pending], exclude: Sequence[str] = ()) -> None:
        """Routes lost groups again (lock held) and queues their SUBMITs."""
        if not ps:
            return
        for p in ps:
            self.router.release(p.worker, p.tokens)
        self.counters["groups_resubmitted"] += len(ps)
        by_worker = self._route([p.group for p in ps], exclude)
        for w, batch in by_worker.items():
            self._links[w].post(self._submit_fn(w, batch))

    # ------------------------------------------------------------------ link callbacks
    def _on_connect(self, link: Link, info: Any) -> None:
        with self._lock:
            self._context = int(info.model.get("max_position_embeddings", self._context))
            self._down_since.pop(link.worker_id, None)

    def _on_restart(self, link: Link, client: Client) -> None:
        """Runs on the link thread right after it saw a new worker instance."""
        with self._lock:
            self.counters["worker_restarts"] += 1
            for p in self._pending.values():
                if p.worker == link.worker_id and p.instance is not None and p.instance != link.instance:
                    p.orphan = True
            weights = self._weights
            sleep_level = self._sleep_level
        if weights is not None and client.worker is not None and client.worker.policy_version != weights[0]:
            # A restarted worker loads the configured checkpoint; bring it to the fleet's version
            # before it generates anything for the trainer.
            try:
                client.update_weights(weights[0], weights[1])
            except (WorkerError, TimeoutError) as exc:
                log.error("worker %s restarted but could not load policy version %d from %s: %s",
                          link.worker_id, weights[0], weights[1], exc)
        if sleep_level and client.worker is not None and client.worker.sleep_level < sleep_level:
            try:  # the trainer holds the memory a restarted worker just took
                client.sleep(sleep_level)
            except (WorkerError, TimeoutError) as exc:
                log.error("worker %s restarted while the fleet sleeps and could not sleep: %s", link.worker_id, exc)

    def _on_replayed(self, link: Link, complete: bool) -> None:
        """The restarted worker has re-sent its journal: what is still missing was lost with the old
        process; submit it again (usually to the same worker, where its history is)."""
        with self._lock:
            lost = [p for p in self._pending.values() if p.worker == link.worker_id and p.orphan]
            if not complete:
                for p in lost:
                    self._ghosts[p.group.group_id] = self._ghosts.get(p.group.group_id, 0) + 1
            self._down_since.pop(link.worker_id, None)
            now = time.monotonic()
            # Monotonic times of this process, so a caller can relate them to when it killed a worker.
            self.recoveries.append({"worker": link.worker_id, "restarted_at": link.restarted_at, "replayed_at": now,
                                    "restart_to_replayed_s": now - link.restarted_at, "journal_complete": complete,
                                    "groups_resubmitted": len(lost)})
            self._resubmit(lost)

    def _on_batch(self, link: Link, b: Batch) -> None:
        keep: List[int] = []
        with self._lock:
            fresh: Dict[str, bool] = {}
            for i, t in enumerate(b.trajectories):
                gid = t.group_id
                if gid not in fresh:
                    if gid in self._pending:
                        p = self._pending.pop(gid)
                        self.router.release(p.worker, p.tokens)
                        self.counters["groups_delivered"] += 1
                        fresh[gid] = True
                    elif self._ghosts.get(gid, 0) > 0:
                        self._ghosts[gid] -= 1
                        if not self._ghosts[gid]:
                            del self._ghosts[gid]
                        self.counters["duplicate_groups_dropped"] += 1
                        fresh[gid] = False
                    else:
                        self.counters["unknown_groups_dropped"] += 1
                        fresh[gid] = False
                if fresh[gid]:
                    keep.append(i)
            if not keep:
                self.counters["batches_discarded"] += 1
            elif len(keep) < len(b.trajectories):
                self.counters["batches_filtered"] += 1
                b = _subset(b, keep)
            if keep:
                self.counters["batches_delivered"] += 1
                self.counters["trajectories_delivered"] += len(keep)
        if not keep:
            # Nothing new for the trainer: the batch is consumed here.
            link.client.ack(b)
            link.client.credit(1)
            return
        if self.shared_history and len(self._links) > 1:
            self._share(link, b)
        self._out.put(b)

    def _share(self, source: Link, b: Batch) -> None:
        req, frames = encode_history(b)

        def send(c: Client) -> None:
            if c.worker is not None and HISTORY_CAPABILITY in c.worker.capabilities:
                c.request_raw(frames, req, timeout=10.0)
                with self._lock:
                    self.counters["history_messages"] += 1
                    self.counters["history_trajectories"] += len(b.trajectories)

        for w, l in self._links.items():
            if w != source.worker_id and l.error is None:
                l.post(send)

    def _on_link_failed(self, link: Link, exc: BaseException) -> None:
        with self._lock:
            self._down_since.setdefault(link.worker_id, time.monotonic())

    # ------------------------------------------------------------------ health
    def _member_alive(self, worker_id: str) -> bool:
        try:
            info = self._ray.get(self._members[worker_id].info.remote(), timeout=10)
        except Exception:
            return False
        self._info[worker_id] = info
        return bool(info["alive"]) or not info["gave_up"]

    def _member_log(self, worker_id: str) -> str:
        return self._info.get(worker_id, {}).get("log_tail", "") or str(self._info.get(worker_id, {}).get("exits", ""))

    def _watch(self) -> None:
        """Polls the actors: marks dead workers down (routing avoids them) and, past the failover
        timeout or when a member gives up, moves their groups to the others."""
        ray = self._ray
        while not self._closed:
            refs = {w: self._members[w].info.remote() for w in self.router.workers}
            for w, ref in refs.items():
                try:
                    info = ray.get(ref, timeout=5)
                    alive, gave_up = info["alive"], info["gave_up"]
                    self._info[w] = info
                    if info["endpoint"] != self._links[w].endpoint:
                        self._links[w].retarget(info["endpoint"])  # Ray restarted the actor (tcp)
                except Exception:
                    alive, gave_up = False, False
                if self._closed:
                    return
                with self._lock:
                    link = self._links[w]
                    if not alive or link.replay_until_seq is not None:
                        self._down_since.setdefault(w, time.monotonic())
                    down_for = time.monotonic() - self._down_since.get(w, time.monotonic())
                    if gave_up or (not alive and down_for > self.failover_timeout_s):
                        self._fail_over(w, permanent=gave_up)
            time.sleep(0.5)

    def _fail_over(self, worker: str, permanent: bool) -> None:
        """Moves a dead worker's groups to the rest of the fleet (lock held). Copies it journaled may
        still arrive if it comes back; they are dropped by group id."""
        lost = [p for p in self._pending.values() if p.worker == worker]
        if not lost and not permanent:
            return
        self.counters["failovers"] += 1
        log.warning("worker %s is down: moving its %d groups to the other workers%s", worker, len(lost),
                    " and taking it off the ring" if permanent else "")
        for p in lost:
            self._ghosts[p.group.group_id] = self._ghosts.get(p.group.group_id, 0) + 1
        if permanent:
            self.router.remove_worker(worker)
            if not self.router.workers:
                return
        others = [w for w in self.router.workers if w != worker]
        if not others:
            return
        self._resubmit(lost, exclude=[worker])

    def _raise_if_failed(self) -> None:
        with self._lock:
            if self._late_refusals:
                # Refused on a retry after QUEUE_FULL, when submit() had already returned.
                refused, self._late_refusals = self._late_refusals, {}
                raise SubmitRefused(refused, 0)
            if not self.router.workers:
                raise FleetError("every worker of the fleet is gone: " +
                                 "; ".join(f"{w}: {self._member_log(w)}" for w in self.worker_ids))
