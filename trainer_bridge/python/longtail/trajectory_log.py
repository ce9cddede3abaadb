"""Reading the worker's trajectory log (``engine.trajectory_log`` in the worker YAML) from Python.

The log is the binary, append-only file documented in ``rollout/trajectory_log.h``: a header, then
length-framed records, each a finished trajectory or a round boundary. This reader follows that
header's layout field by field, so a log written by any longtail tool can be analysed without C++
(``longtail-replay --export jsonl`` writes the same rollouts as JSON lines).

    for rnd in longtail.read_trajectory_log("run.ltlog"):
        print(rnd.round, rnd.policy_version, len(rnd.trajectories))

Trajectories after the file's last boundary (a run still writing, or one that crashed inside a
round) come as a last round with ``round = None``. Round numbers increase through the whole file,
also across worker restarts (an appending writer continues them).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Iterator, List, Optional

MAGIC = b"LTTRJLOG"
VERSION = 1
FINISH_REASONS = ("stop", "length", "context", "aborted")  # rollout/finish_reason.h, by value
_KIND_TRAJECTORY = 1
_KIND_ROUND = 2
_MAX_RECORD_BYTES = 1 << 30


class TrajectoryLogError(ValueError):
    """A file that is not a trajectory log, or a corrupt or truncated record (``offset`` in bytes)."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


@dataclasses.dataclass
class LoggedTrajectory:
    """One finished trajectory as the engine emitted it (rollout/trajectory.h)."""

    uid: int
    group_id: str
    prompt_id: str
    sample_index: int
    prompt_tokens: List[int]
    response_tokens: List[int]
    behaviour_logprobs: List[float]
    policy_versions: List[int]
    current_logprobs: List[float]
    finish_reason: str
    metadata: bytes
    reward: Optional[float]
    log_ratio: float
    weight: float
    truncated_weight: float
    token_tis: List[float]


@dataclasses.dataclass
class LoggedRound:
    round: Optional[int]  # None: trajectories after the last boundary
    policy_version: Optional[int]
    trajectories: List[LoggedTrajectory]


class _Cursor:
    def __init__(self, payload: bytes, offset: int):
        self.b, self.pos, self.offset = payload, 0, offset

    def take(self, n: int, what: str) -> bytes:
        if len(self.b) - self.pos < n:
            raise TrajectoryLogError(f"record ends inside {what}", self.offset)
        out = self.b[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def vec(self, fmt: str, what: str) -> list:
        n = self.scalar("I", what)
        size = struct.calcsize(fmt)
        if n > (len(self.b) - self.pos) // size:
            raise TrajectoryLogError(f"element count of {what} exceeds the record", self.offset)
        return list(struct.unpack(f"<{n}{fmt}", self.take(n * size, what)))

    def text(self, what: str) -> bytes:
        return self.take(self.scalar("I", what), what)


def _trajectory(payload: bytes, offset: int) -> LoggedTrajectory:
    c = _Cursor(payload, offset)
    uid = c.scalar("Q", "uid")
    group_id = c.text("group_id").decode("utf-8", "replace")
    prompt_id = c.text("prompt_id").decode("utf-8", "replace")
    sample_index = c.scalar("i", "sample_index")
    prompt_tokens = c.vec("i", "prompt_tokens")
    response_tokens = c.vec("i", "response_tokens")
    behaviour_logprobs = c.vec("f", "behaviour_logprobs")
    policy_versions = c.vec("q", "policy_versions")
    current_logprobs = c.vec("f", "current_logprobs")
    reason = c.scalar("B", "finish_reason")
    if reason >= len(FINISH_REASONS):
        raise TrajectoryLogError(f"finish_reason {reason} is not a known value", offset)
    metadata = c.text("metadata")
    reward = c.scalar("d", "reward")
    has_reward = c.scalar("B", "has_reward") != 0
    log_ratio = c.scalar("d", "log_ratio")
    weight = c.scalar("d", "weight")
    truncated_weight = c.scalar("d", "truncated_weight")
    token_tis = c.vec("f", "token_tis")
    if c.pos != len(payload):
        raise TrajectoryLogError(f"{len(payload) - c.pos} bytes left over after the trajectory fields", offset)
    return LoggedTrajectory(uid, group_id, prompt_id, sample_index, prompt_tokens, response_tokens,
                            behaviour_logprobs, policy_versions, current_logprobs, FINISH_REASONS[reason],
                            metadata, reward if has_reward else None, log_ratio, weight, truncated_weight,
                            token_tis)


def iter_trajectory_log(path: "os.PathLike[str] | str") -> Iterator[LoggedRound]:
    """Yields the log's rounds in file order. Raises TrajectoryLogError on a file that is not a log
    or on a corrupt record (rounds before it have been yielded); unknown record kinds are skipped,
    as the C++ reader does."""
    with open(path, "rb") as f:
        header = f.read(16)
        if len(header) < 16 or header[:8] != MAGIC:
            raise TrajectoryLogError(f"{os.fspath(path)} is not a longtail trajectory log", 0)
        version = struct.unpack("<I", header[8:12])[0]
        if version != VERSION:
            raise TrajectoryLogError(f"trajectory log version {version} (this reader knows {VERSION})", 8)
        offset = 16
        pending: List[LoggedTrajectory] = []
        while True:
            frame = f.read(4)
            if not frame:
                break
            if len(frame) < 4:
                raise TrajectoryLogError("truncated record length", offset)
            (length,) = struct.unpack("<I", frame)
            if length < 1 or length > _MAX_RECORD_BYTES:
                raise TrajectoryLogError(f"record length {length} is out of range", offset)
            body = f.read(length)
            if len(body) < length:
                raise TrajectoryLogError(f"truncated record ({len(body)} of {length} bytes)", offset)
            kind, payload = body[0], body[1:]
            if kind == _KIND_TRAJECTORY:
                pending.append(_trajectory(payload, offset))
            elif kind == _KIND_ROUND:
                if len(payload) != 16:
                    raise TrajectoryLogError(f"round boundary of {len(payload)} bytes (expected 16)", offset)
                rnd, version = struct.unpack("<qq", payload)
                yield LoggedRound(rnd, version, pending)
                pending = []
            offset += 4 + length
        if pending:
            yield LoggedRound(None, None, pending)


def read_trajectory_log(path: "os.PathLike[str] | str") -> List[LoggedRound]:
    """Every round of the log (see iter_trajectory_log)."""
    return list(iter_trajectory_log(path))
