"""The verifier of the chain-arithmetic task: the reward of a response given only its prompt.

Outcome reward (the RLVR default): 1 when the response ends with the end-of-sequence token and its
last line is the right final line (the answer with 00 steps to go), else 0. Graded reward (option): the share of solution lines that are
right, position by position, over the longer of the solution and the response (so extra lines cost
too); a long solution that slips late still earns most of its credit, 1 only for an exact one. A response cut off by the length limit (no EOS) earns 0
either way: a policy must not be paid for running to the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from examples.task.chain import Problem, parse_prompt
from examples.task.tokenizer import CharTokenizer, prompt_text


@dataclass(frozen=True)
class Verdict:
    reward: float
    correct: bool        # finished with the right final answer
    finished: bool       # ended with EOS
    lines_right: int     # solution lines right, position by position
    lines_expected: int  # = the problem's step count


def check_text(problem: Problem, response: str, finished: bool, graded: bool = False) -> Verdict:
    want = problem.solution_lines()
    got = response.split(";") if response else []
    right = sum(1 for g, w in zip(got, want) if g == w)
    correct = finished and bool(got) and got[-1] == want[-1]
    if graded:
        reward = right / max(len(want), len(got)) if finished else 0.0
    else:
        reward = 1.0 if correct else 0.0
    return Verdict(reward, correct, finished, right, len(want))


def check_ids(tok: CharTokenizer, prompt_tokens: Sequence[int], response_tokens: Sequence[int],
              graded: bool = False) -> Verdict:
    """Verdict for token ids as the worker returns them: the prompt (BOS + problem) and the response
    (EOS included when the policy stopped). A prompt that is not a chain problem raises ValueError."""
    problem = parse_prompt(prompt_text(tok, prompt_tokens))
    ids = [int(t) for t in response_tokens]
    finished = tok.eos_id in ids
    if finished:
        ids = ids[:ids.index(tok.eos_id)]
    return check_text(problem, tok.decode(ids), finished, graded)
