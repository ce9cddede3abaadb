"""The chain task without torch: generator determinism and range, the long-tailed step counts, the
checker's verdicts on right, wrong, unfinished and malformed responses, and the tokenizer files."""

import json
import subprocess
import sys

import pytest

from examples.task import (MAX_STEPS, MIN_STEPS, CharTokenizer, Problem, check_ids, check_text, generate,
                           parse_prompt, problems, prompt_ids)
from examples.task.chain import step_distribution
from examples.task.tokenizer import MODEL_VOCAB_SIZE


def test_problems_are_a_function_of_seed_and_index():
    assert problems(7, 50) == problems(7, 50)
    assert problems(7, 10, start=40) == problems(7, 50)[40:]
    assert problems(7, 50) != problems(8, 50)
    # Pinned: a change to the generator renames every prompt set, so it must be deliberate.
    assert generate(1, 0).prompt == "40-9*05="
    assert generate(1, 0).solution == "31,04;22,03;13,02;04,01;95,00"


def test_solution_lines_follow_the_rule_and_prompts_parse_back():
    for p in problems(3, 2000):
        assert MIN_STEPS <= p.steps <= MAX_STEPS
        lines = p.solution_lines()
        assert len(lines) == p.steps and lines[-1] == f"{p.answer:02d},00"
        assert parse_prompt(p.prompt) == p
        prev = p.start
        for i, line in enumerate(lines, 1):
            value, left = line.split(",")
            want = (prev + p.digit) % 100 if p.op == "+" else (prev - p.digit) % 100
            assert int(value) == want and int(left) == p.steps - i and len(value) == len(left) == 2
            prev = want
    for bad in ("4-9*05=", "40*9*05=", "40-0*05=", "40-9*00=", "40-9*05", "40-9*5="):
        with pytest.raises(ValueError):
            parse_prompt(bad)


def test_step_counts_are_long_tailed():
    ks = [p.steps for p in problems(11, 5000)]
    assert sum(k <= 6 for k in ks) / len(ks) > 0.5
    assert 0.05 < sum(k >= 30 for k in ks) / len(ks) < 0.15
    assert max(ks) == MAX_STEPS
    lengths = sorted(len(p.solution) for p in problems(11, 5000))
    median, p99 = lengths[len(lengths) // 2], lengths[int(0.99 * len(lengths))]
    assert p99 > 8 * median, (median, p99)
    assert abs(sum(step_distribution()) - 1) < 1e-12


def test_step_clipping():
    assert all(p.steps == 5 for p in problems(2, 100, min_steps=5, max_steps=5))
    with pytest.raises(ValueError):
        generate(1, 0, min_steps=3, max_steps=2)


def test_checker_outcome_reward():
    p = Problem(3, "-", 4, 3)
    assert p.prompt == "03-4*03=" and p.solution == "99,02;95,01;91,00"  # modulo 100
    assert check_text(p, "99,02;95,01;91,00", finished=True).reward == 1.0
    assert check_text(p, "91,00", finished=True).reward == 1.0  # outcome reward: only the end counts
    assert check_text(p, "99,02;95,01;91,00", finished=False).reward == 0.0  # cut off at the cap
    assert check_text(p, "99,02;95,01;92,00", finished=True).reward == 0.0
    assert check_text(p, "99,02;95,01", finished=True).reward == 0.0
    assert check_text(p, "", finished=True).reward == 0.0
    v = check_text(p, "99,02;94,01;90,00", finished=True)
    assert (v.correct, v.lines_right, v.lines_expected) == (False, 1, 3)


def test_checker_graded_reward():
    p = Problem(3, "-", 4, 3)
    assert check_text(p, "99,02;95,01;91,00", True, graded=True).reward == 1.0
    assert check_text(p, "99,02;94,01;90,00", True, graded=True).reward == pytest.approx(1 / 3)
    assert check_text(p, "99,02;95,01;91,00;91,00", True, graded=True).reward == pytest.approx(3 / 4)
    assert check_text(p, "99,02;95,01;91,00", False, graded=True).reward == 0.0


def test_check_ids_and_tokenizer_round_trip():
    tok = CharTokenizer()
    p = generate(5, 3)
    ids = prompt_ids(tok, p.prompt)
    assert ids[0] == tok.bos_id and tok.decode(ids) == p.prompt
    right = tok.encode(p.solution, eos=True)
    assert check_ids(tok, ids, right).reward == 1.0
    assert check_ids(tok, ids, right[:-1]).reward == 0.0           # no EOS
    assert check_ids(tok, ids, right + [tok.eos_id, 7]).reward == 1.0  # what follows EOS is ignored
    assert check_ids(tok, ids, [99, tok.eos_id]).reward == 0.0     # unknown id: wrong, not a crash
    with pytest.raises(ValueError):
        check_ids(tok, tok.encode("12+3", bos=True), right)
    with pytest.raises(ValueError):
        tok.encode("1/2")
    assert tok.size <= MODEL_VOCAB_SIZE


def test_tokenizer_files_round_trip_and_check_config(tmp_path):
    tok = CharTokenizer()
    tok.save(tmp_path)
    assert CharTokenizer.load(tmp_path).vocab == tok.vocab
    cfg = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "vocab_size": MODEL_VOCAB_SIZE}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    CharTokenizer.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "eos_token_id": [5]}))
    with pytest.raises(ValueError, match="bos/eos"):
        CharTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="not a chain-task tokenizer"):
        CharTokenizer.load(tmp_path)


def test_cli_prompts_and_score(tmp_path):
    out = subprocess.run([sys.executable, "-m", "examples.task", "prompts", "--seed", "4", "--count", "6"],
                         check=True, capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines()]
    assert [l["text"] for l in lines] == [p.prompt for p in problems(4, 6)]
    tok = CharTokenizer()
    responses = tmp_path / "responses.jsonl"
    with open(responses, "w") as f:
        for i, (l, p) in enumerate(zip(lines, problems(4, 6))):
            wrong = ";".join(p.solution_lines()[:-1] + [str((p.answer + 1) % 100)])
            text = p.solution if i % 2 == 0 else wrong
            f.write(json.dumps({"prompt_tokens": l["prompt_tokens"],
                                "response_tokens": tok.encode(text, eos=True)}) + "\n")
    res = subprocess.run([sys.executable, "-m", "examples.task", "score", "--json", str(responses)],
                         check=True, capture_output=True, text=True).stdout
    summary = json.loads(res)
    assert summary["responses"] == 6 and summary["pass_rate"] == pytest.approx(0.5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_tokens": [1, 4]}\n')
    r = subprocess.run([sys.executable, "-m", "examples.task", "score", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr
