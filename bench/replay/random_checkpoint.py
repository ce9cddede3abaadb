#!/usr/bin/env python3
"""Writes a random-weight Qwen2.5-shape checkpoint (config.json + model.safetensors) with numpy
alone, in seconds: the replay's GPU validation (bench/replay/gpu_validation.sh) times trace-forced
rounds, where only step costs matter, and device time is scarce; bench/rollout/make_random_checkpoint.py
builds the same shapes through torch + transformers, which costs tens of seconds more for the 7B
shape on the device. Weights are N(0, 0.02) in bf16 (one random pool, reused with a shift per
tensor), norms are ones. The shapes are bench/gpu/hf_generate.py's SHAPES (one table; read without
importing torch).

    python3 bench/replay/random_checkpoint.py --shape 7b --out /tmp/q7
"""
import argparse
import ast
import json
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def shapes():
    """SHAPES of bench/gpu/hf_generate.py, evaluated from its source (that module imports torch)."""
    tree = ast.parse((HERE.parent / "gpu" / "hf_generate.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SHAPES" for t in node.targets):
            return eval(compile(ast.Expression(node.value), "hf_generate.py", "eval"), {"dict": dict})
    raise SystemExit("bench/gpu/hf_generate.py has no SHAPES table")


def tensors(s):
    """(name, shape, kind) in policy/checkpoint.cc's expected_tensors order (Qwen2: q/k/v biases)."""
    H, I, V, L = s["hidden_size"], s["intermediate_size"], s["vocab_size"], s["num_hidden_layers"]
    D = H // s["num_attention_heads"]
    q, kv = s["num_attention_heads"] * D, s["num_key_value_heads"] * D
    out = [("model.embed_tokens.weight", (V, H), "w")]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (H,), "one"),
                (p + "self_attn.q_proj.weight", (q, H), "w"), (p + "self_attn.k_proj.weight", (kv, H), "w"),
                (p + "self_attn.v_proj.weight", (kv, H), "w"), (p + "self_attn.o_proj.weight", (H, q), "w"),
                (p + "self_attn.q_proj.bias", (q,), "w"), (p + "self_attn.k_proj.bias", (kv,), "w"),
                (p + "self_attn.v_proj.bias", (kv,), "w"),
                (p + "post_attention_layernorm.weight", (H,), "one"),
                (p + "mlp.gate_proj.weight", (I, H), "w"), (p + "mlp.up_proj.weight", (I, H), "w"),
                (p + "mlp.down_proj.weight", (H, I), "w")]
    out.append(("model.norm.weight", (H,), "one"))
    if not s["tie_word_embeddings"]:
        out.append(("lm_head.weight", (V, H), "w"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    table = shapes()
    ap.add_argument("--shape", choices=sorted(table), default="1.5b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config-only", action="store_true",
                    help="write config.json alone (longtail-replay --model reads nothing else)")
    a = ap.parse_args()
    s = table[a.shape]
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu",
                  max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                  eos_token_id=151645, torch_dtype="bfloat16", **s)
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    if a.config_only:
        return

    rng = np.random.default_rng(a.seed)
    pool_elems = 1 << 25  # 64 MiB of bf16
    f32 = (rng.standard_normal(pool_elems + (1 << 16), dtype=np.float32) * 0.02)
    pool = (f32.view(np.uint32) >> 16).astype(np.uint16)  # bf16 = the top half of an fp32
    one = np.full(1 << 16, 0x3F80, dtype=np.uint16)          # bf16 1.0

    header, offset, specs = {}, 0, tensors(s)
    for name, shape, _ in specs:
        nbytes = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(out / "model.safetensors", "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for i, (name, shape, kind) in enumerate(specs):
            left = int(np.prod(shape))
            src = one if kind == "one" else pool[(i * 977) % (1 << 16):]
            while left > 0:
                n = min(left, len(src) - (1 << 16) if kind != "one" else len(src))
                f.write(src[:n].tobytes())
                left -= n
    print(f"wrote random {a.shape} checkpoint to {out} ({offset / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
