"""Wire format of the longtail trainer protocol (PROTOCOL.md): msgpack headers with string keys,
array frames as little-endian raw bytes referenced by frame index. Pure functions, no sockets."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

#: dtype of every array frame, by the name the header's "frames" map uses.
FRAME_DTYPES: Dict[str, str] = {
    "prompt_tokens": "<i4",
    "response_tokens": "<i4",
    "behaviour_logprobs": "<f4",
    "policy_versions": "<i8",
    "current_logprobs": "<f4",
    "token_tis": "<f4",
}


class WorkerError(Exception):
    """An ERROR reply from the worker: ``code`` (e.g. ``BAD_FIELD``), ``message``, and the ``req`` /
    ``request_type`` of the request it answers when known."""

    def __init__(self, code: str, message: str, req: Optional[int] = None,
                 request_type: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.req = req
        self.request_type = request_type


class ProtocolViolation(Exception):
    """The worker sent something this client cannot decode (a version or implementation mismatch)."""


def pack(header: Mapping[str, Any]) -> bytes:
    return msgpack.packb(dict(header), use_bin_type=True)


def unpack_header(frame: Any) -> Dict[str, Any]:
    data = frame.buffer if hasattr(frame, "buffer") else frame
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types
        raise ProtocolViolation(f"header is not msgpack: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolViolation("header is not a map with a string 'type'")
    return header


def frame_array(header: Mapping[str, Any], frames: Sequence[Any], name: str, count: int) -> np.ndarray:
    """The array frame ``name`` as a read-only numpy view (no copy), checked against ``count``."""
    try:
        index = header["frames"][name]
    except (KeyError, TypeError) as exc:
        raise ProtocolViolation(f"{header.get('type')}: no frame reference for {name}") from exc
    if not isinstance(index, int) or not 1 <= index < len(frames):
        raise ProtocolViolation(f"{header.get('type')}: frame index {index!r} for {name} is out of range")
    f = frames[index]
    buf = f.buffer if hasattr(f, "buffer") else f
    arr = np.frombuffer(buf, dtype=FRAME_DTYPES[name])
    if arr.size != count:
        raise ProtocolViolation(f"{header.get('type')}: frame {name} holds {arr.size} values, expected {count}")
    return arr


def encode_submit(req: int, groups: Sequence[Mapping[str, Any]]) -> List[bytes]:
    """SUBMIT: group maps (see Group.to_wire) + one frame with every prompt, concatenated."""
    prompts = []
    wire = []
    for g in groups:
        tokens = np.ascontiguousarray(np.asarray(g["prompt_tokens"]), dtype="<i4") \
            if not isinstance(g["prompt_tokens"], np.ndarray) or g["prompt_tokens"].dtype != np.dtype("<i4") \
            else np.ascontiguousarray(g["prompt_tokens"])
        prompts.append(tokens)
        entry = {k: v for k, v in g.items() if k != "prompt_tokens"}
        entry["prompt_len"] = int(tokens.size)
        wire.append(entry)
    all_prompts = np.concatenate(prompts) if prompts else np.zeros(0, dtype="<i4")
    header = {"type": "SUBMIT", "req": req, "groups": wire, "frames": {"prompt_tokens": 1}}
    return [pack(header), all_prompts.astype("<i4", copy=False).tobytes()]
