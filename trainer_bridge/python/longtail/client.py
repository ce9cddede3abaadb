"""The trainer side of a longtail worker connection (PROTOCOL.md, "Trainer state machine").

One :class:`Client` talks to one worker over a DEALER socket. It keeps the session alive with
heartbeats, re-establishes it (HELLO) when the worker restarts or the connection drops, grants
credit as batches are consumed, and drops duplicate batches by (worker id, seq) so that every
trajectory is delivered to the caller exactly once. Not thread-safe: use one Client per thread.
"""

from __future__ import annotations

import collections
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import zmq

from longtail import text
from longtail.protocol import PROTOCOL_VERSION, ProtocolViolation, WorkerError, encode_submit, pack, unpack_header
from longtail.request import Group, submit_entries
from longtail.types import Batch, WorkerInfo, decode_batch

log = logging.getLogger("longtail.client")


#: Errors after which the worker has no session for us: say HELLO again and resend the request.
_SESSION_LOST = ("NO_SESSION", "ROUTING_ID_IN_USE")


@dataclass
class CurveKeys:
    """CURVE keys (Z85 text, 40 characters each): the worker's public key and this trainer's pair."""

    server_public: str
    public: str
    secret: str


def load_key(path: Union[str, os.PathLike]) -> str:
    """Reads a Z85 key file as written by ``longtail-keygen`` (first word of the file)."""
    with open(path, "r", encoding="ascii") as f:
        words = f.read().split()
    if not words or len(words[0]) != 40:
        raise ValueError(f"{path} does not hold a 40-character Z85 key")
    return words[0]


class _SeqSet:
    """Sequence numbers already delivered, compacted to a watermark plus the numbers above it."""

    def __init__(self) -> None:
        self.watermark = 0  # every seq below it was delivered
        self.above: Set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq < self.watermark or seq in self.above

    def add(self, seq: int) -> None:
        if seq < self.watermark:
            return
        self.above.add(seq)
        while self.watermark in self.above:
            self.above.remove(self.watermark)
            self.watermark += 1


class Client:
    """Connects to a worker and says HELLO.

    Args:
        endpoint: the worker's endpoint, ``tcp://host:port`` or ``ipc:///path``.
        credits: batches the worker may send ahead of consumption (the flow-control window).
        auto_credit: grant one credit back whenever a batch is handed to the caller (or dropped as a
            duplicate); with False, call :meth:`credit` yourself.
        timeout: default seconds to wait for replies.
        heartbeat_interval: seconds between this client's HEARTBEATs while it waits.
        worker_timeout: worker silent this long (no heartbeat) = reconnect with a new HELLO.
        curve: CURVE keys when the worker requires encryption.
        client_id: a name for the worker's logs (default: host-pid-random).
        tokenizer: enables text prompts (``Group(prompt=...)``, ``Group(messages=[...])``) and
            ``response_text`` on every trajectory: a tokenizer object (e.g. transformers'
            AutoTokenizer) or the model directory to load one from (needs ``longtail[text]``).
    """

    def __init__(self, endpoint: str, *, credits: int = 4, auto_credit: bool = True, timeout: float = 30.0,
                 heartbeat_interval: float = 1.0, worker_timeout: float = 10.0,
                 curve: Optional[CurveKeys] = None, client_id: Optional[str] = None,
                 context: Optional[zmq.Context] = None, tokenizer: Any = None) -> None:
        self.endpoint = endpoint
        self.window = int(credits)
        self.auto_credit = auto_credit
        self.timeout = timeout
        self.heartbeat_interval = heartbeat_interval
        self.worker_timeout = worker_timeout
        self.curve = curve
        self.tokenizer = text.load_tokenizer(tokenizer) if tokenizer is not None else None
        self.client_id = client_id or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._ctx = context or zmq.Context.instance()
        self._sock: Optional[zmq.Socket] = None
        self._req = 0
        self._replies: Dict[int, Tuple[Dict[str, Any], List[Any]]] = {}
        self._errors: Deque[WorkerError] = collections.deque(maxlen=100)
        self._batches: Deque[Batch] = collections.deque()
        self._delivered: Dict[str, _SeqSet] = collections.defaultdict(_SeqSet)
        self._acked: Dict[str, _SeqSet] = collections.defaultdict(_SeqSet)
        self._last_sent = 0.0
        self._last_heard = 0.0
        self._hello_pending = False
        self._hello_sent_at = 0.0
        self._silence_ok_until = 0.0  # the worker may be silent (loading weights) until then
        self.worker: Optional[WorkerInfo] = None
        self._segment: Any = None  # shared_weights.TensorSegment of the last shm weight update
        self.duplicates_dropped = 0
        self.reconnects = 0
        self._connect()
        self._hello(wait=True)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, int(self.heartbeat_interval * 1000))
        # A fresh identity per connection: the worker treats it as a new session and re-sends
        # everything un-acked.
        s.setsockopt(zmq.IDENTITY, f"{self.client_id}/{uuid.uuid4().hex[:8]}".encode())
        if self.curve is not None:
            s.curve_serverkey = self.curve.server_public.encode()
            s.curve_publickey = self.curve.public.encode()
            s.curve_secretkey = self.curve.secret.encode()
        s.connect(self.endpoint)
        self._sock = s

    def _send(self, frames: Sequence[Any]) -> None:
        assert self._sock is not None
        try:
            self._sock.send_multipart(list(frames), copy=False)
        except zmq.Again:
            # A DEALER blocks when it has no usable connection, e.g. a CURVE handshake the worker
            # refused; SNDTIMEO turns that into an error instead of a hang.
            raise TimeoutError(f"cannot send to {self.endpoint}: no connection to the worker "
                               "(not running, or it refused our CURVE key)") from None
        self._last_sent = time.monotonic()

    def _hello(self, wait: bool) -> None:
        now = time.monotonic()
        if not (wait or not self._hello_pending or now - self._hello_sent_at > self.heartbeat_interval):
            return  # one HELLO in flight is enough
        self._hello_pending = True
        self._hello_sent_at = now
        # Batches already queued here were paid for with the old session's credit and give credit
        # back when handed out, so the new session starts with the window minus those.
        self._send([pack({"type": "HELLO", "version": PROTOCOL_VERSION, "client_id": self.client_id,
                          "credits": max(0, self.window - len(self._batches)) if self.auto_credit
                          else self.window})])
        if wait:
            deadline = time.monotonic() + self.timeout
            while self._hello_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no HELLO from the worker at {self.endpoint} within {self.timeout} s")
                self._pump(min(left, self.heartbeat_interval))

    def reconnect(self) -> None:
        """Drops the connection and starts a new session: the worker re-sends every batch not yet
        acked; the ones already delivered are dropped here as duplicates."""
        self.reconnects += 1
        log.info("reconnecting to %s", self.endpoint)
        self._connect()
        self._hello(wait=False)
        self._last_heard = time.monotonic()

    def close(self) -> None:
        """Closes the connection and unlinks the shared-memory segment of weight updates, if any."""
        self._close_segment()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _close_segment(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ receive loop
    def _pump(self, timeout: float) -> None:
        """Receives whatever arrives within ``timeout`` seconds; keeps the session alive."""
        assert self._sock is not None
        now = time.monotonic()
        if now - self._last_sent >= self.heartbeat_interval:
            try:
                self._send([pack({"type": "HEARTBEAT"})])
            except TimeoutError:
                self._last_sent = now  # not connected right now; the worker timeout decides
        if self._last_heard and now - self._last_heard >= self.worker_timeout and now >= self._silence_ok_until:
            log.warning("worker at %s silent for %.1f s", self.endpoint, now - self._last_heard)
            self.reconnect()
        if not self._sock.poll(int(max(timeout, 0) * 1000)):
            return
        while True:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            self._handle(frames)

    def _handle(self, frames: List[Any]) -> None:
        header = unpack_header(frames[0])
        kind = header["type"]
        if kind == "BATCH":
            self._on_batch(header, frames)
        elif kind == "HEARTBEAT":
            pass
        elif kind == "HELLO":
            self._on_hello(header)
        elif kind == "ERROR":
            err = WorkerError(header.get("code", "?"), header.get("message", ""), header.get("req"),
                              header.get("request_type"))
            if err.code in _SESSION_LOST:
                if err.code == "ROUTING_ID_IN_USE":
                    log.warning("worker saw a second connection with our routing id (%s): saying HELLO again",
                                err.message)
                else:
                    log.info("worker lost our session (restart or disconnect): saying HELLO again")
                self._hello(wait=False)
                if err.req is not None:
                    self._replies[err.req] = (header, frames)
            elif err.request_type == "HELLO":
                raise err
            elif err.req is not None:
                self._replies[err.req] = (header, frames)
            else:
                log.warning("worker error: %s", err)
                self._errors.append(err)
        elif "req" in header:
            self._replies[int(header["req"])] = (header, frames)
        else:
            raise ProtocolViolation(f"unexpected message {kind}")

    def _on_hello(self, h: Mapping[str, Any]) -> None:
        if h.get("version") != PROTOCOL_VERSION:
            raise ProtocolViolation(f"worker speaks protocol {h.get('version')}, this client {PROTOCOL_VERSION}")
        info = WorkerInfo(worker_id=h["worker_id"], instance=h["instance"], model=dict(h["model"]),
                          policy_version=int(h["policy_version"]), capabilities=list(h["capabilities"]),
                          max_message_bytes=int(h["max_message_bytes"]), unacked=int(h["unacked"]),
                          next_seq=int(h["next_seq"]), software_version=h.get("software_version"),
                          deterministic=h.get("deterministic"), sleep_level=int(h.get("sleep_level") or 0))
        if self.worker is not None and info.instance != self.worker.instance:
            log.info("worker %s restarted (instance %s)", info.worker_id, info.instance)
        self.worker = info
        self._hello_pending = False
        # Batches received but not yet handed out were consumed from the old session's credit;
        # the new session starts from the full window again, so nothing to adjust here.

    def _on_batch(self, header: Mapping[str, Any], frames: List[Any]) -> None:
        worker_id, seq = header.get("worker_id"), header.get("seq")
        if not isinstance(worker_id, str) or not isinstance(seq, int):
            raise ProtocolViolation("BATCH without worker_id/seq")
        if seq in self._delivered[worker_id] or any(b.key == (worker_id, seq) for b in self._batches):
            self.duplicates_dropped += 1
            if seq in self._acked[worker_id]:
                self._send([pack({"type": "ACK", "seqs": [seq]})])  # our ack was lost: repeat it
            if self.auto_credit:
                self.credit(1)
            return
        self._batches.append(decode_batch(header, frames, time.time_ns()))

    # ------------------------------------------------------------------ requests
    def _next_req(self) -> int:
        self._req += 1
        return self._req

    def _request(self, frames: Sequence[Any], req: int, timeout: Optional[float],
                 worker_may_be_busy: bool = False) -> Dict[str, Any]:
        self._send(frames)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if worker_may_be_busy:
            # The worker serves UPDATE_WEIGHTS between engine steps and sends no heartbeat while a
            # checkpoint loads: its silence until the deadline is not a lost connection.
            self._silence_ok_until = deadline
        while True:
            while req not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to request {req} within the timeout")
                self._pump(min(left, self.heartbeat_interval))
            header, _ = self._replies.pop(req)
            if header["type"] == "ERROR" and header.get("code") in _SESSION_LOST:
                # The worker restarted or dropped our session; _handle has sent HELLO. Wait for
                # the new session, then send the request again.
                while self._hello_pending and time.monotonic() < deadline:
                    self._pump(min(deadline - time.monotonic(), self.heartbeat_interval))
                self._send(frames)
                continue
            break
        if header["type"] == "ERROR":
            raise WorkerError(header["code"], header["message"], header.get("req"), header.get("request_type"))
        return header

    def submit(self, groups: Iterable[Union[Group, Mapping[str, Any]]], timeout: Optional[float] = None) -> int:
        """Queues prompt groups (Groups, or mappings of Group's keywords) on the worker. Returns how
        many were accepted; raises WorkerError when refused: INVALID_REQUEST for a token outside
        the vocabulary or a parameter the worker does not serve (checked here before sending,
        as longtail.InvalidRequest), QUEUE_FULL, BAD_FIELD, ... from the worker. Names and types
        are checked when each Group is built (TypeError, ValueError)."""
        assert self.worker is not None
        wire = submit_entries(list(groups), self.worker.model, self.worker.capabilities, self.tokenizer)
        req = self._next_req()
        return int(self._request(encode_submit(req, wire), req, timeout)["groups"])

    def credit(self, batches: int) -> None:
        """Allows the worker to send ``batches`` more BATCH messages."""
        self._send([pack({"type": "CREDIT", "batches": int(batches)})])

    def ack(self, batches: Union[Batch, int, Sequence[Union[Batch, int]]]) -> None:
        """Acknowledges batches (Batch objects or seqs of this client's worker): the worker forgets
        them and will never send them again. Ack only what you have durably consumed."""
        items = batches if isinstance(batches, (list, tuple)) else [batches]
        seqs: List[int] = []
        for b in items:
            if isinstance(b, Batch):
                seqs.append(b.seq)
                self._acked[b.worker_id].add(b.seq)
            else:
                seqs.append(int(b))
                if self.worker is not None:
                    self._acked[self.worker.worker_id].add(int(b))
        if seqs:
            self._send([pack({"type": "ACK", "seqs": seqs})])

    def next_batch(self, timeout: Optional[float] = None) -> Optional[Batch]:
        """The next new batch, or None when none arrives within ``timeout`` seconds (None = the
        client's default timeout)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._batches:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._pump(min(left, self.heartbeat_interval))
        b = self._batches.popleft()
        self._delivered[b.worker_id].add(b.seq)
        if self.tokenizer is not None:
            for t in b.trajectories:
                t.response_text = text.decode(self.tokenizer, t.response_tokens)
        if self.auto_credit:
            self.credit(1)
        return b

    def batches(self, timeout: Optional[float] = None, limit: Optional[int] = None) -> Iterator[Batch]:
        """Iterates over new batches as they arrive; stops after ``limit`` batches or when none
        arrives within ``timeout`` seconds."""
        n = 0
        while limit is None or n < limit:
            b = self.next_batch(timeout)
            if b is None:
                return
            n += 1
            yield b

    def update_weights(self, version: int, path: Union[str, os.PathLike], timeout: float = 600.0) -> int:
        """Loads the checkpoint directory ``path`` as policy ``version``; returns when the new
        weights are live. On WorkerError the worker keeps its previous weights."""
        req = self._next_req()
        reply = self._request([pack({"type": "UPDATE_WEIGHTS", "req": req, "version": int(version),
                                     "path": os.fspath(path)})], req, timeout, worker_may_be_busy=True)
        if self.worker is not None:
            self.worker.policy_version = int(reply["version"])
        return int(reply["version"])

    def update_weights_from_tensors(self, version: int, named_tensors: Mapping[str, Any], timeout: float = 600.0,
                                    check_finite: bool = False, source: str = "auto") -> int:
        """Hands ``named_tensors`` (HF name -> numpy array or torch tensor) to a worker on this host
        without a checkpoint on disk and makes them policy ``version``; returns when they are live.

        ``source``: ``"cuda_ipc"`` shares CUDA tensors by CUDA IPC handles (the worker copies them
        device to device; its HELLO must list ``update_weights_cuda_ipc``, i.e. the CUDA backend);
        ``"shm"`` copies them into a POSIX shared-memory segment (any backend; CUDA tensors go
        through the host), which the client keeps for the next update of the same layout and unlinks
        in :meth:`close`; ``"auto"`` (default) takes CUDA IPC when every tensor is a CUDA tensor and
        the worker serves it, else shm. The worker validates the tensors like a checkpoint
        (``check_finite`` also refuses NaN/inf); on WorkerError it keeps its previous weights. The
        tensors are read by the worker before it replies: change them only after this returns."""
        from longtail import cuda_ipc

        if source not in ("auto", "cuda_ipc", "shm"):
            raise ValueError(f"source={source!r} is not one of auto, cuda_ipc, shm")
        served = self.worker is not None and "update_weights_cuda_ipc" in self.worker.capabilities
        if source == "auto":
            all_cuda = len(named_tensors) > 0 and all(cuda_ipc.is_cuda_tensor(t) for t in named_tensors.values())
            source = "cuda_ipc" if all_cuda and served else "shm"
        if source == "cuda_ipc":
            if not served:
                caps = self.worker.capabilities if self.worker is not None else []
                backend = next((c for c in caps if c.startswith("backend:")), "backend unknown")
                raise WorkerError("INVALID_REQUEST", "source='cuda_ipc' needs a worker whose HELLO lists "
                                  f"update_weights_cuda_ipc (the CUDA backend); this one has {backend}; "
                                  "use source='shm'", None, "UPDATE_WEIGHTS")
            with cuda_ipc.CudaIpcTensors(named_tensors) as shared:  # released once the worker replied
                req = self._next_req()
                reply = self._request([pack({"type": "UPDATE_WEIGHTS", "req": req, "version": int(version),
                                             "cuda_ipc": shared.wire(), "check_finite": bool(check_finite)})],
                                      req, timeout, worker_may_be_busy=True)
        else:
            from longtail.shared_weights import TensorSegment

            # One segment for the client's life, refilled while the layout stays (every step of a
            # training run): the worker has copied the tensors out before it replies.
            if self._segment is None or not self._segment.refill(named_tensors):
                self._close_segment()
                self._segment = TensorSegment(named_tensors)
            req = self._next_req()
            try:
                reply = self._request([pack({"type": "UPDATE_WEIGHTS", "req": req, "version": int(version),
                                             "shm": self._segment.wire(), "check_finite": bool(check_finite)})],
                                      req, timeout, worker_may_be_busy=True)
            except TimeoutError:
                self._close_segment()  # the worker may still read it: never refill it
                raise
        if self.worker is not None:
            self.worker.policy_version = int(reply["version"])
        return int(reply["version"])

    def set_rewards(self, rewards: Mapping[int, float], timeout: Optional[float] = None) -> List[int]:
        """Attaches rewards to trajectory uids (for the importance baselines of their batches).
        Returns the uids the worker did not know."""
        req = self._next_req()
        uids = [int(u) for u in rewards]
        reply = self._request([pack({"type": "REWARDS", "req": req, "uids": uids,
                                     "rewards": [float(rewards[u]) for u in rewards]})], req, timeout)
        return list(reply["unknown_uids"])

    def stats(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Engine, bridge and worker statistics (see PROTOCOL.md, STATS)."""
        req = self._next_req()
        return dict(self._request([pack({"type": "STATS", "req": req})], req, timeout)["stats"])

    def drain(self, timeout: Optional[float] = None) -> Optional[int]:
        """Asks the worker to emit what has finished now as a (possibly short) batch; unfinished
        sequences carry over. Returns that batch's seq, or None when nothing had finished."""
        req = self._next_req()
        return self._request([pack({"type": "DRAIN", "req": req})], req, timeout).get("batch_seq")

    def sleep(self, level: int = 1, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Puts the worker to sleep (vLLM's sleep mode) so a trainer on the same GPU can use its
        memory: level 1 frees the KV cache (and the forward's buffers and CUDA graphs), level 2 the
        weights too (send update_weights* before wake_up). Samples in flight keep their tokens and
        re-prefill after the wake; submit() while asleep is accepted and generated after it.
        Returns the SLEEP_OK reply: level, previous_level, released_bytes, paused_sequences,
        seconds. Raises WorkerError (INVALID_REQUEST for a level the worker does not serve: see its
        ``sleep`` / ``sleep:2`` capabilities)."""
        if level not in (1, 2):
            raise ValueError(f"sleep level {level!r}: levels are 1 (KV cache) and 2 (KV cache and weights)")
        req = self._next_req()
        reply = self._request([pack({"type": "SLEEP", "req": req, "level": int(level)})], req, timeout,
                              worker_may_be_busy=True)
        if self.worker is not None:
            self.worker.sleep_level = int(reply["level"])
        return dict(reply)

    def wake_up(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Wakes the worker: its KV cache is re-created with the budget it had, generation resumes.
        A no-op when awake. Returns the WAKE_UP_OK reply: previous_level, allocated_bytes, seconds.
        Raises WorkerError: INVALID_REQUEST after a level-2 sleep with no weight update since,
        INTERNAL when the device has not the memory (still asleep: free it, e.g.
        torch.cuda.empty_cache(), and retry)."""
        req = self._next_req()
        reply = self._request([pack({"type": "WAKE_UP", "req": req})], req, timeout, worker_may_be_busy=True)
        if self.worker is not None:
            self.worker.sleep_level = 0
        return dict(reply)

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Asks the worker to shut down gracefully (it finishes in-flight work and exits)."""
        req = self._next_req()
        self._request([pack({"type": "SHUTDOWN", "req": req})], req, timeout)

    def errors(self) -> List[WorkerError]:
        """ERROR messages that answered no request (e.g. a malformed message), oldest first."""
        out = list(self._errors)
        self._errors.clear()
        return out

    def send_raw(self, frames: Sequence[bytes]) -> None:
        """Sends arbitrary frames (for tests of the worker's input checks)."""
        self._send(frames)

    def request_raw(self, frames: Sequence[bytes], req: int, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Sends arbitrary frames and waits for the reply to ``req`` (raises WorkerError on ERROR)."""
        return self._request(frames, req, timeout)
