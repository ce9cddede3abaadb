"""Plain data types of the trainer client: what comes out (Batch, Trajectory, WorkerInfo). What
goes in, Group, lives in longtail/request.py and is re-exported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from longtail import adapters
from longtail.protocol import ProtocolViolation, frame_array
from longtail.request import Group  # noqa: F401  (re-exported: longtail.types.Group)


@dataclass
class WorkerInfo:
    """The worker's HELLO: who it is and what it serves."""

    worker_id: str
    instance: str
    model: Dict[str, Any]
    policy_version: int
    capabilities: List[str]
    max_message_bytes: int
    unacked: int
    next_seq: int
    software_version: Optional[str] = None  # the worker's build (project version + git commit)
    deterministic: Optional[bool] = None    # the backend's deterministic mode (None: an older worker)
    sleep_level: int = 0                    # 0 awake, 1/2 asleep (SLEEP); kept current by Client.sleep/wake_up


@dataclass
class Trajectory:
    """One finished rollout. Arrays are read-only views into the received frames (no copy)."""

    uid: int
    group_id: str
    prompt_id: str
    sample_index: int
    prompt_tokens: np.ndarray        # int32
    response_tokens: np.ndarray      # int32
    behaviour_logprobs: np.ndarray   # float32, logprob of each response token when sampled (mu)
    policy_versions: np.ndarray      # int64, policy version that sampled each response token
    current_logprobs: Optional[np.ndarray]  # float32 under the latest policy, after a weight update
    token_tis: Optional[np.ndarray]  # float32 truncated token importance ratios
    finish_reason: str               # stop | length | context | aborted
    metadata: bytes
    reward: Optional[float]
    log_ratio: float
    weight: float
    truncated_weight: float
    response_text: Optional[str] = None  # decoded response when the Client has a tokenizer


@dataclass
class Batch:
    """A BATCH from one worker: trajectories plus batch importance statistics (``importance``) and
    round statistics (``stats``). ``key`` = (worker_id, seq) identifies it for deduplication."""

    worker_id: str
    seq: int
    round: int
    policy_version: int
    created_ns: int
    received_ns: int
    trajectories: List[Trajectory]
    importance: Dict[str, Any]
    stats: Dict[str, Any]
    arrays: Dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # flat concatenations

    @property
    def key(self) -> tuple:
        return (self.worker_id, self.seq)

    def __len__(self) -> int:
        return len(self.trajectories)

    def padded(self, pad_token: int = 0, as_torch: Optional[bool] = None) -> Dict[str, Any]:
        """Right-padded [B, L] arrays of the batch: ``prompt_tokens``, ``prompt_mask``,
        ``response_tokens``, ``response_mask``, ``behaviour_logprobs``, ``policy_versions``,
        ``current_logprobs`` (behaviour logprobs where a trajectory has none), plus [B] ``weight``,
        ``truncated_weight``, ``log_ratio``, ``reward`` (NaN when unset) and ``sample_index``.
        Torch tensors when ``as_torch`` is true, or when it is None and torch is installed."""
        b = len(self.trajectories)
        pl = max((t.prompt_tokens.size for t in self.trajectories), default=0)
        rl = max((t.response_tokens.size for t in self.trajectories), default=0)
        out = {
            "prompt_tokens": np.full((b, pl), pad_token, dtype=np.int32),
            "prompt_mask": np.zeros((b, pl), dtype=bool),
            "response_tokens": np.full((b, rl), pad_token, dtype=np.int32),
            "response_mask": np.zeros((b, rl), dtype=bool),
            "behaviour_logprobs": np.zeros((b, rl), dtype=np.float32),
            "current_logprobs": np.zeros((b, rl), dtype=np.float32),
            "policy_versions": np.full((b, rl), -1, dtype=np.int64),
            "weight": np.array([t.weight for t in self.trajectories], dtype=np.float64),
            "truncated_weight": np.array([t.truncated_weight for t in self.trajectories], dtype=np.float64),
            "log_ratio": np.array([t.log_ratio for t in self.trajectories], dtype=np.float64),
            "reward": np.array([np.nan if t.reward is None else t.reward for t in self.trajectories]),
            "sample_index": np.array([t.sample_index for t in self.trajectories], dtype=np.int64),
        }
        for i, t in enumerate(self.trajectories):
            p, r = t.prompt_tokens.size, t.response_tokens.size
            out["prompt_tokens"][i, :p] = t.prompt_tokens
            out["prompt_mask"][i, :p] = True
            out["response_tokens"][i, :r] = t.response_tokens
            out["response_mask"][i, :r] = True
            out["behaviour_logprobs"][i, :r] = t.behaviour_logprobs
            out["current_logprobs"][i, :r] = t.behaviour_logprobs if t.current_logprobs is None else t.current_logprobs
            out["policy_versions"][i, :r] = t.policy_versions
        return adapters.as_tensors(out, as_torch)

    def to_verl(self, pad_token_id: int = 0, prompt_length: Optional[int] = None,
                response_length: Optional[int] = None, as_torch: bool = False) -> Dict[str, Any]:
        """The batch as verl's rollout output: ``{"batch": {prompts (left-padded), responses,
        input_ids, attention_mask, position_ids, response_mask, rollout_log_probs, policy_versions,
        current_log_probs, token_tis, weight, truncated_weight, log_ratio, reward, sample_index},
        "non_tensor_batch": {uid (= group id), prompt_id, trajectory_uid, finish_reason, metadata
        [, response_text]}, "meta_info": {...}}``, numpy arrays (torch with ``as_torch``), ready
        for ``DataProto.from_dict``. ``prompt_length`` / ``response_length`` fix the widths
        (ValueError if a trajectory is longer). Field table: trainer_bridge/python/README.md."""
        return adapters.to_verl(self, pad_token_id, prompt_length, response_length, as_torch)

    def to_slime_samples(self) -> List[Dict[str, Any]]:
        """One dict per trajectory with slime's ``Sample`` field names (tokens, response_length,
        loss_mask, rollout_log_probs, status, weight_versions, reward, ...), for
        ``Sample.from_dict``. Field table: trainer_bridge/python/README.md."""
        return adapters.to_slime_samples(self)


def decode_batch(header: Mapping[str, Any], frames: Sequence[Any], received_ns: int) -> Batch:
    """Builds a Batch from a BATCH header and its frames, checking every length."""
    try:
        trs = header["trajectories"]
        np_ = sum(int(t["prompt_len"]) for t in trs)
        nr = sum(int(t["response_len"]) for t in trs)
        nc = sum(int(t["response_len"]) for t in trs if t["has_current_logprobs"])
        nt = sum(int(t["response_len"]) for t in trs if t["has_token_tis"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"BATCH: bad trajectory entry: {exc!r}") from exc
    arrays = {
        "prompt_tokens": frame_array(header, frames, "prompt_tokens", np_),
        "response_tokens": frame_array(header, frames, "response_tokens", nr),
        "behaviour_logprobs": frame_array(header, frames, "behaviour_logprobs", nr),
        "policy_versions": frame_array(header, frames, "policy_versions", nr),
        "current_logprobs": frame_array(header, frames, "current_logprobs", nc),
        "token_tis": frame_array(header, frames, "token_tis", nt),
    }
    out: List[Trajectory] = []
    op = orr = oc = ot = 0
    for t in trs:
        p, r = int(t["prompt_len"]), int(t["response_len"])
        cur = tis = None
        if t["has_current_logprobs"]:
            cur = arrays["current_logprobs"][oc:oc + r]
            oc += r
        if t["has_token_tis"]:
            tis = arrays["token_tis"][ot:ot + r]
            ot += r
        out.append(Trajectory(
            uid=int(t["uid"]), group_id=t["group_id"], prompt_id=t["prompt_id"],
            sample_index=int(t["sample_index"]),
            prompt_tokens=arrays["prompt_tokens"][op:op + p],
            response_tokens=arrays["response_tokens"][orr:orr + r],
            behaviour_logprobs=arrays["behaviour_logprobs"][orr:orr + r],
            policy_versions=arrays["policy_versions"][orr:orr + r],
            current_logprobs=cur, token_tis=tis, finish_reason=t["finish_reason"],
            metadata=bytes(t["metadata"]), reward=t["reward"], log_ratio=float(t["log_ratio"]),
            weight=float(t["weight"]), truncated_weight=float(t["truncated_weight"])))
        op += p
        orr += r
    return Batch(worker_id=header["worker_id"], seq=int(header["seq"]), round=int(header["round"]),
                 policy_version=int(header["policy_version"]), created_ns=int(header["created_ns"]),
                 received_ns=received_ns, trajectories=out, importance=dict(header["importance"]),
                 stats=dict(header["stats"]), arrays=arrays)
