"""One fleet member: a Ray actor that owns one ``longtail-worker`` process.

The actor writes the worker's configuration (the fleet's YAML plus overrides, with this member's
worker id, endpoint and journal directory), starts the process with the GPU Ray gave the actor
(``CUDA_VISIBLE_DEVICES``), and restarts it when it dies: same worker id, same endpoint, same
journal, so un-acked batches are re-sent and sequence numbers continue (PROTOCOL.md, "Journal").
The trainer never talks to the actor about data: it connects to the worker's endpoint with a
:class:`longtail.Client`. This module imports no Ray; :mod:`longtail.fleet` wraps the class.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Dict, List, Mapping, Optional

#: Keys of configs/worker.yaml that hold paths, resolved against the YAML's directory by the worker
#: (trainer_bridge/worker_config.cc); the member's YAML lives elsewhere, so they are made absolute.
PATH_KEYS = ("model", "engine.trajectory_log", "bridge.journal_dir", "bridge.curve.server_public_key_file",
             "bridge.curve.server_secret_key_file", "bridge.curve.allowed_clients_file", "weights.allowed_dirs")


def _set_dotted(tree: Dict[str, Any], key: str, value: Any) -> None:
    node = tree
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ValueError(f"override {key!r}: {p!r} is not a section of the configuration")
        node = nxt
    node[parts[-1]] = value


def _get_dotted(tree: Mapping[str, Any], key: str) -> Any:
    node: Any = tree
    for p in key.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def member_config(config: Optional[str], overrides: Mapping[str, Any], worker_id: str, endpoint: str,
                  journal_dir: str) -> Dict[str, Any]:
    """The YAML tree of one member: ``config`` (a worker YAML file, or None for the worker's
    defaults) with dotted ``overrides`` (e.g. ``{"backend.kind": "cpu"}``) applied, paths made
    absolute, and the member's own identity. The worker itself validates every key and value."""
    import yaml  # a dependency of ray, installed with the fleet extra

    tree: Dict[str, Any] = {}
    base = pathlib.Path.cwd()
    if config is not None:
        path = pathlib.Path(config).resolve()
        with open(path, "r", encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: the worker configuration must be a mapping")
        tree = loaded or {}
        base = path.parent
    for key in PATH_KEYS:
        v = _get_dotted(tree, key)
        if isinstance(v, str) and v:
            _set_dotted(tree, key, str(base / v))
        elif isinstance(v, list):
            _set_dotted(tree, key, [str(base / x) if isinstance(x, str) else x for x in v])
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"override keys are dotted configuration keys, got {key!r}")
        _set_dotted(tree, key, value)
    _set_dotted(tree, "worker_id", worker_id)
    _set_dotted(tree, "bridge.endpoint", endpoint)
    _set_dotted(tree, "bridge.journal_dir", journal_dir)
    return tree


def package_digest() -> str:
    """Digest of this longtail package's sources: the trainer and its actors must run the same code."""
    h = hashlib.sha256()
    for f in sorted(pathlib.Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _child_setup() -> None:
    # The worker must not outlive its actor (a killed actor would leave a GPU busy otherwise).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    # Ray runs actors at a raised nice level (worker_niceness); the rollout worker is the node's
    # main job and would be starved by any busy neighbour. Back to 0 where we may (root/CAP_SYS_NICE).
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass


def _free_tcp_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class WorkerMember:
    """Owns and supervises one longtail-worker process (run as a Ray actor by the fleet).

    Args:
        worker_id: stable id (the dedup key of its batches; kept across restarts).
        run_dir: directory for this member's configuration, journal, socket and logs; keep it the
            same across actor restarts so the journal survives.
        config, overrides: the worker YAML and dotted overrides (see :func:`member_config`).
        binary: path of longtail-worker.
        driver_node: Ray node id of the trainer; on the same node the worker binds ipc://,
            elsewhere tcp://<node ip>:<free port>.
        restart_backoff_s: first wait before restarting a dead worker (doubles up to 10 s, and
            starts over after a minute of uptime).
        max_restarts: restarts before the member gives up (-1 = never).
    """

    def __init__(self, worker_id: str, run_dir: str, config: Optional[str], overrides: Mapping[str, Any],
                 binary: str, driver_node: Optional[str] = None, transport: str = "auto",
                 restart_backoff_s: float = 0.5, max_restarts: int = -1) -> None:
        self.worker_id = worker_id
        self.dir = pathlib.Path(run_dir) / worker_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.restart_backoff_s = restart_backoff_s
        self.max_restarts = max_restarts
        node = self._node_id()
        if transport == "auto":
            transport = "ipc" if driver_node is None or node is None or node == driver_node else "tcp"
        if transport == "ipc":
            self.endpoint = f"ipc://{self.dir / 'w.sock'}"
        elif transport == "tcp":
            host = self._node_ip()
            self.endpoint = f"tcp://{host}:{_free_tcp_port(host)}"
        else:
            raise ValueError(f"transport must be auto, ipc or tcp, got {transport!r}")
        tree = member_config(config, overrides, worker_id, self.endpoint, str(self.dir / "journal"))
        import yaml

        self.config_path = self.dir / "worker.yaml"
        self.config_path.write_text(yaml.safe_dump(tree, sort_keys=False))
        self.env = dict(os.environ)
        gpus = self._gpu_ids()
        if gpus:
            self.env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.restarts = 0
        self.exits: List[Dict[str, Any]] = []
        self.started_at = 0.0
        self.gave_up = False
        self._stopping = False
        self._lock = threading.Lock()
        self._spawn()
        self._monitor = threading.Thread(target=self._watch, name=f"{worker_id}-watch", daemon=True)
        self._monitor.start()

    # ------------------------------------------------------------------ Ray context (optional)
    @staticmethod
    def _node_id() -> Optional[str]:
        try:
            import ray

            return ray.get_runtime_context().get_node_id()
        except Exception:
            return None

    @staticmethod
    def _node_ip() -> str:
        try:
            import ray

            return ray.util.get_node_ip_address()
        except Exception:
            return "127.0.0.1"

    @staticmethod
    def _gpu_ids() -> List[int]:
        try:
            import ray

            return [int(g) for g in ray.get_gpu_ids()]
        except Exception:
            return []

    # ------------------------------------------------------------------ process
    def _spawn(self) -> None:
        self.starts += 1
        log = open(self.dir / f"worker.{self.starts}.log", "wb")
        self.proc = subprocess.Popen([self.binary, "--config", str(self.config_path)], stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env, preexec_fn=_child_setup)
        log.close()
        self.started_at = time.monotonic()

    def _log_tail(self, start: int, chars: int = 2000) -> str:
        try:
            return (self.dir / f"worker.{start}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _watch(self) -> None:
        backoff = self.restart_backoff_s
        while True:
            proc = self.proc
            assert proc is not None
            code = proc.wait()
            with self._lock:
                if self._stopping:
                    return
                uptime = time.monotonic() - self.started_at
                self.exits.append({"start": self.starts, "code": code, "uptime_s": uptime,
                                   "log_tail": self._log_tail(self.starts, 600)})
                if code == 2 and uptime < 5 and self.starts == 1:
                    self.gave_up = True  # configuration error: restarting cannot help
                    return
                if 0 <= self.max_restarts <= self.restarts:
                    self.gave_up = True
                    return
                if uptime > 60:
                    backoff = self.restart_backoff_s
            time.sleep(backoff)
            backoff = min(10.0, backoff * 2)
            with self._lock:
                if self._stopping:
                    return
                self.restarts += 1
                self._spawn()

    # ------------------------------------------------------------------ actor methods
    def info(self) -> Dict[str, Any]:
        """Where to connect and how the process is doing."""
        with self._lock:
            alive = self.proc is not None and self.proc.poll() is None
            return {"worker_id": self.worker_id, "endpoint": self.endpoint, "pid": self.proc.pid if self.proc else None,
                    "alive": alive, "starts": self.starts, "restarts": self.restarts, "gave_up": self.gave_up,
                    "exits": list(self.exits[-5:]), "cuda_visible_devices": self.env.get("CUDA_VISIBLE_DEVICES"),
                    "dir": str(self.dir), "log_tail": self._log_tail(self.starts) if not alive else "",
                    "package": str(pathlib.Path(__file__).resolve().parent), "package_digest": package_digest()}

    def kill(self, sig: int = int(signal.SIGKILL)) -> int:
        """Sends ``sig`` to the worker process (failure drills); the monitor restarts it."""
        with self._lock:
            assert self.proc is not None
            pid = self.proc.pid
            if self.proc.poll() is None:
                os.kill(pid, sig)
            return pid

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """Stops supervising; SIGTERM (graceful: the worker journals what is un-acked), then SIGKILL."""
        with self._lock:
            self._stopping = True
            proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()
