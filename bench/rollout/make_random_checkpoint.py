"""Writes a random-weight HF checkpoint of a Qwen2.5 shape (for GPU round benchmarks, where only
costs matter: trace-forced runs take the emitted tokens from a recording). Needs torch + transformers
(present on the GPU machine). Usage: python3 make_random_checkpoint.py --shape 1.5b --out DIR"""
import argparse
import pathlib
import sys

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "gpu"))
from hf_generate import SHAPES  # noqa: E402  (one table of the Qwen2.5 shapes for every GPU bench)

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
