"""Trainer-side client for the longtail rollout worker.

Connect with :class:`Client`, submit prompt groups, iterate over :class:`Batch` objects (numpy
arrays; torch tensors on request when torch is installed), acknowledge them, push weight updates.
The wire protocol is described in trainer_bridge/PROTOCOL.md.

Example::

    from longtail import Client, Group

    with Client("tcp://worker-0:5555", credits=4) as client:
        client.submit([Group(group_id="q1", prompt_tokens=prompt_ids, n=8, max_new_tokens=4096)])
        for batch in client.batches(timeout=600):
            arrays = batch.padded()        # [B, L] arrays (torch tensors if torch is installed)
            train_step(arrays, batch.importance["lr_scale"])
            client.ack(batch)              # only after the batch is durably consumed
            client.update_weights(version, "/checkpoints/step-%d" % version)
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
