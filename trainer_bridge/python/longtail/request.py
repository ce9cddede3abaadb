"""What a trainer submits: :class:`Group`, one prompt sampled ``n`` times, under vLLM's parameter
names (longtail/params.py), and its SUBMIT form for a given worker.

Checks happen where the mistake is made: names and types when the Group is built, the vocabulary
and the worker's features when it is submitted (the HELLO says what the worker serves). A worker
that predates a parameter would ignore its key (PROTOCOL.md: unknown keys are ignored), so a group
that uses one the worker does not list among its capabilities is refused here, by name.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from longtail.params import ALIASES, PARAMS, InvalidRequest, check_params, params_of, token_ids
from longtail.text import encode_prompt

_OWN_NAMES = ("group_id", "prompt_tokens", "prompt_token_ids", "prompt", "messages", "sampling_params",
              "metadata", "prompt_id")

#: Parameters newer than protocol version 1's first workers: sent only when set off their default,
#: and then only with the worker's consent (the capability of the same name in its HELLO, or the
#: one named in CAPABILITY).
GATED = {
    "min_p": lambda v: v != 0.0,
    "min_tokens": lambda v: v != 0,
    "ignore_eos": lambda v: v,
    "stop_token_ids": lambda v: len(v) > 0,
    "sample_key": lambda v: v is not None,
    "logprobs_mode": lambda v: v != "raw",
}
CAPABILITY = {"logprobs_mode": "logprobs_mode:processed"}


class Group:
    """One prompt sampled ``n`` times.

    The prompt is ``prompt_tokens`` (alias ``prompt_token_ids``: integer token ids), or ``prompt``
    (text) or ``messages`` (chat) when the Client has a tokenizer. Request parameters are vLLM's:
    ``n, temperature, top_p, top_k, min_p, max_tokens (alias max_new_tokens), min_tokens,
    stop_token_ids, ignore_eos, seed, logprobs_mode`` and longtail's ``sample_key`` (the RNG stream
    key of a seeded group: two groups with one seed and one key sample alike), given as keywords or as ``sampling_params`` (a mapping or
    any object with those attributes, e.g. a vLLM ``SamplingParams``); see ``longtail.params.PARAMS``
    for defaults and meanings. ``metadata`` bytes are passed through untouched to every trajectory
    of the group; ``prompt_id`` links rollouts of one prompt across rounds (default: group_id).
    """

    def __init__(self, group_id: str, prompt_tokens: Any = None, *, prompt_token_ids: Any = None,
                 prompt: Optional[str] = None, messages: Optional[Sequence[Any]] = None,
                 sampling_params: Any = None, metadata: Union[bytes, bytearray, memoryview] = b"",
                 prompt_id: str = "", **params: Any) -> None:
        if not isinstance(group_id, str):
            raise TypeError(f"group_id must be a string, got {group_id!r}")
        where = f"group {group_id!r}"
        if prompt_token_ids is not None:
            if prompt_tokens is not None:
                raise TypeError(f"{where}: prompt_token_ids is an alias of prompt_tokens; give one")
            prompt_tokens = prompt_token_ids
        given = [k for k, v in (("prompt_tokens", prompt_tokens), ("prompt", prompt), ("messages", messages))
                 if v is not None]
        if len(given) != 1:
            raise TypeError(f"{where}: give exactly one of prompt_tokens, prompt (text) or messages (chat), "
                            f"got {', '.join(given) or 'none'}")
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"{where}: prompt must be text (token ids go in prompt_tokens), got {type(prompt).__name__}")
        if messages is not None and (isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence)):
            raise TypeError(f"{where}: messages must be a list of chat messages, got {type(messages).__name__}")
        if not isinstance(metadata, (bytes, bytearray, memoryview)):
            raise TypeError(f"{where}: metadata must be bytes, got {type(metadata).__name__}")
        if not isinstance(prompt_id, str):
            raise TypeError(f"{where}: prompt_id must be a string, got {prompt_id!r}")
        merged: Dict[str, Any] = {}
        if sampling_params is not None:
            merged = params_of(sampling_params)
        for k in params:
            if ALIASES.get(k, k) in {ALIASES.get(m, m) for m in merged}:
                raise TypeError(f"{where}: {k} given both as a keyword and in sampling_params")
        merged.update(params)
        self.group_id = group_id
        self.prompt_id = prompt_id
        self.metadata = bytes(metadata)
        self.prompt = prompt
        self.messages = list(messages) if messages is not None else None
        self.prompt_tokens: Optional[np.ndarray] = \
            token_ids(f"{where}: prompt_tokens", prompt_tokens) if prompt_tokens is not None else None
        self._params = {k: p.default for k, p in PARAMS.items()}
        self._params.update(check_params(merged, where, _OWN_NAMES))

    @staticmethod
    def coerce(g: Union["Group", Mapping[str, Any]]) -> "Group":
        if isinstance(g, Group):
            return g
        if not isinstance(g, Mapping):
            raise TypeError(f"a group is a Group or a mapping of its fields, got {type(g).__name__}")
        return Group(**dict(g))

    def params(self) -> Dict[str, Any]:
        """Every request parameter with its value (defaults included)."""
        return dict(self._params)

    def to_wire(self, model: Optional[Mapping[str, Any]] = None, capabilities: Optional[Sequence[str]] = None,
                tokenizer: Any = None) -> Dict[str, Any]:
        """The group's SUBMIT entry (PROTOCOL.md), checked against the worker when its HELLO
        ``model`` map and ``capabilities`` are given: token ids inside its vocabulary, every
        parameter in use one the worker serves, ``max_tokens=None`` resolved to its context. A
        text or chat prompt is tokenized with ``tokenizer``."""
        where = f"group {self.group_id!r}"
        vocab = model.get("vocab_size") if model else None
        if self.prompt_tokens is not None:
            prompt_tokens = token_ids(f"{where}: prompt_tokens", self.prompt_tokens, vocab)
        elif tokenizer is None:
            raise TypeError(f"{where} has a text prompt: give the Client a tokenizer (Client(..., tokenizer=...))")
        else:
            prompt_tokens = token_ids(f"{where}: tokenized prompt",
                                      encode_prompt(tokenizer, prompt=self.prompt, messages=self.messages), vocab)
        p = self._params
        if vocab is not None:
            token_ids(f"{where}: stop_token_ids", list(p["stop_token_ids"]), vocab)
            token_ids(f"{where}: stop_tokens", list(p["stop_tokens"]), vocab)
        if capabilities is not None:
            for name, used in GATED.items():
                cap = CAPABILITY.get(name, name)
                if used(p[name]) and cap not in capabilities:
                    raise InvalidRequest(f"{where}: {name}={p[name]!r} is not supported by this worker "
                                         f"(its HELLO capabilities do not list {cap!r}; it is older than the "
                                         "parameter or its backend lacks it)")
        max_tokens = p["max_tokens"]
        if max_tokens is None:
            context = model.get("max_position_embeddings") if model else None
            if context is None:
                raise TypeError(f"{where}: max_tokens=None (up to the context) needs the worker's context length; "
                                "submit through a Client or give max_tokens")
            max_tokens = max(1, int(context) - int(prompt_tokens.size))
        sampling: Dict[str, Any] = {"temperature": p["temperature"], "top_k": p["top_k"], "top_p": p["top_p"]}
        if p["seed"] is not None:
            sampling["seed"] = p["seed"]
        if GATED["min_p"](p["min_p"]):
            sampling["min_p"] = p["min_p"]
        for name in ("min_tokens", "logprobs_mode"):  # sampling fields on the wire (PROTOCOL.md)
            if GATED[name](p[name]):
                sampling[name] = p[name]
        wire: Dict[str, Any] = {
            "group_id": self.group_id,
            "prompt_id": self.prompt_id,
            "prompt_tokens": prompt_tokens,
            "n": p["n"],
            "sampling": sampling,
            "max_new_tokens": max_tokens,
            "stop_tokens": list(p["stop_tokens"]),
            "metadata": self.metadata,
        }
        for name in ("ignore_eos", "stop_token_ids", "sample_key"):
            if GATED[name](p[name]):
                wire[name] = list(p[name]) if name == "stop_token_ids" else p[name]
        return wire

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Group):
            return NotImplemented
        same_tokens = (self.prompt_tokens is None and other.prompt_tokens is None) or (
            self.prompt_tokens is not None and other.prompt_tokens is not None
            and np.array_equal(self.prompt_tokens, other.prompt_tokens))
        return same_tokens and (self.group_id, self.prompt_id, self.metadata, self.prompt, self.messages, self._params) == \
            (other.group_id, other.prompt_id, other.metadata, other.prompt, other.messages, other._params)

    def __repr__(self) -> str:
        prompt = (f"prompt_tokens=<{self.prompt_tokens.size} ids>" if self.prompt_tokens is not None
                  else f"prompt={self.prompt!r}" if self.prompt is not None else f"messages=<{len(self.messages)}>")
        changed = ", ".join(f"{k}={v!r}" for k, v in self._params.items() if v != PARAMS[k].default)
        return f"Group({self.group_id!r}, {prompt}{', ' + changed if changed else ''})"


def _param_property(name: str) -> property:
    def get(self: Group) -> Any:
        return self._params[name]

    def set_(self: Group, value: Any) -> None:
        self._params[name] = PARAMS[name].convert(name, value)

    return property(get, set_, doc=PARAMS[name].doc)


for _name in PARAMS:
    setattr(Group, _name, _param_property(_name))
for _alias, _target in ALIASES.items():
    setattr(Group, _alias, _param_property(_target))


def submit_entries(groups: Sequence[Any], model: Optional[Mapping[str, Any]],
                   capabilities: Optional[Sequence[str]], tokenizer: Any = None) -> List[Dict[str, Any]]:
    """SUBMIT entries for ``groups`` (Groups or mappings), tokenized and checked for one worker."""
    return [Group.coerce(g).to_wire(model, capabilities, tokenizer) for g in groups]
