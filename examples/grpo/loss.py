"""The GRPO objective on one batch of longtail trajectories (PyTorch).

Advantages are group-normalised outcome rewards: A_i = (r_i - mean_g) / (std_g + eps) over the n
samples of a prompt (GRPO; `scale_by_std=False` gives Dr. GRPO's unscaled r_i - mean_g). Every
response token of sample i gets A_i.

The token loss is PPO's clipped surrogate with asymmetric bounds (DAPO's clip-higher when
`clip_high` > `clip_low`):  -min(rho * A, clip(rho, 1 - clip_low, 1 + clip_high) * A).
Which policy rho is measured against depends on `tis`:
  * tis off (default, as in verl): rho = pi_theta / mu, the behaviour policy that sampled the token.
  * tis on: the decoupled form for stale tokens (truncated importance sampling): rho = pi_theta /
    pi_prox, where pi_prox is the latest policy's logprob that the worker computed for tokens
    sampled under older weights (`current_logprobs`; = mu for on-policy tokens), and the token's
    loss is weighted by the batch's truncated ratio min(pi_prox / mu, C) (`token_tis`).
Aggregation: mean over all response tokens of the batch (DAPO's token-level mean, so long
responses are not down-weighted), or `seq_mean` (mean per sequence, then over sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch


@dataclass
class LossOptions:
    clip_low: float = 0.2        # epsilon below 1
    clip_high: float = 0.28      # epsilon above 1 (DAPO clip-higher; = clip_low for plain PPO)
    tis: bool = False            # decoupled ratio against pi_prox + truncated token weights
    seq_mean: bool = False       # per-sequence mean instead of the token-level mean
    scale_by_std: bool = True    # GRPO (True) or Dr. GRPO (False) advantages


def group_advantages(rewards: Sequence[float], groups: Sequence[str], scale_by_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """[B] advantages: each reward minus its group's mean, divided by the group's (population)
    standard deviation when `scale_by_std`. A group whose rewards are all equal gets zeros."""
    r = torch.tensor(list(rewards), dtype=torch.float64)
    out = torch.zeros_like(r)
    index: Dict[str, List[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    for rows in index.values():
        rg = r[rows]
        centred = rg - rg.mean()
        if scale_by_std:
            centred = centred / (rg.std(unbiased=False) + eps)
        out[rows] = centred
    return out.float()


def response_logprobs(model, input_ids: torch.Tensor, prompt_lens: torch.Tensor, response_lens: torch.Tensor,
                      width: int) -> torch.Tensor:
    """log pi_theta of each response token, [B, width] (zeros past a response's end). `input_ids`
    holds prompt then response per row, right-padded."""
    logits = model(input_ids=input_ids).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    b = input_ids.shape[0]
    out = torch.zeros(b, width, dtype=logp.dtype, device=logp.device)
    for i in range(b):
        p, r = int(prompt_lens[i]), int(response_lens[i])
        out[i, :r] = logp[i, p - 1:p - 1 + r]
    return out


def ppo_token_loss(logp: torch.Tensor, behaviour: torch.Tensor, prox: torch.Tensor, tis_weight: torch.Tensor,
                   advantages: torch.Tensor, mask: torch.Tensor, opts: LossOptions, total_tokens: float,
                   total_sequences: float):
    """The clipped surrogate summed over this micro-batch, scaled so that summing the micro-batches
    of a batch gives the batch's mean (tokens: divide by `total_tokens`; seq_mean: by each row's
    length and `total_sequences`). Returns (loss, statistics dict of plain floats)."""
    anchor = prox if opts.tis else behaviour
    ratio = torch.exp(logp - anchor)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - opts.clip_low, 1 + opts.clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    if opts.tis:
        per_token = per_token * tis_weight
    m = mask.float()
    if opts.seq_mean:
        lens = m.sum(1).clamp(min=1)
        loss = ((per_token * m).sum(1) / lens).sum() / total_sequences
    else:
        loss = (per_token * m).sum() / total_tokens
    with torch.no_grad():
        clip_frac = float(((unclipped != clipped).float() * m).sum())
        approx_kl = float((((ratio - 1) - torch.log(ratio)) * m).sum())  # k3 estimator of KL(anchor || theta)
    return loss, {"clipped_tokens": clip_frac, "kl_sum": approx_kl}
