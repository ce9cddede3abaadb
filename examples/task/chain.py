"""Chain arithmetic: the verifiable task with a long tail that the example policy is trained on.

A problem is a start value and k single-digit steps, e.g. ``17+5-8+9=``. The solution collapses the
first step per line until one number is left (``22-8+9;14+9;23``), so a correct answer needs k
reasoning lines and the response length grows as ~k^2: the step count follows a truncated power law
(most problems take 2-4 steps, one in a hundred takes about 20), which gives RL rounds the long tail
of response lengths that longtail exists for. Every running value stays in [0, 99] (a step that
would leave that range flips its sign), so each line is a two-digit plus or minus one digit: easy
to learn per line, while the chance of a slip grows with the line count. Each line also repeats the
previous line's tail: copy-heavy text that suffix drafting can predict.

Problems are a pure function of (seed, index) through Python's Mersenne Twister, identical on every
platform and Python version, so a prompt set is named by its seed alone.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import List, Sequence, Tuple

MIN_STEPS = 2
MAX_STEPS = 20
STEP_EXPONENT = 1.5  # P(k) proportional to k^-1.5 for MIN_STEPS <= k <= MAX_STEPS
MAX_VALUE = 99


def _step_cdf(min_steps: int, max_steps: int, exponent: float) -> List[float]:
    weights = [k ** -exponent for k in range(min_steps, max_steps + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    cdf[-1] = 1.0
    return cdf


_CDF = _step_cdf(MIN_STEPS, MAX_STEPS, STEP_EXPONENT)


@dataclass(frozen=True)
class Problem:
    """``steps`` is a list of (op, digit) with op '+' or '-'; ``start`` and every running value are
    in [0, MAX_VALUE]."""

    start: int
    steps: Tuple[Tuple[str, int], ...]

    @property
    def prompt(self) -> str:
        return str(self.start) + "".join(f"{op}{d}" for op, d in self.steps) + "="

    def values(self) -> List[int]:
        """Running values after each step (the last one is the answer)."""
        out, v = [], self.start
        for op, d in self.steps:
            v = v + d if op == "+" else v - d
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def solution_lines(self) -> List[str]:
        vals = self.values()
        rest = [f"{op}{d}" for op, d in self.steps]
        return [str(v) + "".join(rest[i + 1:]) for i, v in enumerate(vals)]

    @property
    def solution(self) -> str:
        """The response text a perfect policy writes (without the end-of-sequence token)."""
        return ";".join(self.solution_lines())


def generate(seed: int, index: int, min_steps: int = MIN_STEPS, max_steps: int = MAX_STEPS) -> Problem:
    """Problem number ``index`` of the set named ``seed``. Steps are drawn from the default power law
    and clipped to [min_steps, max_steps]."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    rng = random.Random(seed * 1_000_003 + index)
    k = MIN_STEPS + bisect.bisect_left(_CDF, rng.random())
    k = min(max(k, min_steps), max_steps)
    v = rng.randint(0, MAX_VALUE)
    start = v
    steps = []
    for _ in range(k):
        d = rng.randint(1, 9)
        op = "+" if rng.random() < 0.5 else "-"
        if op == "+" and v + d > MAX_VALUE:
            op = "-"
        elif op == "-" and v - d < 0:
            op = "+"
        v = v + d if op == "+" else v - d
        steps.append((op, d))
    return Problem(start, tuple(steps))


def problems(seed: int, count: int, start: int = 0, **kw) -> List[Problem]:
    return [generate(seed, i, **kw) for i in range(start, start + count)]


def parse_prompt(text: str) -> Problem:
    """Inverse of ``Problem.prompt``; raises ValueError naming what is wrong."""
    if not text.endswith("="):
        raise ValueError(f"prompt {text!r} does not end with '='")
    body = text[:-1]
    i = 0
    while i < len(body) and body[i].isdigit():
        i += 1
    if i == 0 or i > 2:
        raise ValueError(f"prompt {text!r} does not start with a number in [0, {MAX_VALUE}]")
    start = int(body[:i])
    steps = []
    rest = body[i:]
    if len(rest) % 2 or not rest:
        raise ValueError(f"prompt {text!r}: steps must be an operator and one digit each")
    for j in range(0, len(rest), 2):
        op, d = rest[j], rest[j + 1]
        if op not in "+-" or not d.isdigit() or d == "0":
            raise ValueError(f"prompt {text!r}: bad step {rest[j:j + 2]!r}")
        steps.append((op, int(d)))
    return Problem(start, tuple(steps))


def step_distribution() -> Sequence[float]:
    """P(k) for k = MIN_STEPS..MAX_STEPS of the default draw (before clipping)."""
    prev = 0.0
    out = []
    for c in _CDF:
        out.append(c - prev)
        prev = c
    return out
