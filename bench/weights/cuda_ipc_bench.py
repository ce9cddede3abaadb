"""Weight-update latency on one GPU: UPDATE_WEIGHTS from a trainer's CUDA tensors by CUDA IPC
handles vs from a safetensors directory, against a live CUDA longtail-worker on this host.

For each model: the trainer process holds the weights as bf16 CUDA tensors (the small model's own
values, or random values of a Qwen2.5 1.5B / 7B shape), writes them once as a checkpoint directory
the worker starts from, then times client round trips (request sent -> UPDATE_WEIGHTS_OK): IPC
updates (the first one apart: it includes the trainer's first export of each allocation), and
directory updates of the same values (page cache warm). After each source a greedy rollout is
taken; IPC and directory must give identical tokens and logprobs.

    PYTHONPATH=trainer_bridge/python LONGTAIL_BUILD_DIR=build python3 bench/weights/cuda_ipc_bench.py \\
        --models small,1.5b,7b --repeat 5 [--deterministic] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from longtail import Client, Group

REPO = pathlib.Path(__file__).resolve().parents[2]

# Qwen2.5 shapes as bench/gpu/bench_models.cc has them (q/k/v bias, GQA, RoPE theta 1e6).
SHAPES = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


def qwen2_config(shape):
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "eos_token_id": 151643, "torch_dtype": "bfloat16",
            "hidden_act": "silu", **shape}


def random_qwen2(c, gen):
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    d = h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, h)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({p + "self_attn.q_proj.weight": (q, h), p + "self_attn.q_proj.bias": (q,),
                       p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
                       p + "self_attn.o_proj.weight": (h, q), p + "mlp.gate_proj.weight": (i, h),
                       p + "mlp.up_proj.weight": (i, h), p + "mlp.down_proj.weight": (h, i),
                       p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)})
    out = {}
    for name, shape in shapes.items():
        t = torch.empty(shape, dtype=torch.bfloat16, device="cuda")
        if name.endswith("norm.weight"):
            t.fill_(1.0)
        else:
            t.uniform_(-0.0346, 0.0346, generator=gen)  # HF's initialiser scale, as the GPU bench's
        out[name] = t
    return out


def greedy(c, vocab):
    c.submit([Group(f"g{time.monotonic_ns()}-{k}", [(7 * k + 3) % vocab, 5 % vocab, 9 % vocab], n=1, max_tokens=8,
                    temperature=0.0, ignore_eos=True) for k in range(2)])
    got = []
    while len(got) < 2:
        b = c.next_batch(timeout=120)
        assert b is not None, "no batch"
        got += b.trajectories
        c.ack(b)
    got.sort(key=lambda t: t.group_id)
    return [(t.response_tokens.tolist(), t.behaviour_logprobs.tolist()) for t in got]


def bench(name, repeat, worker_bin, tmp, deterministic):
    from safetensors.torch import save_file

    gen = torch.Generator(device="cuda").manual_seed(1)
    d = tmp / "weights" / name
    if name == "small":
        src = REPO / "configs/models/chain-qwen3"
        shutil.copytree(src, d)
        from safetensors.torch import load_file
        tensors = {k: v.to("cuda", torch.bfloat16) for k, v in load_file(str(src / "model.safetensors")).items()}
        vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    else:
        d.mkdir(parents=True)
        cfg = qwen2_config(SHAPES[name])
        (d / "config.json").write_text(json.dumps(cfg))
        tensors = random_qwen2(cfg, gen)
        vocab = cfg["vocab_size"]
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    t0 = time.perf_counter()
    save_file({k: v.cpu() for k, v in tensors.items()}, str(d / "model.safetensors"))
    write_s = time.perf_counter() - t0
    endpoint = f"ipc://{tmp}/{name}.sock"
    log = open(tmp / f"{name}.log", "wb")
    cmd = [worker_bin, "--model", str(d), "--backend", "cuda", "--backend-kv-memory-fraction", "0.1",
           "--endpoint", endpoint, "--allow-weights-dir", str(tmp / "weights")]
    proc = subprocess.Popen(cmd + (["--backend-deterministic"] if deterministic else []), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        with Client(endpoint, timeout=600.0) as c:
            assert "update_weights_cuda_ipc" in c.worker.capabilities, c.worker.capabilities
            version, ipc, directory = 0, [], []
            for _ in range(repeat + 1):
                version += 1
                t0 = time.perf_counter()
                c.update_weights_from_tensors(version, tensors, source="cuda_ipc")
                ipc.append(time.perf_counter() - t0)
            after_ipc = greedy(c, vocab)
            repeatable = greedy(c, vocab) == after_ipc  # false: the forward itself varies (fast mode)
            for _ in range(1 if name == "7b" else 2):
                version += 1
                t0 = time.perf_counter()
                c.update_weights(version, d)
                directory.append(time.perf_counter() - t0)
            after_dir = greedy(c, vocab)
            version += 1
            t0 = time.perf_counter()
            c.update_weights_from_tensors(version, tensors, source="cuda_ipc", check_finite=True)
            finite_s = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    worker_log = (tmp / f"{name}.log").read_text(errors="replace")
    worker_ms = [float(l.split(" in ")[-1].split(" ms")[0]) for l in worker_log.splitlines()
                 if "CUDA IPC buffers" in l and " ms" in l]
    return {"model": name, "weight_bytes": nbytes, "tensors": len(tensors), "repeat": repeat,
            "ipc_first_s": ipc[0], "ipc_median_s": statistics.median(ipc[1:]), "ipc_min_s": min(ipc[1:]),
            "ipc_max_s": max(ipc[1:]), "ipc_check_finite_s": finite_s,
            "worker_copy_ms_median": statistics.median(worker_ms) if worker_ms else None,
            "directory_median_s": statistics.median(directory), "directory_n": len(directory),
            "checkpoint_write_s": write_s, "deterministic": deterministic, "greedy_repeatable": repeatable,
            "same_greedy_tokens_and_logprobs": after_ipc == after_dir}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,1.5b,7b", help="comma list of small, 1.5b, 7b")
    ap.add_argument("--repeat", type=int, default=5, help="timed IPC updates per model after the first (default 5)")
    ap.add_argument("--worker-bin", default=str(pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build"))
                                               / "bin" / "longtail-worker"))
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--deterministic", action="store_true",
                    help="worker in deterministic mode, so equal weights must give bitwise equal rollouts")
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="longtail-ipcbench-") as tmp:
        for name in a.models.split(","):
            r = bench(name, a.repeat, a.worker_bin, pathlib.Path(tmp), a.deterministic)
            results.append(r)
            print(json.dumps(r), flush=True)
            shutil.rmtree(pathlib.Path(tmp) / "weights" / name)
            torch.cuda.empty_cache()
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(out, indent=1))
    return 0 if all(r["same_greedy_tokens_and_logprobs"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
