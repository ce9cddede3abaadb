"""The worker's Prometheus endpoint, scraped from a live worker: vLLM-named series with values that
match what was delivered, histograms, build info, /health and /ready, an exclusively bound and
validated port, and re-send counters that count batches re-sent from the journal."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from longtail import Client, Group
from conftest import free_port
from test_worker import collect, groups, wait_until


def scrape(port: int, path: str = "/metrics"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def value(text: str, series: str) -> float:
    """The sample of one series, e.g. 'longtail:prompt_tokens_total' or a name with labels."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, v = line.rpartition(" ")
        bare = re.sub(r'worker="[^"]*",?', "", name).replace("{}", "")
        if bare == series or name == series:
            return float(v)
    raise AssertionError(f"{series} not in the exposition:\n{text}")


def test_vllm_named_metrics_match_what_was_delivered(start_worker):
    port = free_port()
    w = start_worker("--metrics-port", str(port))
    with Client(w.endpoint) as c:
        c.submit(groups(2, n=3, max_new_tokens=6))  # prompts of 4 tokens
        trs = [t for b in collect(c, 6) for t in b.trajectories]
        generated = sum(t.response_tokens.size for t in trs)
        reasons = {r: sum(t.finish_reason == r for t in trs) for r in ("stop", "length")}
        wait_until(lambda: value(scrape(port)[1], "longtail:generation_tokens_total") == generated)
        status, text = scrape(port)
        version = c.worker.software_version  # the worker's build, from HELLO; the same in STATS
        assert version and version == c.stats()["worker"]["software_version"]
        assert "(commit " in version  # set by longtail-worker's main, not the default 'unknown'
    assert status == 200
    assert value(text, "longtail:prompt_tokens_total") == 2 * 3 * 4
    assert value(text, 'longtail:request_success_total{finished_reason="stop"}') == reasons["stop"]
    assert value(text, 'longtail:request_success_total{finished_reason="length"}') == reasons["length"]
    assert value(text, "longtail:num_requests_running") == 0
    assert value(text, "longtail:num_requests_waiting") == 0
    assert 0 <= value(text, "longtail:kv_cache_usage_perc") <= 1
    drafted = value(text, "longtail:spec_decode_num_draft_tokens_total")
    assert 0 <= value(text, "longtail:spec_decode_num_accepted_tokens_total") <= drafted
    assert "# TYPE longtail:step_duration_seconds histogram" in text
    assert value(text, "longtail:step_duration_seconds_count") >= 1
    assert value(text, "longtail:round_makespan_seconds_count") >= 1
    assert "# TYPE longtail:weight_update_seconds histogram" in text
    build = re.search(r'longtail_build_info\{([^}]*)\} 1', text)
    assert build and f'version="{version}"' in build.group(1) and 'backend="cpu"' in build.group(1)
    assert scrape(port, "/health") == (200, "ok\n")
    assert scrape(port, "/ready")[0] == 200
    assert scrape(port, "/nothing")[0] == 404


def test_metrics_port_is_bound_exclusively_and_validated(start_worker, tmp_path):
    port = free_port()
    first = start_worker("--metrics-port", str(port), endpoint=f"ipc://{tmp_path}/a.sock")
    with Client(first.endpoint):
        pass  # serving, so the port is bound
    second = start_worker("--metrics-port", str(port), endpoint=f"ipc://{tmp_path}/b.sock")
    assert second.proc.wait(30) != 0
    assert f"cannot listen on 127.0.0.1:{port}" in second.output()
    assert scrape(port, "/health")[0] == 200  # the first one still answers
    bad = start_worker("--metrics-port", "70000", endpoint=f"ipc://{tmp_path}/c.sock")
    assert bad.proc.wait(30) != 0
    assert "70000" in bad.output() and "1..65535" in bad.output()


def test_resend_counters_count_journal_resends(start_worker, tmp_path):
    journal = tmp_path / "journal"
    w = start_worker("--round-groups", "1", "--journal-dir", str(journal))
    with Client(w.endpoint, credits=8) as c:
        c.submit(groups(3, n=1))
        got = collect(c, 3)
        c.ack(got[0])
        wait_until(lambda: c.stats()["bridge"]["batches_acked"] == 1, what="the ack to reach the worker")
    assert w.terminate() == 0

    port = free_port()
    w2 = start_worker("--round-groups", "1", "--journal-dir", str(journal), "--metrics-port", str(port))
    with Client(w2.endpoint, credits=8) as c:
        redo = collect(c, 2)
        c.ack(redo)
        wait_until(lambda: c.stats()["bridge"]["batches_acked"] == 2)
        s = c.stats()["bridge"]
        assert s["batches_recovered"] == 2 and s["batches_published"] == 0
        assert s["batches_resent"] == 2 and s["batches_sent"] == 2
        wait_until(lambda: value(scrape(port)[1], "longtail_batches_resent_total") == 2)
        c.shutdown()
    assert w2.proc.wait(30) == 0
    assert "0 batches published, 2 recovered from the journal, 2 acked" in w2.output()
