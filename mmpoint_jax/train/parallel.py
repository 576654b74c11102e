"""Devices, processes and shardings: one `data` mesh axis, params replicated, batches split.

The same code runs on one CPU, eight fake CPU devices, one GPU, or every host of a TPU pod:
`initialize_distributed` joins the processes, `make_mesh` lays the devices along `data`, and
`global_batch` turns each process's local numpy batch into one global `jax.Array`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: list[int] | None = None,
    cpu_collectives: str = "gloo",
) -> None:
    """Joins a multi-process run.

    On Cloud TPU pods (and SLURM/Kubernetes GPU clusters) `jax.distributed.initialize()` finds
    everything by itself; elsewhere (several CPU processes on localhost) the coordinator, the
    process count and this process's id are given explicitly. CPU collectives go over gloo.
    """
    if cpu_collectives and os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    kwargs: dict[str, Any] = {}
    if coordinator_address:
        kwargs.update(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    if local_device_ids is not None:
        kwargs["local_device_ids"] = local_device_ids
    jax.distributed.initialize(**kwargs)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (all when None) along the `data` axis.

    Devices are ordered by process so each process's devices hold a contiguous block of the
    global batch (what `make_array_from_process_local_data` expects).
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if num_devices is not None:
        if num_devices > len(devices) or num_devices <= 0:
            raise ValueError(
                f"mesh.num_devices={num_devices} but {len(devices)} devices are visible"
            )
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError("mesh.num_devices must use every device when several processes run")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of the global batch; the batch must split evenly over devices."""
    if global_batch_size % mesh.size:
        raise ValueError(
            f"global batch {global_batch_size} does not divide over {mesh.size} devices"
        )
    return global_batch_size // jax.process_count()


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's local batch into global arrays sharded along `data`."""
    sharding = batch_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in local.items()
    }


def all_processes_agree(flag: bool) -> bool:
    """True when any process raised `flag` (a preemption notice reaches hosts at different times)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([flag], np.int32))
    return bool(np.any(flags))
