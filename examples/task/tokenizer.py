"""The fixed character tokenizer of the chain-arithmetic task, saved beside the model.

One token per character of the task's alphabet plus four specials. It is written as an HF
``tokenizer.json`` (a WordLevel model over single characters) with a ``tokenizer_config.json``, so
``transformers.AutoTokenizer.from_pretrained(checkpoint)`` loads the same mapping a verl or vLLM user
would look for; this module reads and writes that file without the tokenizers library, so the task,
its checker and the demo's scoring run without torch or transformers. Ids 0-3 are the specials; the
bos/eos ids must equal config.json's ``bos_token_id`` / ``eos_token_id`` (checked on load when a
config is given).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Dict, Iterable, List, Optional, Sequence, Union

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
ALPHABET = "0123456789+-*=,;"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Embedding rows of the model: the alphabet plus specials rounded up, so ids stay stable if the
# alphabet ever grows by a few symbols.
MODEL_VOCAB_SIZE = 32


class CharTokenizer:
    def __init__(self, vocab: Optional[Dict[str, int]] = None) -> None:
        if vocab is None:
            vocab = {s: i for i, s in enumerate(SPECIALS)}
            vocab.update({c: len(SPECIALS) + i for i, c in enumerate(ALPHABET)})
        for s in SPECIALS:
            if s not in vocab:
                raise ValueError(f"tokenizer vocabulary lacks the special token {s!r}")
        ids = sorted(vocab.values())
        if len(set(ids)) != len(ids):
            raise ValueError("tokenizer vocabulary maps two tokens to one id")
        self.vocab = dict(vocab)
        self.inverse = {i: t for t, i in vocab.items()}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (vocab[s] for s in SPECIALS)

    @property
    def size(self) -> int:
        return max(self.inverse) + 1

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> List[int]:
        out = [self.bos_id] if bos else []
        for ch in text:
            if ch not in self.vocab or ch in SPECIALS:
                raise ValueError(f"character {ch!r} is not in the task alphabet {ALPHABET!r}")
            out.append(self.vocab[ch])
        if eos:
            out.append(self.eos_id)
        return out

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        """Text of the ids; specials are dropped, unknown ids become U+FFFD so a checker sees a
        wrong answer rather than an exception."""
        chars = []
        for i in ids:
            i = int(i)
            if i == self.eos_id and stop_at_eos:
                break
            tok = self.inverse.get(i)
            if tok in SPECIALS:
                continue
            chars.append("\ufffd" if tok is None else tok)
        return "".join(chars)

    # -------------------------------------------------------------- files
    def to_hf_json(self) -> Dict:
        added = [{"id": self.vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for s in SPECIALS]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            # Every character is its own pre-token; WordLevel then maps it to its id.
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated",
                              "invert": False},
            "post_processor": None,
            "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                      "unk_token": UNK},
        }

    def save(self, directory: Union[str, os.PathLike]) -> None:
        d = pathlib.Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / TOKENIZER_FILE).write_text(json.dumps(self.to_hf_json(), indent=1) + "\n")
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
                  "pad_token": PAD, "unk_token": UNK, "model_max_length": 1024, "clean_up_tokenization_spaces": False}
        (d / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Union[str, os.PathLike]) -> "CharTokenizer":
        """Reads ``tokenizer.json`` of a checkpoint directory; when config.json is there too, checks
        that its bos/eos ids and vocabulary size agree with the tokenizer."""
        d = pathlib.Path(directory)
        path = d / TOKENIZER_FILE
        try:
            data = json.loads(path.read_text())
            model = data["model"]
            if model.get("type") != "WordLevel":
                raise ValueError(f"model type {model.get('type')!r}, expected WordLevel")
            vocab = {str(k): int(v) for k, v in model["vocab"].items()}
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a chain-task tokenizer ({exc})") from exc
        tok = cls(vocab)
        cfg_path = d / "config.json"
        if cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            eos = cfg.get("eos_token_id")
            eos_ids = eos if isinstance(eos, list) else [eos]
            if cfg.get("bos_token_id") != tok.bos_id or tok.eos_id not in eos_ids:
                raise ValueError(f"{d}: config.json bos/eos ids {cfg.get('bos_token_id')}/{eos} differ from "
                                 f"the tokenizer's {tok.bos_id}/{tok.eos_id}")
            if int(cfg.get("vocab_size", 0)) < tok.size:
                raise ValueError(f"{d}: config.json vocab_size {cfg.get('vocab_size')} is smaller than the "
                                 f"tokenizer's {tok.size} ids")
        return tok


def prompt_ids(tok: CharTokenizer, prompt_text: str) -> List[int]:
    """Token ids of a prompt as the policy sees it: BOS + the problem text."""
    return tok.encode(prompt_text, bos=True)


def prompt_text(tok: CharTokenizer, ids: Sequence[int]) -> str:
    return tok.decode(ids, stop_at_eos=False)
