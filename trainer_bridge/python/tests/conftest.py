"""Fixtures that run a real ``longtail-worker`` (CPU backend, the bundled tiny checkpoint) on an
ipc:// endpoint in a temporary directory. The binary comes from $LONGTAIL_BUILD_DIR/bin (default:
<repo>/build/bin); the tests are skipped with a clear reason when it has not been built."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from typing import List, Optional

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
MODEL = REPO / "configs" / "models" / "tiny-qwen3"


def worker_binary() -> pathlib.Path:
    build = pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build"))
    return build / "bin" / "longtail-worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """A longtail-worker child process; ``endpoint`` is where trainers connect."""

    def __init__(self, tmp: pathlib.Path, args: List[str], endpoint: Optional[str] = None,
                 config: Optional[pathlib.Path] = None) -> None:
        self.tmp = tmp
        self.endpoint = endpoint or f"ipc://{tmp}/worker.sock"
        self.log_path = tmp / f"worker-{time.monotonic_ns()}.log"
        cmd = [str(worker_binary())]
        if config is not None:
            cmd += ["--config", str(config)]
        else:
            cmd += ["--model", str(MODEL)]
        cmd += ["--endpoint", self.endpoint, "--threads", "1", "--worker-id", "w-test"] + args
        self.cmd = cmd
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


@pytest.fixture
def start_worker(tmp_path):
    if not worker_binary().exists():
        pytest.skip(f"{worker_binary()} is not built (set LONGTAIL_BUILD_DIR)")
    if not (MODEL / "config.json").exists():
        pytest.skip(f"bundled checkpoint {MODEL} is missing")
    started: List[WorkerProcess] = []

    def start(*args: str, endpoint: Optional[str] = None, config: Optional[pathlib.Path] = None) -> WorkerProcess:
        w = WorkerProcess(tmp_path, list(args), endpoint, config)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


@pytest.fixture
def weights_dir(tmp_path) -> pathlib.Path:
    """A directory the worker may load weights from, holding a copy of the tiny checkpoint."""
    d = tmp_path / "weights"
    shutil.copytree(MODEL, d / "v1")
    return d

