"""Which machine a job ran on, as its row says it: gathered where the job ran, never assumed.

A results folder from a cluster mixes machines; a latency without its machine is a number without a unit.
``node`` is the Ray node id (``local`` for the process and inline executors), ``hostname`` and
``cpu_model`` come from the machine itself, ``gpu_name`` lists the GPUs the job could see: those Ray
assigned to it (``CUDA_VISIBLE_DEVICES``) when it asked for one, otherwise every GPU of the machine.
"""

from __future__ import annotations

import os
import socket
from typing import Any

#: the runs.csv columns every executor fills (the Ray executor adds the ones in RAY_COLUMNS)
NODE_COLUMNS = ("executor", "node", "node_ip", "hostname", "cpu_model", "gpu_name")
#: per-row facts only the Ray executor knows: how many attempts, which nodes died under the job, and which
#: other jobs shared its node while it ran (empty with the default of one job per node)
RAY_COLUMNS = ("attempts", "lost_nodes", "node_concurrent_jobs")


def _visible(gpus: list[Any]) -> list[Any]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible (by index or UUID prefix); all when it is unset."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    if not all(w.isdigit() for w in wanted):  # UUIDs or MIG names: the driver facts don't carry them
        return gpus
    return [gpu for gpu in gpus if str(gpu.index) in wanted]


def gpu_names() -> str:
    """The names of the GPUs visible here, ``; ``-separated ("" when none: no driver, or hidden)."""
    try:
        from harness.doctor.facts import driver_facts

        gpus = driver_facts().gpus
    except Exception:  # noqa: BLE001 - a machine fact must not cost the job its row
        return ""
    return "; ".join(g.name for g in _visible(gpus))


def machine_facts() -> dict[str, Any]:
    """hostname, CPU model and GPU names of the machine this process runs on."""
    from harness.doctor.machine_record import cpu_model

    return {"hostname": socket.gethostname(), "cpu_model": cpu_model(), "gpu_name": gpu_names(),
            "logical_cpus": os.cpu_count()}


def local_facts(executor: str) -> dict[str, Any]:
    """The facts of a job run by a local executor (process or inline): this machine."""
    return {"executor": executor, "node": "local", "node_ip": "", **machine_facts()}


def ray_node_facts() -> dict[str, Any]:
    """The facts of the Ray node this task runs on (called inside the task, on the node)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    try:  # the address the node registered with (what `ray status` shows), not a guess from this process
        ip = next((n.get("NodeManagerAddress", "") for n in ray.nodes() if n.get("NodeID") == node_id), "")
    except Exception:  # noqa: BLE001 - a machine fact must not cost the job its row
        ip = ""
    return {"executor": "ray", "node": node_id, "node_ip": ip, **machine_facts(),
            "ray_gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
