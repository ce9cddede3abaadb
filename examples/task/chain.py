"""Chain arithmetic: the verifiable task with a long tail that the example policy is trained on.

A problem is a start value, one step (plus or minus a digit) and a repetition count, all modulo 100:
``37-4*09=`` asks for 37 - 4 - 4 - ... (9 times). The solution writes one line per step, the running
value and the steps still to go, both as two digits: ``33,08;29,07;...;01,00``. The count follows a
truncated power law (P(k) ~ k^-1.5, 2 <= k <= 60: median 5 steps, one problem in a hundred takes 55
or more), so response lengths (6 tokens per step) have the long tail of real reasoning rollouts.

Fixed widths are deliberate: every line is computed from the previous line at a fixed distance and
from the prompt's step (a unique operator token), so a transformer of half a million parameters
learns the task from a few minutes of CPU training, while a slip anywhere in a long chain still
loses the answer: the pass rate falls with k, which is what RL then improves. Samples of one prompt
that are right are identical, which the drafter's per-prompt history predicts.

Problems are a pure function of (seed, index) through Python's Mersenne Twister, identical on every
platform and Python version, so a prompt set is named by its seed alone.
"""

from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass
from typing import List, Sequence

MIN_STEPS = 2
MAX_STEPS = 60
STEP_EXPONENT = 1.5  # P(k) proportional to k^-1.5 for MIN_STEPS <= k <= MAX_STEPS
MODULUS = 100
_PROMPT = re.compile(r"(\d\d)([+-])([1-9])\*(\d\d)=")


def _step_cdf() -> List[float]:
    weights = [k ** -STEP_EXPONENT for k in range(MIN_STEPS, MAX_STEPS + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    cdf[-1] = 1.0
    return cdf


_CDF = _step_cdf()


@dataclass(frozen=True)
class Problem:
    """``start`` in [0, 99], ``op`` '+' or '-', ``digit`` in [1, 9], ``steps`` = k in [1, 99]."""

    start: int
    op: str
    digit: int
    steps: int

    @property
    def prompt(self) -> str:
        return f"{self.start:02d}{self.op}{self.digit}*{self.steps:02d}="

    def values(self) -> List[int]:
        """Running values after each step (the last one is the answer)."""
        d = self.digit if self.op == "+" else -self.digit
        return [(self.start + d * i) % MODULUS for i in range(1, self.steps + 1)]

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def solution_lines(self) -> List[str]:
        return [f"{v:02d},{self.steps - i:02d}" for i, v in enumerate(self.values(), 1)]

    @property
    def solution(self) -> str:
        """The response text a perfect policy writes (without the end-of-sequence token)."""
        return ";".join(self.solution_lines())


def generate(seed: int, index: int, min_steps: int = MIN_STEPS, max_steps: int = MAX_STEPS) -> Problem:
    """Problem number ``index`` of the set named ``seed``; the step count is drawn from the power law
    and clipped to [min_steps, max_steps]."""
    if not 1 <= min_steps <= max_steps <= 99:
        raise ValueError(f"need 1 <= min_steps <= max_steps <= 99, got {min_steps}, {max_steps}")
    rng = random.Random(seed * 1_000_003 + index)
    k = MIN_STEPS + bisect.bisect_left(_CDF, rng.random())
    k = min(max(k, min_steps), max_steps)
    return Problem(rng.randint(0, MODULUS - 1), "+" if rng.random() < 0.5 else "-", rng.randint(1, 9), k)


def problems(seed: int, count: int, start: int = 0, **kw) -> List[Problem]:
    return [generate(seed, i, **kw) for i in range(start, start + count)]


def parse_prompt(text: str) -> Problem:
    """Inverse of ``Problem.prompt``; raises ValueError naming what is wrong."""
    m = _PROMPT.fullmatch(text)
    if not m or int(m.group(4)) < 1:
        raise ValueError(f"prompt {text!r} is not of the form NN+D*KK= (two-digit start, + or -, digit 1-9, "
                         "two-digit count >= 1)")
    return Problem(int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))


def step_distribution() -> Sequence[float]:
    """P(k) for k = MIN_STEPS..MAX_STEPS of the default draw (before clipping)."""
    prev, out = 0.0, []
    for c in _CDF:
        out.append(c - prev)
        prev = c
    return out
