"""Request parameters under vLLM's names, checked strictly before anything is sent.

A trainer written against vLLM's ``SamplingParams`` should port by renaming nothing, so the names,
defaults and meanings follow vLLM where longtail supports the feature (``max_tokens``,
``stop_token_ids`` added to the checkpoint's EOS ids, ``ignore_eos``, ``min_p``, ...). Everything
else is refused by name, never ignored: a misspelt name gets the closest valid one, a vLLM
feature longtail does not have (penalties, stop strings, logit_bias, ...) gets an explanation,
unless its value is vLLM's neutral default, which changes nothing. Python's loose typing is the
other hazard: nothing here casts silently (a float is not a token count, True is not a token id,
2**33 does not wrap to 0). Value ranges (top_p in (0, 1], n >= 1, ...) are the worker's to check:
it has one validator for every client.
"""

from __future__ import annotations

import difflib
import numbers
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from longtail.protocol import WorkerError

INT32_LIMIT = 2**31


class InvalidRequest(WorkerError, ValueError):
    """A SUBMIT refused by the client before it was sent, with the code the worker gives the same
    fault (``INVALID_REQUEST``): one ``except WorkerError`` catches either place of refusal."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_REQUEST", message, None, "SUBMIT")


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r} ({type(v).__name__})")
    return int(v)


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {v!r} ({type(v).__name__})")
    return float(v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r} ({type(v).__name__})")
    return bool(v)


def _optional_int(name: str, v: Any) -> Optional[int]:
    return None if v is None else _int(name, v)


def _optional_uint64(name: str, v: Any) -> Optional[int]:
    if v is None:
        return None
    v = _int(name, v)
    if not 0 <= v < 2**64:
        raise InvalidRequest(f"{name} = {v} is outside the uint64 range [0, 2**64)")
    return v


LOGPROBS_MODES = ("raw", "processed")
#: vLLM's engine-level spellings of the same two modes; its *_logits modes return no logprob.
_VLLM_LOGPROBS_MODES = {"raw_logprobs": "raw", "processed_logprobs": "processed"}


def _logprobs_mode(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{name} must be one of {', '.join(LOGPROBS_MODES)}, got {v!r} ({type(v).__name__})")
    v = _VLLM_LOGPROBS_MODES.get(v, v)
    if v in ("raw_logits", "processed_logits"):
        raise ValueError(f"{name}={v!r} is not supported by longtail: batches carry the sampled token's "
                         "logprob, never logits")
    if v not in LOGPROBS_MODES:
        raise ValueError(f"{name}={v!r} is not one of {', '.join(LOGPROBS_MODES)}{suggest(v, LOGPROBS_MODES)}")
    return v


def token_ids(name: str, value: Any, vocab_size: Optional[int] = None) -> np.ndarray:
    """``value`` as an int32 array of token ids, each an integer in [0, vocab_size) (or in the
    int32 range when the vocabulary is unknown). Lists may hold Python or numpy integers; arrays and
    tensors must have an integer dtype. Floats, booleans and out-of-range values raise."""
    limit = INT32_LIMIT if vocab_size is None else int(vocab_size)
    where = "the vocabulary [0, %d)" % limit if vocab_size is not None else "the token id range [0, 2**31)"
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of token ids, got a {type(value).__name__}"
                        " (text goes in prompt=... with a tokenizer)")
    if isinstance(value, (list, tuple, range)):
        for i, x in enumerate(value):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
                raise TypeError(f"{name}[{i}] = {x!r} is not an integer token id ({type(x).__name__})")
            if not 0 <= x < limit:
                raise InvalidRequest(f"{name}[{i}] = {x} is outside {where}")
        return np.asarray(value, dtype=np.int64).astype("<i4") if len(value) else np.zeros(0, "<i4")
    if not hasattr(value, "__array__") and not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a sequence of token ids, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise TypeError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, "<i4")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= limit))
    if bad.size:
        i = int(bad[0])
        raise InvalidRequest(f"{name}[{i}] = {int(arr[i])} is outside {where}")
    return np.ascontiguousarray(arr, dtype="<i4")


def _token_list(name: str, v: Any) -> Tuple[int, ...]:
    if v is None:
        return ()
    return tuple(int(x) for x in token_ids(name, v))


class _Param:
    def __init__(self, default: Any, convert: Callable[[str, Any], Any], doc: str) -> None:
        self.default, self.convert, self.doc = default, convert, doc


#: Every supported request parameter: default and meaning (vLLM's where vLLM has the name).
PARAMS: Dict[str, _Param] = {
    "n": _Param(1, _int, "samples in the group (>= 1)"),
    "temperature": _Param(1.0, _float, "softmax temperature (>= 0; 0 = greedy)"),
    "top_p": _Param(1.0, _float, "nucleus cut, in (0, 1] (1 = off)"),
    "top_k": _Param(0, _int, "keep the k most likely tokens (-1 or 0 = off)"),
    "min_p": _Param(0.0, _float, "drop tokens less likely than min_p x the most likely one, in [0, 1] (0 = off)"),
    "max_tokens": _Param(256, _optional_int, "most tokens generated per sample (>= 1; None = up to the "
                                             "model's context); alias max_new_tokens"),
    "min_tokens": _Param(0, _int, "stop tokens (EOS, stop_token_ids) are not sampled before this many tokens"),
    "stop_token_ids": _Param((), _token_list, "tokens that end a sample, added to the checkpoint's EOS ids"),
    "ignore_eos": _Param(False, _bool, "do not stop at the checkpoint's EOS ids (stop_token_ids still stop)"),
    "seed": _Param(None, _optional_uint64, "sampling seed, uint64 (None = the worker's default, 0)"),
    "sample_key": _Param(None, _optional_uint64, "longtail: RNG stream key of a seeded group's samples, uint64 "
                                                 "(None = a hash of group_id); one seed and key = alike samples"),
    "logprobs_mode": _Param("raw", _logprobs_mode, "behaviour logprobs: 'raw' (log softmax(logits / T)) or "
                                                   "'processed' (the distribution actually sampled from)"),
    "stop_tokens": _Param((), _token_list, "longtail: the EOS set itself, replacing the checkpoint's "
                                           "(empty = the checkpoint's EOS ids)"),
}

ALIASES: Dict[str, str] = {"max_new_tokens": "max_tokens"}


def _neutral(*values: Any) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if v is None or (isinstance(v, (list, tuple, dict, str, set)) and len(v) == 0):
            return True
        return any(v == x for x in values if x is not None)
    return check


#: vLLM parameters longtail does not implement: accepted only at vLLM's neutral value (a no-op),
#: refused with the reason otherwise.
UNSUPPORTED: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "presence_penalty": (_neutral(0), "penalties are not implemented"),
    "frequency_penalty": (_neutral(0), "penalties are not implemented"),
    "repetition_penalty": (_neutral(1), "penalties are not implemented"),
    "logit_bias": (_neutral(), "logit biases are not implemented"),
    "allowed_token_ids": (_neutral(), "restricting the vocabulary is not implemented"),
    "bad_words": (_neutral(), "bad words are not implemented"),
    "stop": (_neutral(), "stop strings need detokenization on the worker; use stop_token_ids"),
    "include_stop_str_in_output": (_neutral(False), "stop strings are not implemented"),
    "logprobs": (_neutral(0), "the sampled token's logprob is always returned (behaviour_logprobs); "
                              "top-N alternatives are not"),
    "prompt_logprobs": (_neutral(), "prompt logprobs are not returned"),
    "best_of": (_neutral(1), "best_of is not implemented; every sample is returned"),  # or == n
    "use_beam_search": (_neutral(False), "beam search is not implemented"),
    "length_penalty": (_neutral(1), "beam search is not implemented"),
    "early_stopping": (_neutral(False), "beam search is not implemented"),
    "logits_processors": (_neutral(), "custom logits processors cannot run in the worker"),
    "guided_decoding": (_neutral(), "structured output is not implemented"),
    "structured_outputs": (_neutral(), "structured output is not implemented"),
    "truncate_prompt_tokens": (_neutral(), "prompts are never truncated; the worker refuses a prompt "
                                           "that does not fit its context"),
    "spaces_between_special_tokens": (_neutral(True), "detokenization options other than "
                                                     "skip_special_tokens are not implemented"),
    "extra_args": (_neutral(), "extra_args are not interpreted"),
    # Delivery modes of vLLM's engine, meaningless for whole trajectories: any value is a no-op.
    "output_kind": (lambda v: True, ""),
    # response_text is decoded (special tokens skipped) whenever the Client has a tokenizer;
    # detokenize=False (verl's setting) only means the caller does not need it.
    "detokenize": (lambda v: isinstance(v, bool), "detokenize must be True or False"),
    "skip_special_tokens": (_neutral(True), "response_text always skips special tokens; decode "
                                            "response_tokens yourself for other options"),
}


def suggest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_params(kwargs: Mapping[str, Any], where: str, other_names: Sequence[str] = ()) -> Dict[str, Any]:
    """Validated supported parameters from ``kwargs`` (aliases resolved, defaults not filled in).
    Unknown names raise TypeError with a suggestion; unsupported vLLM features with an effective
    value raise ValueError; ``other_names`` are further valid names the caller handles (listed in
    suggestions only)."""
    out: Dict[str, Any] = {}
    for key, value in kwargs.items():
        name = ALIASES.get(key, key)
        if name in PARAMS:
            if name in out:
                raise TypeError(f"{where}: {key} given twice (max_new_tokens is an alias of max_tokens)")
            out[name] = PARAMS[name].convert(name, value)
        elif name in UNSUPPORTED:
            ok, why = UNSUPPORTED[name]
            # vLLM < 0.10 sets best_of = n when unset: n samples, none discarded, a no-op here.
            if not ok(value) and not (name == "best_of" and value == kwargs.get("n", 1)):
                raise ValueError(f"{where}: {name}={value!r} is not supported by longtail: {why}")
        else:
            valid = list(PARAMS) + list(ALIASES) + list(UNSUPPORTED) + list(other_names)
            raise TypeError(f"{where}: unknown parameter {key!r}{suggest(key, valid)}")
    return out


def params_of(obj: Any) -> Dict[str, Any]:
    """The request parameters of a mapping or of an object with attributes (such as vLLM's
    ``SamplingParams``): every known name it has, supported or not, so that a non-neutral
    unsupported setting is refused rather than dropped."""
    if isinstance(obj, Mapping):
        return dict(obj)
    known = list(PARAMS) + list(UNSUPPORTED)
    return {k: getattr(obj, k) for k in known if hasattr(obj, k)}


class SamplingParams:
    """vLLM's ``SamplingParams`` for longtail: the same names and defaults where supported, the
    same refusals as Group. Pass it as ``Group(..., sampling_params=sp)`` (a vLLM SamplingParams
    object or a plain mapping work too)."""

    def __init__(self, **params: Any) -> None:
        values = {k: p.default for k, p in PARAMS.items()}
        values.update(check_params(params, "SamplingParams"))
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only called for names not set in __init__
        if name in ALIASES:
            return self.__dict__[ALIASES[name]]
        raise AttributeError(f"SamplingParams has no parameter {name!r}{suggest(name, PARAMS)}")

    def __setattr__(self, name: str, value: Any) -> None:
        name = ALIASES.get(name, name)
        if name not in PARAMS:
            raise AttributeError(f"SamplingParams has no parameter {name!r}{suggest(name, PARAMS)}")
        self.__dict__[name] = PARAMS[name].convert(name, value)

    def __repr__(self) -> str:
        return "SamplingParams(" + ", ".join(f"{k}={self.__dict__[k]!r}" for k in PARAMS) + ")"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, SamplingParams) and self.__dict__ == other.__dict__
