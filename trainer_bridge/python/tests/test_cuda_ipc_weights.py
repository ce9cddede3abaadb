"""Weight updates from CUDA tensors by CUDA IPC handles (UPDATE_WEIGHTS ``cuda_ipc``).

Without a GPU (CI): torch's handle formats are read right, and a CPU worker refuses ``cuda_ipc`` by
name -- from the client before anything is sent, and from the worker for a raw message -- while a
malformed message is refused naming its field; every refusal keeps the old version serving.
With a GPU, torch and a CUDA-enabled worker build (the device): CUDA tensors pushed by IPC give the
same greedy tokens and logprobs as the same tensors loaded from a checkpoint directory, bad
manifests and NaNs are refused with the old weights serving, and nothing leaks across updates."""

from __future__ import annotations

import shutil

import msgpack
import numpy as np
import pytest

from longtail import Client, WorkerError
from longtail.cuda_ipc import CUDA_IPC_HANDLE_BYTES, raw_handle
from longtail.protocol import PROTOCOL_VERSION
from conftest import MODEL
from test_shared_weights import perturbed, rollout
from test_worker import raw_reply, raw_socket


def test_torch_handle_formats():
    h = bytes(range(CUDA_IPC_HANDLE_BYTES))
    assert raw_handle("w", h) == h                               # torch < 2.5: the handle itself
    assert raw_handle("w", bytes([2, ord("c")]) + h) == h         # versioned, cudaMalloc block
    assert raw_handle("w", bytes([3, ord("c")]) + h) == h
    with pytest.raises(ValueError, match="expandable_segments"):
        raw_handle("w", bytes([2, ord("e")]) + b"x" * 80)
    with pytest.raises(ValueError, match="unknown format"):
        raw_handle("w", b"short")


def test_a_cpu_worker_refuses_cuda_ipc_by_name_and_keeps_serving(start_worker):
    w = start_worker()
    with Client(w.endpoint) as c:
        assert "update_weights_cuda_ipc" not in c.worker.capabilities
        assert c.update_weights_from_tensors(1, perturbed(), source="auto") == 1  # numpy: shm
        served = rollout(c)
        with pytest.raises(WorkerError) as e:
            c.update_weights_from_tensors(2, perturbed(), source="cuda_ipc")
        assert e.value.code == "INVALID_REQUEST" and "backend:cpu" in e.value.message, e.value.message
        with pytest.raises(ValueError, match="not one of auto, cuda_ipc, shm"):
            c.update_weights_from_tensors(2, perturbed(), source="nccl")
        assert c.stats()["engine"]["policy_version"] == 1 and rollout(c) == served

    s = raw_socket(w.endpoint)
    assert raw_reply(s, [msgpack.packb({"type": "HELLO", "version": PROTOCOL_VERSION, "client_id": "raw",
                                        "credits": 0})])["type"] == "HELLO"

    def update(req, **fields):
        return raw_reply(s, [msgpack.packb({"type": "UPDATE_WEIGHTS", "req": req, "version": 5, **fields},
                                           use_bin_type=True)])

    manifest = {"buffers": [{"handle": b"\0" * CUDA_IPC_HANDLE_BYTES, "size": 64}],
                "tensors": [{"name": "model.norm.weight", "dtype": "F32", "shape": [16], "buffer": 0,
                             "begin": 0, "end": 64}]}
    r = update(1, cuda_ipc=manifest)
    assert r["code"] == "INVALID_REQUEST" and "needs the cuda backend" in r["message"] \
        and "cpu backend" in r["message"] and "still serving policy version 1" in r["message"], r["message"]
    r = update(2, cuda_ipc=manifest, path="/tmp")
    assert r["code"] == "BAD_FIELD" and "'cuda_ipc'" in r["message"], r["message"]
    r = update(3, cuda_ipc={**manifest, "buffers": [{"handle": 7, "size": 64}]})
    assert r["code"] == "BAD_FIELD" and "cuda_ipc.buffers[0].handle" in r["message"], r["message"]
    r = update(4, cuda_ipc={"buffers": manifest["buffers"]})
    assert r["code"] == "BAD_FIELD" and "cuda_ipc.tensors" in r["message"], r["message"]
    s.close()
    with Client(w.endpoint) as c:
        assert c.stats()["engine"]["policy_version"] == 1 and rollout(c) == served


# ---------------------------------------------------------------------------------------------- GPU
def _cuda_worker(start_worker, *args):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    w = start_worker("--backend", "cuda", *args)
    c = Client(w.endpoint, timeout=120.0)
    if "update_weights_cuda_ipc" not in c.worker.capabilities:
        c.close()
        pytest.skip("the worker build has no CUDA backend")
    return torch, w, c


def _on_gpu(torch, arrays, dtype):
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to("cuda", dtype) for k, v in arrays.items()}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cuda_tensors_match_the_checkpoint_directory(start_worker, tmp_path, dtype):
    from longtail.safetensors_np import write_f32

    d = tmp_path / "weights" / "v2"
    shutil.copytree(MODEL, d)
    host = perturbed()
    torch, w, c = _cuda_worker(start_worker, "--allow-weights-dir", str(tmp_path / "weights"))
    with c:
        base = rollout(c)
        gpu = _on_gpu(torch, host, getattr(torch, dtype))
        # The directory gets the values the GPU tensors hold (after their rounding to dtype).
        write_f32(d / "model.safetensors", {k: v.float().cpu().numpy() for k, v in gpu.items()})
        assert c.update_weights_from_tensors(1, gpu, check_finite=True) == 1  # auto: cuda_ipc
        from_ipc = rollout(c)
        assert c.update_weights(2, d) == 2
        from_dir = rollout(c)
        assert from_ipc == from_dir
        assert from_ipc != base
        assert c.worker.policy_version == 2


def test_packed_and_strided_tensors_are_placed_by_their_offsets(start_worker):
    torch, w, c = _cuda_worker(start_worker)
    with c:
        host = perturbed()
        ref = _on_gpu(torch, host, torch.float32)
        assert c.update_weights_from_tensors(1, ref) == 1
        want = rollout(c)
        # All tensors as views into one flat allocation (one handle, many offsets), and one
        # transposed view (not contiguous: copied to a contiguous tensor first).
        flat = torch.cat([t.reshape(-1) for t in ref.values()])
        views, at = {}, 0
        for k, t in ref.items():
            views[k] = flat[at:at + t.numel()].view(t.shape)
            at += t.numel()
        views["model.embed_tokens.weight"] = ref["model.embed_tokens.weight"].t().contiguous().t()
        from longtail.cuda_ipc import CudaIpcTensors
        with CudaIpcTensors(views) as shared:
            assert len(shared.wire()["buffers"]) <= 2
        assert c.update_weights_from_tensors(2, views) == 2
        assert rollout(c) == want


def test_bad_cuda_tensors_are_refused_and_the_old_version_serves(start_worker):
    torch, w, c = _cuda_worker(start_worker)
    with c:
        good = _on_gpu(torch, perturbed(), torch.bfloat16)
        assert c.update_weights_from_tensors(1, good) == 1
        served = rollout(c)
        cases = []
        nan = dict(good)
        nan["model.norm.weight"] = good["model.norm.weight"].clone()
        nan["model.norm.weight"][3] = float("nan")
        cases.append((nan, "non-finite value at flat index 3"))
        missing = {k: v for k, v in good.items() if k != "model.norm.weight"}
        cases.append((missing, '"model.norm.weight": missing tensor'))
        wrong = dict(good)
        wrong["model.embed_tokens.weight"] = good["model.embed_tokens.weight"].t().contiguous()
        cases.append((wrong, '"model.embed_tokens.weight": wrong shape'))
        for bad, needle in cases:
            with pytest.raises(WorkerError) as e:
                c.update_weights_from_tensors(2, bad, check_finite=True)
            assert e.value.code == "BAD_CHECKPOINT" and needle in e.value.message, e.value.message
            assert "still serving policy version 1" in e.value.message
        # A forged handle and a size beyond the allocation: refused before any copy.
        from longtail.cuda_ipc import CudaIpcTensors
        with CudaIpcTensors(good) as shared:
            manifest = shared.wire()
            first = manifest["buffers"][0]
            forged = {**manifest, "buffers": [{**first, "handle": b"\x01" * CUDA_IPC_HANDLE_BYTES}]
                      + manifest["buffers"][1:]}
            too_big = {**manifest, "buffers": [{**first, "size": first["size"] + (1 << 40)}] + manifest["buffers"][1:]}
            for req, (m, needle) in enumerate([(forged, "buffer[0]: cannot open the CUDA IPC handle"),
                                               (too_big, "buffer[0]: size")], start=100):
                with pytest.raises(WorkerError) as e:
                    c.request_raw([msgpack.packb({"type": "UPDATE_WEIGHTS", "req": req, "version": 3,
                                                  "cuda_ipc": m}, use_bin_type=True)], req)
                assert e.value.code == "BAD_CHECKPOINT" and needle in e.value.message, e.value.message
            assert "beyond the allocation" in e.value.message
        assert c.stats()["engine"]["policy_version"] == 1 and rollout(c) == served
        # and it still takes a good update afterwards
        assert c.update_weights_from_tensors(4, good) == 4 and rollout(c) == served


def test_shared_tensors_are_given_back_to_torch_after_the_update(start_worker):
    # A trainer pushing freshly cast copies each step frees them afterwards; torch reuses that
    # memory only once the share counts are released, which the client does after the reply.
    torch, w, c = _cuda_worker(start_worker)
    with c:
        host = perturbed()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        one_copy = sum(v.size for v in host.values()) * 2
        for version in range(1, 5):
            step = _on_gpu(torch, host, torch.bfloat16)
            assert c.update_weights_from_tensors(version, step) == version
            del step
        torch.cuda.ipc_collect()
        assert torch.cuda.memory_allocated() - base < one_copy, (torch.cuda.memory_allocated(), base, one_copy)
