"""A Batch in the shapes verl and slime trainers consume, so neither needs its own adapter.

No verl or slime import: plain numpy arrays (torch tensors on request) under the names those
projects use, plus longtail's per-token policy versions and importance fields. The field tables
are in trainer_bridge/python/README.md.

verl (``DataProto.from_dict(tensors=out["batch"], non_tensors=out["non_tensor_batch"],
meta_info=out["meta_info"])``, with ``as_torch=True``): prompts left-padded, responses
right-padded, ``input_ids = [prompts | responses]``, ``position_ids`` counting real tokens from 0
and continuing through the response, ``rollout_log_probs`` padded with -1 as verl pads them, and
``non_tensor_batch["uid"]`` = the group id, which verl's GRPO/RLOO advantages group by.

slime (``Sample.from_dict(d)`` for each dict): ``tokens`` = prompt + response, ``loss_mask`` and
``rollout_log_probs`` over the response, ``status`` one of Sample.Status's values, and
``weight_versions`` the policy versions that produced the response, as strings, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

if TYPE_CHECKING:
    from longtail.types import Batch

#: longtail finish_reason -> slime Sample.Status value.
SLIME_STATUS = {"stop": "completed", "length": "truncated", "context": "truncated", "aborted": "aborted"}


def as_tensors(arrays: Dict[str, np.ndarray], as_torch: Optional[bool]) -> Dict[str, Any]:
    """Torch tensors when ``as_torch`` is true, or when it is None and torch is installed."""
    if as_torch is None:
        try:
            import torch  # noqa: F401
            as_torch = True
        except ImportError:
            as_torch = False
    if not as_torch:
        return arrays
    import torch
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _width(name: str, fixed: Optional[int], lengths: List[int]) -> int:
    longest = max(lengths, default=0)
    if fixed is None:
        return longest
    if longest > fixed:
        raise ValueError(f"{name}={fixed} is shorter than the batch's longest ({longest}); nothing is truncated")
    return int(fixed)


def to_verl(batch: "Batch", pad_token_id: int = 0, prompt_length: Optional[int] = None,
            response_length: Optional[int] = None, as_torch: bool = False) -> Dict[str, Any]:
    trs = batch.trajectories
    b = len(trs)
    p_len = _width("prompt_length", prompt_length, [t.prompt_tokens.size for t in trs])
    r_len = _width("response_length", response_length, [t.response_tokens.size for t in trs])
    prompts = np.full((b, p_len), pad_token_id, dtype=np.int64)
    prompt_mask = np.zeros((b, p_len), dtype=np.int64)
    responses = np.full((b, r_len), pad_token_id, dtype=np.int64)
    response_mask = np.zeros((b, r_len), dtype=np.int64)
    rollout_log_probs = np.full((b, r_len), -1.0, dtype=np.float32)
    current = np.full((b, r_len), -1.0, dtype=np.float32)
    token_tis = np.zeros((b, r_len), dtype=np.float32)
    versions = np.full((b, r_len), -1, dtype=np.int64)
    for i, t in enumerate(trs):
        p, r = t.prompt_tokens.size, t.response_tokens.size
        prompts[i, p_len - p:] = t.prompt_tokens
        prompt_mask[i, p_len - p:] = 1
        responses[i, :r] = t.response_tokens
        response_mask[i, :r] = 1
        rollout_log_probs[i, :r] = t.behaviour_logprobs
        # Trajectories that crossed no weight update are on the latest policy: current = behaviour.
        current[i, :r] = t.behaviour_logprobs if t.current_logprobs is None else t.current_logprobs
        token_tis[i, :r] = 1.0 if t.token_tis is None else t.token_tis
        versions[i, :r] = t.policy_versions
    prompt_pos = np.clip(np.cumsum(prompt_mask, axis=1) - 1, 0, None)
    last = prompt_pos[:, -1:] if p_len else np.full((b, 1), -1, dtype=np.int64)
    response_pos = last + np.arange(1, r_len + 1, dtype=np.int64)[None, :]
    tensors = {
        "prompts": prompts,
        "responses": responses,
        "input_ids": np.concatenate([prompts, responses], axis=1),
        "attention_mask": np.concatenate([prompt_mask, response_mask], axis=1),
        "position_ids": np.concatenate([prompt_pos, response_pos], axis=1).astype(np.int64),
        "response_mask": response_mask,
        "rollout_log_probs": rollout_log_probs,
        "policy_versions": versions,
        "current_log_probs": current,
        "token_tis": token_tis,
        "weight": np.array([t.weight for t in trs], dtype=np.float32),
        "truncated_weight": np.array([t.truncated_weight for t in trs], dtype=np.float32),
        "log_ratio": np.array([t.log_ratio for t in trs], dtype=np.float32),
        "reward": np.array([np.nan if t.reward is None else t.reward for t in trs], dtype=np.float32),
        "sample_index": np.array([t.sample_index for t in trs], dtype=np.int64),
    }

    def objects(values: List[Any]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    non_tensors = {
        "uid": objects([t.group_id for t in trs]),
        "prompt_id": objects([t.prompt_id for t in trs]),
        "trajectory_uid": objects([t.uid for t in trs]),
        "finish_reason": objects([t.finish_reason for t in trs]),
        "metadata": objects([t.metadata for t in trs]),
    }
    if any(t.response_text is not None for t in trs):
        non_tensors["response_text"] = objects([t.response_text for t in trs])
    meta = {"worker_id": batch.worker_id, "seq": batch.seq, "round": batch.round,
            "policy_version": batch.policy_version, "pad_token_id": pad_token_id,
            "importance": dict(batch.importance), "stats": dict(batch.stats)}
    return {"batch": as_tensors(tensors, as_torch), "non_tensor_batch": non_tensors, "meta_info": meta}


def _weight_versions(versions: np.ndarray) -> List[str]:
    out: List[str] = []
    for v in versions.tolist():
        if not out or out[-1] != str(v):
            out.append(str(v))
    return out


def _slime_status(finish_reason: str) -> str:
    if finish_reason not in SLIME_STATUS:
        raise ValueError(f"finish_reason {finish_reason!r} has no slime status (known: {', '.join(SLIME_STATUS)})")
    return SLIME_STATUS[finish_reason]


def to_slime_samples(batch: "Batch") -> List[Dict[str, Any]]:
    group_index: Dict[str, int] = {}
    out = []
    for i, t in enumerate(batch.trajectories):
        r = int(t.response_tokens.size)
        out.append({
            "group_index": group_index.setdefault(t.group_id, len(group_index)),
            "index": i,
            "prompt": "",
            "tokens": t.prompt_tokens.tolist() + t.response_tokens.tolist(),
            "response": t.response_text if t.response_text is not None else "",
            "response_length": r,
            "label": None,
            "reward": t.reward,
            "loss_mask": [1] * r,
            "weight_versions": _weight_versions(t.policy_versions),
            "rollout_log_probs": t.behaviour_logprobs.tolist(),
            "status": _slime_status(t.finish_reason),
            "metadata": {"group_id": t.group_id, "prompt_id": t.prompt_id, "uid": t.uid,
                         "sample_index": t.sample_index, "finish_reason": t.finish_reason,
                         "group_metadata": t.metadata, "worker_id": batch.worker_id, "seq": batch.seq},
            # longtail's own fields; Sample.from_dict sets unknown keys as attributes.
            "policy_versions": t.policy_versions.tolist(),
            "current_log_probs": None if t.current_logprobs is None else t.current_logprobs.tolist(),
            "token_tis": None if t.token_tis is None else t.token_tis.tolist(),
            "weight": t.weight,
            "truncated_weight": t.truncated_weight,
            "log_ratio": t.log_ratio,
        })
    return out
