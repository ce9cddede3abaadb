"""The bundled trained policy without torch: its tokenizer agrees with config.json, and longtail's CPU
backend reproduces what transformers computed on it (fixture written by check_logits.py): the same
greedy responses with speculation off and on, logprobs within 1e-4. Skipped when longtail-generate
is not built."""

import json
import pathlib

import pytest

from examples.sft.golden import TOLERANCE, compare, generate_bin, longtail_side
from examples.task import CharTokenizer, check_ids

REPO = pathlib.Path(__file__).resolve().parents[3]
MODEL = REPO / "configs" / "models" / "chain-qwen3"
FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "chain-qwen3.json"


def test_tokenizer_matches_config():
    tok = CharTokenizer.load(MODEL)
    cfg = json.loads((MODEL / "config.json").read_text())
    assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (tok.bos_id, tok.eos_id)
    assert cfg["architectures"] == ["Qwen3ForCausalLM"]


@pytest.mark.skipif(not generate_bin().exists(), reason="longtail-generate is not built (set LONGTAIL_BUILD_DIR)")
def test_cpu_backend_matches_transformers_on_the_trained_policy():
    fixture = json.loads(FIXTURE.read_text())
    res = compare(fixture, longtail_side(MODEL, fixture, generate_bin()))
    assert res["greedy_mismatches"] == 0, res
    assert res["max_abs_dlogprob_greedy"] <= TOLERANCE and res["max_abs_dlogprob_forced"] <= TOLERANCE, res
    # The fixture's greedy answers are scored like any rollout: a trained policy gets most right.
    tok = CharTokenizer.load(MODEL)
    right = sum(check_ids(tok, g["prompt"], g["tokens"]).correct for g in fixture["greedy"])
    assert right >= len(fixture["greedy"]) // 2, right
