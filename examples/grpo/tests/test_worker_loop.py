"""The torch-free half of the GRPO loop against a live worker: the generated worker config starts a
real longtail-worker, chain-task groups go in through the client, the batch comes back with every
trajectory scoreable by the checker, and a step record holds every logged figure. Skipped when the
worker is not built."""

import math
import pathlib
import tempfile

import pytest

from longtail import Client, Group

from examples.grpo.metrics import step_record
from examples.grpo.worker import (WorkerProcess, parse_override, to_yaml, wait_for_socket, worker_binary,
                                  worker_config)
from examples.task import CharTokenizer, check_ids, problems, prompt_ids

REPO = pathlib.Path(__file__).resolve().parents[3]
MODEL = REPO / "configs" / "models" / "chain-qwen3"


def test_overrides_and_yaml():
    assert parse_override("engine.speculation.max_budget=8") == ("engine.speculation.max_budget", 8)
    assert parse_override("backend.deterministic=true") == ("backend.deterministic", True)
    assert parse_override("log_level=debug") == ("log_level", "debug")
    with pytest.raises(ValueError):
        parse_override("engine.overprovision")
    cfg = worker_config(MODEL, "ipc:///tmp/x.sock", pathlib.Path("/tmp/w"), overrides=[("engine.overprovision", 2.0)])
    assert cfg["engine"]["overprovision"] == 2.0
    text = to_yaml(cfg)
    assert "  speculation:\n    enabled: true" in text and 'allowed_dirs: ["/tmp/w"]' in text
    with pytest.raises(ValueError):
        worker_config(MODEL, "ipc:///x", pathlib.Path("/w"), overrides=[("model.x", 1)])


@pytest.mark.skipif(not worker_binary().exists(), reason="longtail-worker is not built (set LONGTAIL_BUILD_DIR)")
@pytest.mark.parametrize("speculation", [False, True])
def test_one_round_through_a_generated_worker_config(tmp_path, speculation):
    sock_dir = pathlib.Path(tempfile.mkdtemp(prefix="lt-ex-"))
    endpoint = f"ipc://{sock_dir}/w.sock"
    cfg = worker_config(MODEL, endpoint, tmp_path / "weights", threads=1, round_groups=2, speculation=speculation)
    (tmp_path / "weights").mkdir()
    worker = WorkerProcess(worker_binary(), cfg, tmp_path)
    try:
        wait_for_socket(sock_dir / "w.sock", worker)
        tok = CharTokenizer.load(MODEL)
        groups = [Group(group_id=f"g{i}", prompt_id=f"p{i}", prompt_tokens=prompt_ids(tok, p.prompt), n=4,
                        max_new_tokens=256, temperature=1.0, seed=3) for i, p in enumerate(problems(1, 2))]
        with Client(endpoint, credits=2, timeout=60) as client:
            assert client.worker.model["eos_token_ids"] == [tok.eos_id]
            client.submit(groups)
            batch = client.next_batch(timeout=120)
            assert batch is not None and len(batch) == 8
            trajs = sorted(batch.trajectories, key=lambda t: (t.group_id, t.sample_index))
            verdicts = [check_ids(tok, t.prompt_tokens, t.response_tokens) for t in trajs]
            # The bundled policy is trained: most of these short problems come out right.
            assert sum(v.correct for v in verdicts) >= 4, [tok.decode(t.response_tokens) for t in trajs]
            rec = step_record(0, batch, trajs, verdicts, 1.0, 0.5, {"total_s": 0.1}, {"loss": 0.0}, 1.0)
            assert rec["response_tokens"] == sum(t.response_tokens.size for t in trajs)
            assert rec["forward_passes"] > 0 and rec["pass_rate"] == pytest.approx(
                sum(v.correct for v in verdicts) / 8)
            assert (rec["tokens_drafted"] > 0) == speculation
            assert all(math.isfinite(v) for v in rec.values() if isinstance(v, float))
            client.ack(batch)
    finally:
        assert worker.stop() == 0, worker.log_path.read_text()[-2000:]
