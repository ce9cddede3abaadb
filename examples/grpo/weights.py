"""How the trainer's new weights reach the worker: one function, so the transport can change.

A worker on another host: a checkpoint directory per version (config.json + model.safetensors in
fp32) under a root that the worker lists in `weights.allowed_dirs`, loaded with UPDATE_WEIGHTS;
older versions are deleted once the worker has confirmed a newer one. On the same host (the
default: the trainer starts its own worker on an ipc:// socket) the tensors go over directly
(`client.update_weights_from_tensors`), no disk round trip: by CUDA IPC handles, device to device,
when the model is on the GPU and the worker runs the CUDA backend, else through one shared-memory
segment. `make_transport` picks.
"""

from __future__ import annotations

import pathlib
import shutil
import time
from typing import Dict

import torch
from safetensors.torch import save_file

CHECKPOINT_FILES = ("config.json", "generation_config.json")


def named_tensors(model, on_cpu: bool = True) -> Dict[str, torch.Tensor]:
    """The model's weights under their HF names, contiguous, tied embeddings once (as
    save_pretrained writes them): fp32 on the CPU, or with on_cpu=False where and as they are."""
    out: Dict[str, torch.Tensor] = {}
    seen = set()
    for name, p in model.state_dict().items():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        out[name] = p.detach().to("cpu", torch.float32).contiguous() if on_cpu else p.detach()
    return out


class CheckpointDirTransport:
    """UPDATE_WEIGHTS from a directory `root/v<version>` on a filesystem the worker shares."""

    def __init__(self, root: pathlib.Path, base_checkpoint: pathlib.Path, keep: int = 2) -> None:
        self.root = pathlib.Path(root)
        self.base = pathlib.Path(base_checkpoint)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def push(self, client, model, version: int) -> Dict[str, float]:
        """Writes the weights, asks the worker to load them as `version`, returns timings (s):
        `write_s` (serialise to disk), `load_s` (the worker's UPDATE_WEIGHTS round trip) and `total_s`."""
        t0 = time.perf_counter()
        d = self.root / f"v{version}"
        tmp = self.root / f".v{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in CHECKPOINT_FILES:
            if (self.base / f).exists():
                shutil.copy(self.base / f, tmp / f)
        save_file(named_tensors(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)  # the worker never sees a half-written checkpoint
        t1 = time.perf_counter()
        client.update_weights(version, d)
        t2 = time.perf_counter()
        for old in sorted(self.root.glob("v*"), key=lambda p: int(p.name[1:]))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return {"write_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0}


class SameHostTransport:
    """UPDATE_WEIGHTS from the trainer's tensors: the worker must run on this host. The client
    shares CUDA tensors by CUDA IPC when the worker serves it, else copies into shared memory."""

    def push(self, client, model, version: int) -> Dict[str, float]:
        """Returns `total_s` (the hand-over + the worker's validate-and-swap round trip)."""
        t0 = time.perf_counter()
        client.update_weights_from_tensors(version, named_tensors(model, on_cpu=False))
        return {"total_s": time.perf_counter() - t0}


def make_transport(endpoint: str, root: pathlib.Path, base_checkpoint: pathlib.Path):
    """The trainer's tensors for a worker on this host (ipc://, or tcp:// to a loopback address),
    a checkpoint directory otherwise."""
    local = endpoint.startswith("ipc://") or any(endpoint.startswith(f"tcp://{h}:")
                                                  for h in ("127.0.0.1", "localhost", "[::1]"))
    return SameHostTransport() if local else CheckpointDirTransport(root, base_checkpoint)
