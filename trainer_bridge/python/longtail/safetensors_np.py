"""A safetensors file as fp32 numpy arrays and back, without the safetensors package (which CI does
not install): enough for tests and benchmarks to read a checkpoint's tensors, change them, hand
them to ``Client.update_weights_from_tensors`` or write them as a directory the worker loads.
bf16 and f16 widen to fp32 exactly."""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, Mapping, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def read_f32(path: PathLike) -> Dict[str, np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[8 + n + b:8 + n + end]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] in ("F32", "F16"):
            arr = np.frombuffer(raw, np.float32 if e["dtype"] == "F32" else np.float16).astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name!r} has dtype {e['dtype']}, not F32/BF16/F16")
        out[name] = arr.reshape(e["shape"])
    return out


def write_f32(path: PathLike, tensors: Mapping[str, np.ndarray]) -> None:
    header, off = {}, 0
    arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}
    for name, arr in arrays.items():
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for arr in arrays.values():
            f.write(arr.tobytes())
