"""Chain arithmetic, the verifiable long-tail task of longtail's end-to-end example: a seeded problem
generator (chain.py), its checker (checker.py) and the character tokenizer saved with the trained
policy (tokenizer.py). Pure Python: no torch, no network."""

from examples.task.chain import MAX_STEPS, MIN_STEPS, Problem, generate, parse_prompt, problems
from examples.task.checker import Verdict, check_ids, check_text
from examples.task.tokenizer import CharTokenizer, prompt_ids, prompt_text

__all__ = ["MAX_STEPS", "MIN_STEPS", "CharTokenizer", "Problem", "Verdict", "check_ids", "check_text",
           "generate", "parse_prompt", "problems", "prompt_ids", "prompt_text"]
