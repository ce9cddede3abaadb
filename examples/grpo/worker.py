"""Starting a longtail-worker for the trainer: a YAML config generated from the trainer's options
(configs/worker.yaml documents every key), the binary from build/bin, its log in the run directory.
Torch-free, so it can be tested in CI."""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import signal
import subprocess
import time
from typing import Any, Dict, Mapping, Optional, Sequence

REPO = pathlib.Path(__file__).resolve().parents[2]


def worker_binary(explicit: str = "") -> pathlib.Path:
    if explicit:
        return pathlib.Path(explicit)
    build = pathlib.Path(os.environ.get("LONGTAIL_BUILD_DIR", REPO / "build"))
    return build / "bin" / "longtail-worker"


def _set_dotted(tree: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"worker option {key}: {p} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple:
    """'engine.speculation.max_budget=8' -> (key, value); the value is YAML-typed by the worker, so
    it is kept as text unless it is a plain number or boolean."""
    if "=" not in text:
        raise ValueError(f"worker option {text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    low = value.strip().lower()
    if low in ("true", "false"):
        return key.strip(), low == "true"
    for cast in (int, float):
        try:
            return key.strip(), cast(value)
        except ValueError:
            pass
    return key.strip(), value


def worker_config(model: pathlib.Path, endpoint: str, weights_dir: pathlib.Path, *, backend: str = "cpu",
                  threads: int = 0, round_groups: int = 0, overprovision: float = 1.0, speculation: bool = True,
                  max_running: int = 256, overrides: Sequence[tuple] = ()) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {
        "worker_id": "grpo-worker-0",
        "model": str(model),
        "log_level": "info",
        "backend": {"kind": backend, "threads": threads},
        "engine": {"round_groups": round_groups, "overprovision": overprovision,
                   "max_running_sequences": max_running, "speculation": {"enabled": speculation}},
        "bridge": {"endpoint": endpoint, "max_outbox_batches": 8},
        "weights": {"allowed_dirs": [str(weights_dir)]},
        "shutdown": {"finish_in_flight": False, "ack_wait_s": 0},
    }
    for key, value in overrides:
        _set_dotted(cfg, key, value)
    return cfg


def to_yaml(cfg: Mapping[str, Any], indent: int = 0) -> str:
    """Block YAML of nested dicts of scalars and lists; scalars as JSON (valid YAML flow scalars)."""
    lines = []
    for k, v in cfg.items():
        pad = "  " * indent
        if isinstance(v, Mapping):
            lines.append(f"{pad}{k}:")
            lines.append(to_yaml(v, indent + 1))
        else:
            lines.append(f"{pad}{k}: {json.dumps(v)}")
    return "\n".join(lines)


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM when the trainer dies, even by SIGKILL, so no orphan keeps
    its socket and cores."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class WorkerProcess:
    """A worker child process writing its log to `log_path`; `stop()` ends it (SIGTERM, then kill)."""

    def __init__(self, binary: pathlib.Path, config: Mapping[str, Any], run_dir: pathlib.Path) -> None:
        if not binary.exists():
            raise FileNotFoundError(f"{binary} does not exist: build it (cmake --build build --target "
                                    "longtail-worker) or pass --worker-bin / set LONGTAIL_BUILD_DIR")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = run_dir / "worker.yaml"
        self.config_path.write_text(to_yaml(config) + "\n")
        self.log_path = run_dir / "worker.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(binary), "--config", str(self.config_path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"longtail-worker exited with {self.proc.returncode}:\n{tail}")

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_for_socket(path: pathlib.Path, proc: WorkerProcess, timeout: float = 60.0) -> None:
    """Waits until an ipc:// worker has bound its socket (or died)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        proc.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker did not bind {path} within {timeout} s (log: {proc.log_path})")
        time.sleep(0.05)
