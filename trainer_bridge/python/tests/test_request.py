"""The request surface without a worker: vLLM's parameter names and refusals, strict token ids
(nothing silently cast), the checks against a worker's HELLO, text prompts through a tokenizer,
and the package version."""

from __future__ import annotations

import pathlib
import re

import msgpack
import numpy as np
import pytest

import longtail
from longtail import Group, InvalidRequest, SamplingParams, WorkerError
from longtail.protocol import encode_submit
from longtail.request import submit_entries

MODEL = {"vocab_size": 100, "max_position_embeddings": 64, "eos_token_ids": [2]}
ALL_CAPS = ["min_p", "min_tokens", "ignore_eos", "stop_token_ids"]


class CharTokenizer:
    """One token per character (id = 3 + code point % 90), enough to tell text paths apart."""

    def encode(self, text):
        return [3 + ord(c) % 90 for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i - 3) for i in ids if not (skip_special_tokens and i < 3))

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")
        return {"input_ids": self.encode(text)}  # newer transformers return a BatchEncoding


def sent(groups, model=MODEL, caps=ALL_CAPS, tokenizer=None):
    frames = encode_submit(1, submit_entries(groups, model, caps, tokenizer))
    return msgpack.unpackb(frames[0])["groups"], np.frombuffer(frames[1], "<i4").tolist()


def test_vllm_names_reach_the_wire():
    g = Group("a", [5, 6], n=4, temperature=0.7, top_p=0.9, top_k=-1, min_p=0.05, max_tokens=32, min_tokens=3,
              stop_token_ids=[7], ignore_eos=True, seed=42)
    (w,), tokens = sent([g])
    assert tokens == [5, 6]
    assert w["n"] == 4 and w["max_new_tokens"] == 32 and "min_tokens" not in w
    assert w["sampling"] == {"temperature": 0.7, "top_k": -1, "top_p": 0.9, "min_p": 0.05, "seed": 42, "min_tokens": 3}
    assert w["stop_token_ids"] == [7] and w["ignore_eos"] is True
    assert w["stop_tokens"] == []  # the checkpoint's EOS stays: stop_token_ids add to it
    # Defaults send nothing new, so an older worker sees exactly what it understands.
    (d,), _ = sent([Group("b", [5])], caps=[])
    assert set(d) == {"group_id", "prompt_id", "prompt_tokens", "n", "sampling", "max_new_tokens", "stop_tokens",
                      "metadata"} - {"prompt_tokens"} | {"prompt_len"}
    assert d["max_new_tokens"] == 256 and "seed" not in d["sampling"]


def test_max_new_tokens_stays_an_alias():
    g = Group("a", [1], max_new_tokens=9)
    assert g.max_tokens == 9 and g.max_new_tokens == 9
    g.max_new_tokens = 11
    assert g.max_tokens == 11
    with pytest.raises(TypeError, match="alias"):
        Group("a", [1], max_new_tokens=9, max_tokens=9)
    # max_tokens=None as in vLLM: up to the model's context
    (w,), _ = sent([Group("c", [1, 2, 3], max_tokens=None)])
    assert w["max_new_tokens"] == 64 - 3


def test_unknown_names_get_the_closest_valid_one():
    with pytest.raises(TypeError, match=r"unknown parameter 'max_token' \(did you mean max_tokens\?\)"):
        Group("a", [1], max_token=5)
    with pytest.raises(TypeError, match="did you mean stop_token_ids"):
        Group("a", [1], stop_tokens_ids=[3])
    with pytest.raises(TypeError, match="did you mean temperature"):
        Group.coerce({"group_id": "a", "prompt_tokens": [1], "temprature": 0.5})
    with pytest.raises(TypeError, match="unknown parameter 'frobnicate'"):
        Group("a", [1], frobnicate=1)


@pytest.mark.parametrize("name,value", [("presence_penalty", 0.5), ("frequency_penalty", -1.0),
                                        ("repetition_penalty", 1.1), ("logit_bias", {5: 1.0}), ("stop", ["\n"]),
                                        ("stop", "END"), ("bad_words", ["x"]), ("logprobs", 5), ("best_of", 4),
                                        ("use_beam_search", True), ("prompt_logprobs", 1),
                                        ("allowed_token_ids", [1, 2]), ("skip_special_tokens", False)])
def test_unsupported_vllm_parameters_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=f"{name}=.* is not supported by longtail"):
        Group("a", [1], **{name: value})


def test_vllm_neutral_values_are_accepted():
    g = Group("a", [1], n=8, presence_penalty=0.0, frequency_penalty=0, repetition_penalty=1.0, stop=[],
              logit_bias=None, logprobs=0, best_of=8, detokenize=False, skip_special_tokens=True, bad_words=[])
    assert g.n == 8 and g.params() == Group("a", [1], n=8).params()


class VllmLikeParams:
    """What vLLM's SamplingParams looks like from outside: every attribute, vLLM's defaults."""

    def __init__(self, **kw):
        self.n, self.best_of, self.temperature, self.top_p, self.top_k, self.min_p = 1, None, 1.0, 1.0, 0, 0.0
        self.presence_penalty = self.frequency_penalty = 0.0
        self.repetition_penalty = 1.0
        self.seed, self.stop, self.stop_token_ids, self.bad_words = None, [], [], []
        self.ignore_eos, self.max_tokens, self.min_tokens, self.logprobs = False, 16, 0, None
        self.prompt_logprobs, self.detokenize, self.skip_special_tokens = None, True, True
        self.spaces_between_special_tokens, self.logits_processors = True, None
        self.include_stop_str_in_output, self.truncate_prompt_tokens = False, None
        self.output_kind, self.guided_decoding, self.logit_bias, self.allowed_token_ids = object(), None, None, None
        self.extra_args = None
        self.__dict__.update(kw)


def test_a_vllm_sampling_params_object_ports_unchanged():
    g = Group("a", [1, 2], sampling_params=VllmLikeParams(n=8, temperature=0.6, top_p=0.95, max_tokens=512,
                                                          stop_token_ids=[9], seed=3))
    assert (g.n, g.temperature, g.top_p, g.max_tokens, g.stop_token_ids, g.seed) == (8, 0.6, 0.95, 512, (9,), 3)
    assert Group("b", [1], sampling_params=VllmLikeParams()).max_tokens == 16  # vLLM's default, as vLLM does
    with pytest.raises(ValueError, match="presence_penalty"):
        Group("a", [1], sampling_params=VllmLikeParams(presence_penalty=0.3))
    sp = SamplingParams(n=2, max_tokens=7, seed=1)
    assert Group("c", [1], sampling_params=sp).params() == Group("c", [1], n=2, max_tokens=7, seed=1).params()
    with pytest.raises(TypeError, match="both"):
        Group("c", [1], sampling_params=sp, n=3)
    with pytest.raises(AttributeError, match="did you mean top_p"):
        sp.top_pp = 0.5


@pytest.mark.parametrize("tokens,error,match", [
    ([1, 2**33], InvalidRequest, r"prompt_tokens\[1\] = 8589934592 is outside"),   # once became [1, 0]
    ([1.7, 2.2], TypeError, r"prompt_tokens\[0\] = 1.7 is not an integer"),         # once became [1, 2]
    ([1, True], TypeError, r"prompt_tokens\[1\] = True is not an integer"),          # once became [1, 1]
    ([3, -1], InvalidRequest, r"prompt_tokens\[1\] = -1 is outside"),
    (np.array([1.0, 2.0]), TypeError, "dtype float64"),
    (np.array([True, False]), TypeError, "dtype bool"),
    (np.array([1, 2**40], np.int64), InvalidRequest, r"prompt_tokens\[1\] = 1099511627776"),
    (np.array([[1, 2]]), TypeError, "one-dimensional"),
    ("hello", TypeError, "text goes in prompt="),
])
def test_token_ids_are_never_cast_silently(tokens, error, match):
    with pytest.raises(error, match=match):
        Group("a", tokens)


def test_other_fields_are_typed_strictly():
    for kw, match in [({"n": 2.0}, "n must be an integer"), ({"n": True}, "n must be an integer"),
                      ({"max_tokens": "8"}, "max_tokens must be an integer"),
                      ({"temperature": "hot"}, "temperature must be a number"),
                      ({"ignore_eos": 1}, "ignore_eos must be True or False"),
                      ({"stop_token_ids": [1.5]}, r"stop_token_ids\[0\] = 1.5"),
                      ({"metadata": "text"}, "metadata must be bytes")]:
        with pytest.raises(TypeError, match=match):
            Group("a", [1], **kw)
    g = Group("a", [np.int64(4), np.int32(5)], n=np.int64(2), temperature=np.float32(0.5))
    assert g.prompt_tokens.tolist() == [4, 5] and g.n == 2 and type(g.n) is int
    with pytest.raises(TypeError, match="exactly one of"):
        Group("a")
    with pytest.raises(TypeError, match="exactly one of"):
        Group("a", [1], prompt="x")


def test_token_ids_are_checked_against_the_workers_vocabulary():
    with pytest.raises(InvalidRequest) as e:
        sent([Group("ok", [1]), Group("oov", [1, 100, 3])])
    assert isinstance(e.value, WorkerError) and e.value.code == "INVALID_REQUEST"
    assert "group 'oov'" in e.value.message and "prompt_tokens[1] = 100 is outside the vocabulary [0, 100)" in e.value.message
    with pytest.raises(InvalidRequest, match=r"stop_token_ids\[0\] = 150"):
        sent([Group("s", [1], stop_token_ids=[150])])
    assert sent([Group("v", [99])])[1] == [99]
    assert sent([Group("u", [150])], model={})[1] == [150]  # vocabulary unknown: the worker checks


def test_parameters_the_worker_does_not_list_are_refused():
    for kw, name in [({"min_p": 0.1}, "min_p"), ({"min_tokens": 2}, "min_tokens"), ({"ignore_eos": True}, "ignore_eos"),
                     ({"stop_token_ids": [5]}, "stop_token_ids")]:
        with pytest.raises(InvalidRequest, match=f"{name}=.* is not supported by this worker"):
            sent([Group("a", [1], **kw)], caps=["rewards"])
        sent([Group("a", [1], **kw)], caps=[name])
    sent([Group("a", [1], min_p=0.0, min_tokens=0, ignore_eos=False, stop_token_ids=[])], caps=[])


def test_logprobs_mode_and_sample_key_reach_the_wire_only_when_set():
    caps = ["sample_key", "logprobs_mode:processed"]
    (w,), _ = sent([Group("a", [1], seed=7, sample_key=2**64 - 1, logprobs_mode="processed")], caps=caps)
    assert w["sample_key"] == 2**64 - 1 and "sample_key" not in w["sampling"]   # per group, beside n
    assert w["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 7, "logprobs_mode": "processed"}
    # The defaults (raw, the worker's hash of group_id) send nothing an older worker would ignore.
    (d,), _ = sent([Group("b", [1], logprobs_mode="raw", sample_key=None)], caps=[])
    assert "sample_key" not in d and "logprobs_mode" not in d["sampling"]
    # vLLM's engine-level spellings mean the same two modes; its logits modes have no logprob.
    assert Group("c", [1], logprobs_mode="processed_logprobs").logprobs_mode == "processed"
    assert Group("c", [1], logprobs_mode="raw_logprobs").logprobs_mode == "raw"
    with pytest.raises(ValueError, match="raw_logits.* not supported by longtail"):
        Group("c", [1], logprobs_mode="raw_logits")
    with pytest.raises(ValueError, match=r"'procesed' is not one of raw, processed \(did you mean processed\?\)"):
        Group("c", [1], logprobs_mode="procesed")
    with pytest.raises(TypeError, match="logprobs_mode must be one of"):
        Group("c", [1], logprobs_mode=1)
    for bad, error in [(-1, InvalidRequest), (2**64, InvalidRequest), (1.5, TypeError), (True, TypeError)]:
        with pytest.raises(error, match="sample_key"):
            Group("c", [1], sample_key=bad)
    with pytest.raises(InvalidRequest, match="seed = -3 is outside the uint64 range"):
        Group("c", [1], seed=-3)


def test_logprobs_mode_and_sample_key_need_the_workers_capability():
    with pytest.raises(InvalidRequest, match="logprobs_mode='processed' .* do not list 'logprobs_mode:processed'"):
        sent([Group("a", [1], logprobs_mode="processed")], caps=["sample_key"])
    with pytest.raises(InvalidRequest, match="sample_key=5 .* do not list 'sample_key'"):
        sent([Group("a", [1], sample_key=5)], caps=["logprobs_mode:processed"])
    assert SamplingParams(logprobs_mode="processed", sample_key=3).sample_key == 3


def test_text_and_chat_prompts_go_through_the_tokenizer():
    tok = CharTokenizer()
    (w1, w2), tokens = sent([Group("t", prompt="hi"), Group("c", messages=[{"role": "user", "content": "yo"}])],
                            tokenizer=tok)
    assert w1["prompt_len"] == 2 and tokens[:2] == tok.encode("hi")
    assert tokens[2:] == tok.encode("<user>yo<assistant>")
    with pytest.raises(TypeError, match="give the Client a tokenizer"):
        sent([Group("t", prompt="hi")])
    with pytest.raises(TypeError, match="prompt must be text"):
        Group("t", prompt=[1, 2])
    with pytest.raises(InvalidRequest, match="tokenized prompt"):  # the tokenizer's ids are checked too
        sent([Group("t", prompt="hi")], model={"vocab_size": 10}, tokenizer=tok)
    with pytest.raises(TypeError, match=r"has no encode\(\) method"):
        longtail.Client("ipc:///nonexistent", tokenizer=object(), timeout=0.1)


def test_version_matches_the_cmake_project():
    cmake = (pathlib.Path(__file__).resolve().parents[3] / "CMakeLists.txt").read_text()
    m = re.search(r"project\(longtail VERSION ([0-9.]+)", cmake)
    assert m and longtail.__version__ == m.group(1)
