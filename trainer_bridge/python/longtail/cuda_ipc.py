"""Weights handed to a worker on the same host GPU to GPU: CUDA IPC handles of the allocations
that hold the trainer's CUDA tensors, and a manifest of the tensors inside them.

For each tensor this reads its storage's handle as torch shares it between processes
(``storage._share_cuda_()``, what ``torch.multiprocessing.reductions.reduce_tensor`` sends and vLLM
/ slime use for colocated weight sync), lists every allocation once (a caching allocator packs
many tensors into one ``cudaMalloc``, and CUDA opens a handle once per process) and places each
tensor by its byte offset from that allocation's start. UPDATE_WEIGHTS's ``cuda_ipc`` field
(PROTOCOL.md) carries the result; the worker copies device to device, so nothing crosses the host.
The tensors must stay alive and unchanged until the worker's reply: :meth:`Client.update_weights_from_tensors`
holds them until then.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

CUDA_IPC_HANDLE_BYTES = 64  # sizeof(cudaIpcMemHandle_t)
_TYPE_CUDA_MALLOC = ord("c")  # torch's tag of a plain cudaMalloc block in a versioned handle
_TYPE_EXPANDABLE = ord("e")


def is_cuda_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and bool(getattr(value, "is_cuda", False))


def raw_handle(name: str, handle: bytes) -> bytes:
    """The 64 bytes of the cudaIpcMemHandle_t inside torch's storage handle: older torch returns
    them as they are, newer torch prefixes a version byte and a type byte ('c' for cudaMalloc)."""
    h = bytes(handle)
    if len(h) == CUDA_IPC_HANDLE_BYTES:
        return h
    if len(h) == CUDA_IPC_HANDLE_BYTES + 2 and h[1] == _TYPE_CUDA_MALLOC:
        return h[2:]
    if len(h) >= 2 and h[1] == _TYPE_EXPANDABLE:
        raise ValueError(f"tensor {name!r} lives in an expandable segment (PYTORCH_CUDA_ALLOC_CONF="
                         "expandable_segments:True), which CUDA IPC cannot share; allocate the weights with "
                         "expandable_segments:False or send them through shared memory (source='shm')")
    raise ValueError(f"tensor {name!r}: torch returned a {len(h)}-byte CUDA IPC handle of an unknown format")


_DTYPES = {"torch.float32": "F32", "torch.bfloat16": "BF16", "torch.float16": "F16"}


class CudaIpcTensors:
    """``named_tensors`` (CUDA torch tensors) shared by CUDA IPC: :meth:`wire` is UPDATE_WEIGHTS's
    ``cuda_ipc`` field. Non-contiguous tensors are made contiguous (a device copy, held here).
    Every device involved is synchronised, so the worker reads finished values.

    torch counts each share in a counter its consumers decrement; the worker is no torch consumer,
    so :meth:`close` (the context manager's exit) gives the counts back once the worker has
    replied: without that, torch would never reuse the memory of a shared tensor after it is freed
    (a trainer that pushes freshly cast copies every step would run out of memory). After a
    timeout the worker may still be reading, so the counts are kept (the memory stays allocated)."""

    def __init__(self, named_tensors: Mapping[str, Any]) -> None:
        import torch  # the caller has CUDA tensors, so torch is there

        buffers: List[Dict[str, Any]] = []
        by_allocation: Dict[Tuple[int, int], int] = {}
        tensors: List[Dict[str, Any]] = []
        self._keep: List[Any] = []
        self._shares: List[Tuple[Any, Any, int, Any]] = []  # storage, ref-counter handle, offset, device
        devices = set()
        try:
            for name, value in named_tensors.items():
                name = str(name)
                if not is_cuda_tensor(value):
                    raise TypeError(f"tensor {name!r} is not a CUDA tensor (CUDA IPC shares GPU memory only)")
                t = value.detach()
                if not t.is_contiguous():
                    t = t.contiguous()
                dtype = _DTYPES.get(str(t.dtype))
                if dtype is None:
                    raise TypeError(f"tensor {name!r}: dtype {t.dtype} is not one the worker reads "
                                    "(float32, bfloat16, float16)")
                self._keep.append(t)
                storage = t.untyped_storage()
                device, handle, _size, storage_offset, ref_handle, ref_offset, *_ = storage._share_cuda_()
                self._shares.append((storage, ref_handle, int(ref_offset), t.device))
                # The handle opens the allocation's start; the storage sits storage_offset bytes into it.
                key = (int(device), storage.data_ptr() - int(storage_offset))
                if key not in by_allocation:
                    by_allocation[key] = len(buffers)
                    buffers.append({"handle": raw_handle(name, handle), "size": 0})
                index = by_allocation[key]
                begin = int(storage_offset) + t.storage_offset() * t.element_size()
                end = begin + t.numel() * t.element_size()
                buffers[index]["size"] = max(buffers[index]["size"], end)
                tensors.append({"name": name, "dtype": dtype, "shape": [int(d) for d in t.shape], "buffer": index,
                                "begin": begin, "end": end})
                devices.add(t.device)
            for d in devices:
                torch.cuda.synchronize(d)
        except BaseException:
            self.close()  # nothing was sent: no one reads these
            raise
        self._wire = {"buffers": buffers, "tensors": tensors}

    def wire(self) -> Dict[str, Any]:
        return self._wire

    def close(self) -> None:
        shares, self._shares = self._shares, []
        for storage, ref_handle, ref_offset, device in shares:
            type(storage)._release_ipc_counter(ref_handle, ref_offset, device=device)
        self._keep = []

    def __enter__(self) -> "CudaIpcTensors":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None and issubclass(exc_type, TimeoutError):
            self._shares, self._keep = [], []  # the worker may still read them: never reuse
            return
        self.close()
