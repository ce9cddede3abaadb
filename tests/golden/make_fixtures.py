#!/usr/bin/env python3
"""Creates the golden fixtures for the policy backends: tiny random HF checkpoints (Llama with llama3
rope scaling, Llama with tied embeddings saved sharded, Qwen2 with q/k/v bias saved in fp16, Qwen3
with q/k norm and explicit head_dim saved in bf16) plus what transformers computes on them in fp32:
greedy continuations, the logprob of each emitted token and teacher-forced logprobs of a fixed
response. Also writes the bundled demo checkpoint configs/models/tiny-qwen3.

Needs torch + transformers (run on the GPU machine; the computation itself is on the CPU in fp32).
Weights are rounded to the saved dtype BEFORE the reference is computed, so the C++ side, which
reads the saved tensors and widens them to fp32, sees exactly the weights transformers used.
Seeds are retried until every greedy step has a clear argmax margin, so a 1e-6 difference in
accumulation order cannot flip a token.
"""
import argparse
import json
import os
import sys
import traceback

import torch
import transformers

torch.backends.cuda.matmul.allow_tf32 = False
torch.set_num_threads(4)

MAJOR = int(transformers.__version__.split(".")[0])
MIN_MARGIN = 2e-3
NEW_TOKENS = 16


def rope_kwargs(theta, scaling):
    """transformers >= 5 takes rope_parameters; 4.x takes rope_theta + rope_scaling."""
    if MAJOR >= 5:
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            params.update(scaling)
        return {"rope_parameters": params}
    kw = {"rope_theta": theta}
    if scaling:
        kw["rope_scaling"] = dict(scaling)
    return kw


def randomize(model, std, seed):
    """HF init leaves norms at 1 and biases at 0; randomize everything so each one is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.3 * noise)
            else:
                p.copy_(std * noise)


def greedy(model, prompt, n):
    """Greedy decoding by full recomputation each step, in fp32; returns tokens, logprobs, margin."""
    ids = list(prompt)
    tokens, logprobs, margin = [], [], float("inf")
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            top2 = torch.topk(logits, 2)
            margin = min(margin, float(top2.values[0] - top2.values[1]))
            tok = int(torch.argmax(logits))
            lp = float(torch.log_softmax(logits, -1)[tok])
            tokens.append(tok)
            logprobs.append(lp)
            ids.append(tok)
    return tokens, logprobs, margin


def teacher_forced(model, prompt, response):
    ids = torch.tensor([list(prompt) + list(response)])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lps = torch.log_softmax(logits, -1)
    out = []
    for j, tok in enumerate(response):
        out.append(float(lps[len(prompt) + j - 1, tok]))
    return out


def build(spec, seed):
    cls_cfg = getattr(transformers, spec["config_class"])
    cls_model = getattr(transformers, spec["architecture"])
    kw = dict(spec["config"])
    kw.update(rope_kwargs(spec.get("rope_theta", 10000.0), spec.get("rope_scaling")))
    cfg = cls_cfg(**kw)
    try:
        cfg._attn_implementation = "eager"  # fp32 reference without fused-kernel reorderings
    except Exception:
        pass
    torch.manual_seed(seed)
    model = cls_model(cfg).float().eval()
    randomize(model, spec["std"], seed)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec["dtype"]]
    with torch.no_grad():  # round to the saved dtype so the reference uses the saved weights
        for p in model.parameters():
            p.copy_(p.to(dtype).float())
    return model, dtype


def make(spec, out_dir, with_expected=True):
    os.makedirs(out_dir, exist_ok=True)
    vocab = spec["config"]["vocab_size"]
    g = torch.Generator().manual_seed(1234)
    prompts = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (5, 11)]
    response = torch.randint(0, vocab, (12,), generator=g).tolist()
    best = None
    for attempt in range(40):
        seed = spec["seed"] + attempt
        model, dtype = build(spec, seed)
        if not with_expected:
            best = (model, dtype, seed, None)
            break
        results = [greedy(model, p, NEW_TOKENS) for p in prompts]
        margin = min(r[2] for r in results)
        if best is None or margin > best[3]:
            best = (model, dtype, seed, margin, results)
        if margin >= MIN_MARGIN:
            break
    model, dtype, seed = best[0], best[1], best[2]
    # Everything is computed before saving: model.to(dtype) also rounds the rotary inv_freq buffer,
    # which the C++ side (like HF loading the checkpoint afresh) computes in fp32.
    tf = [] if not with_expected else [
        {"prompt": p, "response": response, "logprobs": teacher_forced(model, p, response)}
        for p in prompts]
    save_kw = {}
    if spec.get("max_shard_size"):
        save_kw["max_shard_size"] = spec["max_shard_size"]
    model.to(dtype).save_pretrained(out_dir, **save_kw)
    rope_type = getattr(getattr(model.model, "rotary_emb", None), "rope_type", None)
    print(f"{spec['name']}: seed {seed} files {sorted(os.listdir(out_dir))} hf rope_type {rope_type}",
          flush=True)
    if not with_expected:
        return
    margin, results = best[3], best[4]
    expected = {
        "name": spec["name"],
        "architecture": spec["architecture"],
        "dtype": spec["dtype"],
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "hf_rope_type": rope_type,
        "min_greedy_margin": margin,
        "greedy": [{"prompt": p, "tokens": r[0], "logprobs": r[1]} for p, r in zip(prompts, results)],
        "teacher_forced": tf,
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"  min greedy margin {margin:.4g}", flush=True)


BASE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)

SPECS = [
    dict(name="llama_rope_llama3", architecture="LlamaForCausalLM", config_class="LlamaConfig",
         dtype="float32", std=0.15, seed=10, rope_theta=10000.0,
         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
         config=dict(BASE, num_hidden_layers=3, tie_word_embeddings=False)),
    dict(name="llama_tied_sharded", architecture="LlamaForCausalLM", config_class="LlamaConfig",
         dtype="float32", std=0.15, seed=20, rope_theta=500000.0, max_shard_size="100KB",
         config=dict(BASE, num_key_value_heads=1, tie_word_embeddings=True)),
    dict(name="qwen2_bias_f16", architecture="Qwen2ForCausalLM", config_class="Qwen2Config",
         dtype="float16", std=0.15, seed=30, rope_theta=1000000.0,
         config=dict(BASE, vocab_size=640, tie_word_embeddings=False, rms_norm_eps=1e-6)),
    dict(name="qwen3_qknorm_bf16", architecture="Qwen3ForCausalLM", config_class="Qwen3Config",
         dtype="bfloat16", std=0.15, seed=40, rope_theta=1000000.0,
         config=dict(BASE, head_dim=32, tie_word_embeddings=True, rms_norm_eps=1e-6)),
]

TINY = dict(name="tiny-qwen3", architecture="Qwen3ForCausalLM", config_class="Qwen3Config",
            dtype="bfloat16", std=0.08, seed=50, rope_theta=1000000.0,
            config=dict(vocab_size=2048, hidden_size=128, intermediate_size=256,
                        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=32, max_position_embeddings=4096, rms_norm_eps=1e-6,
                        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder for the golden fixtures")
    ap.add_argument("--tiny-out", help="folder for the bundled tiny-qwen3 checkpoint")
    args = ap.parse_args()
    print(f"torch {torch.__version__} transformers {transformers.__version__}", flush=True)
    failed = 0
    for spec in SPECS:
        try:
            make(spec, os.path.join(args.out, spec["name"]))
        except Exception:
            failed += 1
            traceback.print_exc()
    if args.tiny_out:
        try:
            make(TINY, args.tiny_out, with_expected=False)
        except Exception:
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
