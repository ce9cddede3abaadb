"""The fleet's connection to one worker: a thread that owns one :class:`longtail.Client`.

A Client is not thread-safe and keeps its session alive only while someone pumps it, so each worker
gets a thread that does nothing else: it runs the fleet's requests (submit, ack, credit, weights,
stats, drain) in order, receives batches between them, heartbeats while the trainer is busy, and
tells the fleet when the worker process behind the endpoint has changed (a new ``instance`` in
HELLO: it restarted and lost whatever it had not journaled). Group bookkeeping stays in the fleet.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

from longtail.client import Client, _SeqSet

log = logging.getLogger("longtail.fleet")


class Link(threading.Thread):
    """Args:
        fleet: receives ``_on_connect``, ``_on_restart``, ``_on_batch``, ``_on_replayed`` callbacks
            (called from this thread).
        worker_id, endpoint: the member this link serves.
        credits: batches the worker may send ahead of the trainer's consumption.
        replay_timeout_s: after a restart, how long to wait for the worker's journal re-sends
            before its lost groups are resubmitted anyway.
    """

    def __init__(self, fleet: Any, worker_id: str, endpoint: str, credits: int = 4,
                 replay_timeout_s: float = 30.0, poll_s: float = 0.02, tokenizer: Any = None) -> None:
        super().__init__(name=f"link-{worker_id}", daemon=True)
        self.fleet = fleet
        self.worker_id = worker_id
        self.endpoint = endpoint
        self.credits = credits
        self.replay_timeout_s = replay_timeout_s
        self.poll_s = poll_s
        self.tokenizer = tokenizer
        self.client: Optional[Client] = None
        self.instance: Optional[str] = None
        self.connected = threading.Event()
        self.seen = _SeqSet()              # seqs received from this worker, new or re-sent
        self.replay_until_seq: Optional[int] = None
        self.replay_deadline = 0.0
        self.restarted_at = 0.0
        self._cmds: "queue.Queue[tuple]" = queue.Queue()
        self._halt = threading.Event()
        self._dups = 0
        self.error: Optional[BaseException] = None

    # ------------------------------------------------------------------ called from other threads
    def call(self, fn: Callable[[Client], Any]) -> "concurrent.futures.Future[Any]":
        """Runs ``fn(client)`` on this link's thread; the future holds its result or exception."""
        fut: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        self._cmds.put((fn, fut))
        return fut

    def post(self, fn: Callable[[Client], Any]) -> None:
        """Like :meth:`call` without a result (errors are logged)."""
        self._cmds.put((fn, None))

    def stop(self) -> None:
        self._halt.set()

    # ------------------------------------------------------------------ the thread
    def run(self) -> None:
        try:
            self._connect()
            while not self._halt.is_set():
                self._run_commands()
                self.receive()
        except BaseException as exc:  # reported through fleet.stats() and batches()
            log.exception("link to %s failed", self.worker_id)
            self.error = exc
            self.fleet._on_link_failed(self, exc)
        finally:
            if self.client is not None:
                self.client.close()

    def retarget(self, endpoint: str) -> None:
        """The member now listens elsewhere (Ray restarted its actor): connect there."""

        def fn(c: Client) -> None:
            c.close()
            self.client = None
            self.endpoint = endpoint
            self._connect(first=False)

        self.post(fn)

    def _connect(self, first: bool = True) -> None:
        # The worker may still be loading its checkpoint: keep saying HELLO until it answers.
        self._dups = 0
        while not self._halt.is_set():
            try:
                self.client = Client(self.endpoint, credits=self.credits, auto_credit=False, timeout=30.0,
                                     worker_timeout=10.0, client_id=f"fleet-{self.worker_id}",
                                     tokenizer=self.tokenizer)
                break
            except TimeoutError:
                if not self.fleet._member_alive(self.worker_id):
                    raise RuntimeError(f"worker {self.worker_id} exited before it said HELLO: "
                                       f"{self.fleet._member_log(self.worker_id)}")
        if self.client is None:
            return
        assert self.client.worker is not None
        if first:
            self.instance = self.client.worker.instance
        else:
            self.check_instance()
        self.fleet._on_connect(self, self.client.worker)
        self.connected.set()

    def _run_commands(self) -> None:
        while True:
            try:
                fn, fut = self._cmds.get_nowait()
            except queue.Empty:
                return
            try:
                result = fn(self.client)
            except Exception as exc:
                if fut is None:
                    log.warning("%s: %s", self.worker_id, exc)
                else:
                    fut.set_exception(exc)
            else:
                if fut is not None:
                    fut.set_result(result)
            self.check_instance()

    def receive(self) -> None:
        """Takes in what the worker sent within one poll interval (also used while a SUBMIT waits)."""
        c = self.client
        assert c is not None
        b = c.next_batch(timeout=self.poll_s)
        self.check_instance()
        dups = c.duplicates_dropped - self._dups
        if dups:
            # Re-sends of batches already delivered still used credit; give it back.
            self._dups = c.duplicates_dropped
            c.credit(dups)
        if b is not None:
            self.seen.add(b.seq)
            self.fleet._on_batch(self, b)
        if self.replay_until_seq is not None:
            done = all(s in self.seen for s in range(self.seen.watermark, self.replay_until_seq))
            if done or time.monotonic() > self.replay_deadline:
                if not done:
                    log.warning("%s: journal re-sends incomplete after %.0f s; resubmitting anyway",
                                self.worker_id, self.replay_timeout_s)
                self.replay_until_seq = None
                self.fleet._on_replayed(self, complete=done)

    def check_instance(self) -> None:
        """Notices a worker restart (new instance in HELLO) after any call into the client."""
        c = self.client
        if c is None or c.worker is None or c.worker.instance == self.instance:
            return
        old, self.instance = self.instance, c.worker.instance
        self.restarted_at = time.monotonic()
        # Every batch the old process journaled has a seq below next_seq; it is re-sent first.
        self.replay_until_seq = c.worker.next_seq
        self.replay_deadline = time.monotonic() + self.replay_timeout_s
        log.warning("worker %s restarted (instance %s -> %s, %d un-acked batches to re-send)",
                    self.worker_id, old, self.instance, c.worker.unacked)
        self.fleet._on_restart(self, c)
