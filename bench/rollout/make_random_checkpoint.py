"""Writes a random-weight HF checkpoint of a Qwen2.5 shape (for GPU round benchmarks, where only
costs matter: trace-forced runs take the emitted tokens from a recording). Needs torch + transformers
(present on the GPU machine). Usage: python3 make_random_checkpoint.py --shape 1.5b --out DIR"""
import argparse

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

ap = argparse.ArgumentParser()
ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
ap.add_argument("--out", required=True)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.manual_seed(a.seed)
cfg = Qwen2Config(max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                  eos_token_id=151645, **SHAPES[a.shape])
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(a.out)
print(f"wrote {a.shape} checkpoint to {a.out}")
