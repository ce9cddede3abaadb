"""Trainer-side client for the longtail rollout worker.

Connect with :class:`Client`, submit prompt groups, iterate over :class:`Batch` objects (numpy
arrays; torch tensors on request when torch is installed), acknowledge them, push weight updates.
The wire protocol is described in trainer_bridge/PROTOCOL.md.

Example::

    from longtail import Client, Group

    with Client("tcp://worker-0:5555", credits=4) as client:
        client.submit([Group(group_id="q1", prompt_tokens=prompt_ids, n=8, max_tokens=4096,
                             temperature=1.0, top_p=1.0, seed=42)])  # vLLM's SamplingParams names
        for batch in client.batches(timeout=600):
            arrays = batch.padded()        # [B, L] arrays (torch tensors if torch is installed)
            train_step(arrays, batch.importance["lr_scale"])
            client.ack(batch)              # only after the batch is durably consumed
            client.update_weights(version, "/checkpoints/step-%d" % version)
"""

# The package's version; pyproject.toml reads it from here and a test holds it equal to the C++
# project's version in CMakeLists.txt.
__version__ = "0.1.0"

from longtail.protocol import PROTOCOL_VERSION, WorkerError, ProtocolViolation
from longtail.params import InvalidRequest, SamplingParams
from longtail.request import Group
from longtail.types import Batch, Trajectory, WorkerInfo
from longtail.client import Client, CurveKeys, load_key
from longtail.trajectory_log import read_trajectory_log

__all__ = [
    "PROTOCOL_VERSION",
    "__version__",
    "Batch",
    "Client",
    "CurveKeys",
    "Group",
    "InvalidRequest",
    "ProtocolViolation",
    "SamplingParams",
    "read_trajectory_log",
    "Trajectory",
    "WorkerError",
    "WorkerInfo",
    "load_key",
]
