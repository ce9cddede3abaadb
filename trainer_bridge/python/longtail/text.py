"""Text in and out for people and scripts that think in strings; the worker sees token ids only.

A tokenizer is any object with ``encode(text) -> ids`` and ``decode(ids, skip_special_tokens=...)``
(and ``apply_chat_template`` for chat messages), such as transformers' ``AutoTokenizer``. A path
loads ``AutoTokenizer.from_pretrained(path)`` from the model directory (the optional ``text``
extra: ``pip install 'longtail[text]'``). Prompts are tokenized as vLLM tokenizes them: plain text
with the tokenizer's special tokens (``add_special_tokens=True``), chat messages through the
chat template with the generation prompt appended.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Union


def load_tokenizer(source: Any) -> Any:
    """A tokenizer object as given, or ``AutoTokenizer.from_pretrained(source)`` for a path."""
    if isinstance(source, (str, os.PathLike)):
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ImportError("loading a tokenizer from a path needs transformers: "
                              "pip install 'longtail[text]'") from exc
        return AutoTokenizer.from_pretrained(os.fspath(source))
    for method in ("encode", "decode"):
        if not callable(getattr(source, method, None)):
            raise TypeError(f"tokenizer {type(source).__name__} has no {method}() method")
    return source


def _ids(out: Any, what: str) -> List[int]:
    # transformers returns a list, or a BatchEncoding / dict with input_ids, depending on version.
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    if out and isinstance(out[0], list):  # a batch of one
        if len(out) != 1:
            raise ValueError(f"{what} gave {len(out)} sequences, expected one")
        out = out[0]
    return list(out)


def encode_prompt(tokenizer: Any, prompt: Optional[str] = None,
                  messages: Optional[Sequence[Any]] = None) -> List[int]:
    """Token ids of a text prompt or of chat messages (exactly one of the two)."""
    if prompt is not None:
        return _ids(tokenizer.encode(prompt), "tokenizer.encode")
    if not callable(getattr(tokenizer, "apply_chat_template", None)):
        raise TypeError(f"tokenizer {type(tokenizer).__name__} has no apply_chat_template(): "
                        "it cannot turn chat messages into a prompt")
    return _ids(tokenizer.apply_chat_template(list(messages or ()), tokenize=True,
                                              add_generation_prompt=True), "apply_chat_template")


def decode(tokenizer: Any, ids: Union[Sequence[int], Any]) -> str:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return tokenizer.decode(list(ids), skip_special_tokens=True)
