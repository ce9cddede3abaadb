"""Weights handed to a worker on the same host through one POSIX shared-memory segment.

The trainer writes every tensor into a segment named ``longtail-<random>`` (the worker opens only
that prefix) and sends a manifest entry per tensor -- name, safetensors dtype, shape and byte range
[begin, end), as a safetensors header would -- in UPDATE_WEIGHTS's ``shm`` field. The worker maps the segment
read-only, validates it exactly like a checkpoint directory, copies it into its backend and unmaps
it. This side owns the segment: a Client keeps it for the next update of the same layout and
unlinks it when closed (the resource tracker unlinks it should the process die first).
"""

from __future__ import annotations

import uuid
from multiprocessing import shared_memory
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

SEGMENT_PREFIX = "longtail-"
ALIGN = 64  # bytes: every tensor starts on a cache line

# numpy dtype name -> safetensors dtype; the worker accepts F32, BF16 and F16 and names the others
# in its refusal, as it does for a checkpoint file.
_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int8": "I8",
           "int16": "I16", "int32": "I32", "int64": "I64", "uint8": "U8", "bool": "BOOL"}


def _as_array(name: str, value: Any) -> Tuple[np.ndarray, str]:
    """(array whose bytes are sent, safetensors dtype). torch tensors are detached and moved to the
    CPU; bf16 ones travel as their raw 16-bit patterns."""
    mod = type(value).__module__
    if mod.startswith("torch"):
        import torch  # only when the caller already has torch tensors

        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.contiguous().view(torch.int16).numpy(), "BF16"
        value = t.numpy()
    arr = np.asarray(value)
    dtype = _DTYPES.get(arr.dtype.name)
    if dtype is None:
        raise TypeError(f"tensor {name!r}: dtype {arr.dtype} has no safetensors name")
    return arr, dtype


def _layout(named_tensors: Mapping[str, Any]) -> Tuple[List[Tuple[np.ndarray, Dict[str, Any]]], int]:
    """[(array, manifest entry)] with every tensor on a cache line, and the segment size."""
    placed: List[Tuple[np.ndarray, Dict[str, Any]]] = []
    offset = 0
    for name, value in named_tensors.items():
        arr, dtype = _as_array(str(name), value)
        begin = -(-offset // ALIGN) * ALIGN
        end = begin + arr.nbytes
        placed.append((arr, {"name": str(name), "dtype": dtype, "shape": [int(d) for d in arr.shape],
                             "begin": begin, "end": end}))
        offset = end
    return placed, max(offset, 1)


class TensorSegment:
    """One shared-memory segment holding ``named_tensors`` and its manifest. Use as a context
    manager: the segment is unlinked on exit, whether the update succeeded or not. A segment can be
    refilled with tensors of the same layout (the next step's weights), which costs only the copy:
    creating and unlinking a segment (the resource tracker's round trips, the first touch of every
    page) is most of an update's time for a small model."""

    def __init__(self, named_tensors: Mapping[str, Any]) -> None:
        placed, self.size = _layout(named_tensors)
        self._shm = shared_memory.SharedMemory(name=SEGMENT_PREFIX + uuid.uuid4().hex, create=True,
                                               size=self.size)
        try:
            self._write(placed)
        except BaseException:
            self.close()
            raise

    def refill(self, named_tensors: Mapping[str, Any]) -> bool:
        """Writes ``named_tensors`` over the old ones when they need exactly this segment's size
        (the worker checks the size); False, nothing written, when they do not."""
        placed, size = _layout(named_tensors)
        if self._shm is None or size != self.size:
            return False
        self._write(placed)
        return True

    def _write(self, placed: List[Tuple[np.ndarray, Dict[str, Any]]]) -> None:
        assert self._shm is not None
        for arr, entry in placed:
            dst = np.ndarray(arr.shape, arr.dtype, buffer=self._shm.buf, offset=entry["begin"])
            dst[...] = arr
            del dst
        self.manifest = [entry for _, entry in placed]

    @property
    def name(self) -> str:
        return self._shm.name.lstrip("/")

    def wire(self) -> Dict[str, Any]:
        """UPDATE_WEIGHTS's ``shm`` field."""
        return {"name": self.name, "size": self.size, "tensors": self.manifest}

    def close(self) -> None:
        if self._shm is None:
            return
        shm, self._shm = self._shm, None
        shm.close()
        shm.unlink()

    def __enter__(self) -> "TensorSegment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
