"""Trainer-side client for the longtail rollout worker.

Connect with :class:`Client`, submit prompt groups, iterate over :class:`Batch` objects (numpy
arrays; torch tensors on request when torch is installed), acknowledge them, push weight updates.
The wire protocol is described in trainer_bridge/PROTOCOL.md.
"""

from longtail.protocol import PROTOCOL_VERSION, WorkerError, ProtocolViolation
from longtail.types import Batch, Group, Trajectory, WorkerInfo
from longtail.client import Client, CurveKeys, load_key

__all__ = [
    "PROTOCOL_VERSION",
    "Batch",
    "Client",
    "CurveKeys",
    "Group",
    "ProtocolViolation",
    "Trajectory",
    "WorkerError",
    "WorkerInfo",
    "load_key",
]
