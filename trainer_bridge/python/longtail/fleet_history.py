"""Shared drafter history: a worker's finished rollouts, sent to the other workers of the fleet.

A worker drafts from the rollouts it generated itself. In a fleet each worker would then see 1/K of
the global history, and a prompt moved off its home worker (load bound, failover) would start over.
After every batch the fleet sends that batch's rollouts to the other workers as a HISTORY message:
they join those workers' drafter history at their next round boundary, bounded by the same window
and token budgets as their own. History is a hint, not data: it is not journaled, and a worker that
does not list the ``history`` capability (speculation off, or an older worker) is simply not sent
any. PROTOCOL.md, section HISTORY, is the message.
"""

from __future__ import annotations

import itertools
from typing import Any, List, Tuple

import numpy as np

from longtail.protocol import pack
from longtail.types import Batch

#: Request ids of HISTORY messages: far above the Client's own counter, so they never collide.
_REQ = itertools.count(1 << 48)

CAPABILITY = "history"


def encode_history(batch: Batch) -> Tuple[int, List[Any]]:
    """(req, frames) of a HISTORY message with the trajectories of ``batch``. One encoding serves
    every recipient: a req only has to be unique among one connection's outstanding requests."""
    req = next(_REQ)
    header = {
        "type": "HISTORY",
        "req": req,
        "trajectories": [{"prompt_id": t.prompt_id, "prompt_len": int(t.prompt_tokens.size),
                          "response_len": int(t.response_tokens.size)} for t in batch.trajectories],
        "frames": {"prompt_tokens": 1, "response_tokens": 2},
    }
    prompts = np.ascontiguousarray(batch.arrays["prompt_tokens"], dtype="<i4")
    responses = np.ascontiguousarray(batch.arrays["response_tokens"], dtype="<i4")
    return req, [pack(header), prompts.tobytes(), responses.tobytes()]
