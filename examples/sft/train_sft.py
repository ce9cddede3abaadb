"""Supervised pre-training of the example policy on chain-arithmetic solutions.

Trains a small Qwen3-architecture model from scratch (PyTorch + transformers) on prompt -> step by step
solution pairs of examples/task, and saves it as an HF checkpoint that both longtail (CPU and CUDA
backends) and transformers load: config.json + generation_config.json + model.safetensors + the
task's tokenizer.json / tokenizer_config.json, plus training.json (command, steps, losses, pass rates).

The point is a policy that has learnt the format and most single steps but still slips on long
chains, so that GRPO has something to improve. Defaults: a 3-layer, 128-wide model (0.45M
parameters), 1000 optimizer steps of 1024 padded tokens (about 10 minutes on one busy CPU core),
saved in fp32 (1.8 MB; the CPU backend computes in fp32, so longtail then serves exactly these
weights). `--init` continues from a checkpoint (its training.json is kept under "init"):

  python -m examples.sft.train_sft --out /tmp/sft-a
  python -m examples.sft.train_sft --init /tmp/sft-a --steps 700 --warmup 20 --lr 2e-3 --out configs/models/chain-qwen3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import sys
import time
from typing import List, Sequence, Tuple

import torch
import transformers

from examples.task import CharTokenizer, check_ids, problems, prompt_ids
from examples.task.tokenizer import MODEL_VOCAB_SIZE

IGNORE = -100


def model_config(tok: CharTokenizer, a: argparse.Namespace) -> transformers.Qwen3Config:
    major = int(transformers.__version__.split(".")[0])
    rope = ({"rope_parameters": {"rope_type": "default", "rope_theta": a.rope_theta}} if major >= 5
            else {"rope_theta": a.rope_theta})
    return transformers.Qwen3Config(
        vocab_size=MODEL_VOCAB_SIZE, hidden_size=a.hidden, intermediate_size=a.intermediate,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
        head_dim=a.hidden // a.heads, max_position_embeddings=a.context, rms_norm_eps=1e-6,
        tie_word_embeddings=True, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
        attention_bias=False, use_sliding_window=False, **rope)


def example(tok: CharTokenizer, p) -> Tuple[List[int], List[int]]:
    """Input ids and labels of one problem: loss on the response (EOS included), not on the prompt."""
    prompt = prompt_ids(tok, p.prompt)
    response = tok.encode(p.solution, eos=True)
    return prompt + response, [IGNORE] * len(prompt) + response


def batches(tok: CharTokenizer, seed: int, tokens_per_batch: int, max_steps: int = 0, pool: int = 512):
    """Endless batches of training problems (set `seed`, consecutive indices). A pool of problems is
    sorted by length and cut into batches of about `tokens_per_batch` padded tokens, so a 400-token
    solution is batched with its peers instead of padding 60 short ones; batch order is shuffled."""
    rng = random.Random(seed)
    index = 0
    while True:
        items = [example(tok, p) for p in problems(seed, pool, start=index)
                 if not max_steps or len(p.steps) <= max_steps]
        index += pool
        items.sort(key=lambda x: len(x[0]))
        chunk: List[Tuple[List[int], List[int]]] = []
        out = []
        for it in items:
            if chunk and len(it[0]) * (len(chunk) + 1) > tokens_per_batch:
                out.append(chunk)
                chunk = []
            chunk.append(it)
        if chunk:
            out.append(chunk)
        rng.shuffle(out)
        for c in out:
            width = max(len(x[0]) for x in c)
            ids = torch.full((len(c), width), tok.pad_id, dtype=torch.long)
            labels = torch.full((len(c), width), IGNORE, dtype=torch.long)
            for i, (x, y) in enumerate(c):
                ids[i, :len(x)] = torch.tensor(x)
                labels[i, :len(y)] = torch.tensor(y)
            yield ids, labels


@torch.no_grad()
def pass_rate(model, tok: CharTokenizer, seed: int, count: int, temperature: float, max_new: int) -> float:
    """Share of `count` held-out problems solved, sampling at `temperature` (0 = greedy)."""
    model.eval()
    solved = 0
    probs = problems(seed, count)
    for i in range(0, count, 32):
        chunk = probs[i:i + 32]
        prompts = [prompt_ids(tok, p.prompt) for p in chunk]
        width = max(map(len, prompts))
        # Left padding so every row's last prompt token is at the same position.
        dev = next(model.parameters()).device
        ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        kw = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, pad_token_id=tok.pad_id,
                             eos_token_id=tok.eos_id, **kw)
        for p, row in zip(prompts, out[:, width:].tolist()):
            solved += check_ids(tok, p, row).correct
    model.train()
    return solved / count


def save(model, tok: CharTokenizer, out: pathlib.Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save(out)
    (out / "training.json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: Sequence[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--init", default="", help="continue from this checkpoint instead of a random init "
                                               "(its architecture; the shape flags are ignored)")
    ap.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop early after this long, 0 = no limit")
    ap.add_argument("--tokens-per-batch", type=int, default=1024, help="padded tokens per batch (default 1024)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3), cosine to 10%%")
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--context", type=int, default=1024, help="max_position_embeddings (default 1024)")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="saved weights")
    ap.add_argument("--train-seed", type=int, default=1000, help="prompt set of the training data")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="train only on problems of at most this many steps (0 = the task's full range)")
    ap.add_argument("--eval-seed", type=int, default=999, help="held-out prompt set for pass rates")
    ap.add_argument("--eval-count", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="torch seed (initialisation)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine more threads spin and slow down)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    a = ap.parse_args(argv)

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    tok = CharTokenizer()
    cfg = model_config(tok, a)
    device = torch.device(a.device)
    if a.init:
        model = transformers.AutoModelForCausalLM.from_pretrained(a.init, dtype=torch.float32).to(device)
    else:
        model = transformers.Qwen3ForCausalLM(cfg).to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {model.config.num_hidden_layers} layers x "
          f"{model.config.hidden_size}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        f = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, f))))

    t0 = time.monotonic()
    history = []
    tokens_seen = 0
    ema = None
    step = 0
    data = batches(tok, a.train_seed, a.tokens_per_batch, a.max_steps)
    for step in range(a.steps):
        ids, labels = next(data)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids.to(device), labels=labels.to(device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += int((labels != IGNORE).sum())
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        elapsed = time.monotonic() - t0
        if step % 50 == 0:
            print(f"step {step:5d}  loss {ema:.4f}  lr {lr_at(step):.2e}  {tokens_seen / elapsed:.0f} target tok/s  "
                  f"{elapsed:.0f} s", flush=True)
        if (step + 1) % a.eval_every == 0:
            g = pass_rate(model, tok, a.eval_seed, a.eval_count, 0.0, 480)
            history.append({"step": step + 1, "loss": ema, "greedy_pass_rate": g, "elapsed_s": elapsed})
            print(f"step {step + 1}: greedy pass rate {g:.3f}", flush=True)
        if a.max_minutes and elapsed > 60 * a.max_minutes:
            print(f"time limit reached at step {step + 1}", flush=True)
            break

    final = {"greedy": pass_rate(model, tok, a.eval_seed, a.eval_count, 0.0, 480),
             "t1": pass_rate(model, tok, a.eval_seed, a.eval_count, 1.0, 480)}
    print(f"final: loss {ema:.4f}, pass rate greedy {final['greedy']:.3f}, T=1 {final['t1']:.3f}", flush=True)
    model = model.to("cpu", torch.bfloat16 if a.dtype == "bfloat16" else torch.float32)
    meta = {"command": "python -m examples.sft.train_sft " + " ".join(sys.argv[1:] if argv is None else argv),
            "parameters": n_params, "steps": step + 1, "target_tokens": tokens_seen,
            "train_seconds": time.monotonic() - t0, "final_loss_ema": ema,
            "pass_rate": {"eval_seed": a.eval_seed, "eval_count": a.eval_count, **final},
            "history": history, "torch": torch.__version__, "transformers": transformers.__version__}
    if a.init:
        prev = pathlib.Path(a.init) / "training.json"
        meta["init"] = {"path": str(a.init), "training": json.loads(prev.read_text()) if prev.exists() else None}
    save(model, tok, pathlib.Path(a.out), meta)
    print(f"saved {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
