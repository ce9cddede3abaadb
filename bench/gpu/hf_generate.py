#!/usr/bin/env python3
"""HF transformers generate() baseline for the GPU benchmark: random-weight Qwen2.5 shapes in bf16
on the GPU, do_sample=True at T=1 (no top-k/top-p cut, like longtail's benchmark), prompt 128,
exactly 256 new tokens (min_new_tokens = max_new_tokens). Writes tokens/s per shape as JSON."""
import argparse
import json
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
               tie_word_embeddings=False),
}
NAMES = {"0.5b": "Qwen2.5-0.5B", "1.5b": "Qwen2.5-1.5B", "7b": "Qwen2.5-7B"}


def run(shape, batch, prompt_len, new_tokens):
    cfg = Qwen2Config(max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                      **SHAPES[shape])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt_len), device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
              pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        model.generate(ids, min_new_tokens=8, max_new_tokens=8, **kw)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, min_new_tokens=new_tokens, max_new_tokens=new_tokens, **kw)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    assert out.shape == (batch, prompt_len + new_tokens), out.shape
    del model
    torch.cuda.empty_cache()
    return {"name": NAMES[shape], "batch": batch, "prompt": prompt_len, "new_tokens": new_tokens,
            "seconds": dt, "tokens_per_s": batch * new_tokens / dt}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="1.5b")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    import transformers
    res = {"torch": torch.__version__, "transformers": transformers.__version__, "runs": []}
    for shape in a.models.split(","):
        r = run(shape, a.batch, a.prompt, a.new_tokens)
        print(f"HF generate {r['name']} batch {r['batch']}: {r['seconds']:.2f} s, "
              f"{r['tokens_per_s']:.0f} tok/s", flush=True)
        res["runs"].append(r)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
