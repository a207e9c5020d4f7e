"""Distributed runs on Ray: each job a Ray task on a node of a cluster, one results folder on the driver.

Ray is the engine (KubeRay on Kubernetes, ``ray start`` on bare machines); the harness adds what a benchmark
needs on top of it. One module per concern:

* :mod:`~harness.execution.ray.connect`: a private local Ray bound to 127.0.0.1, or an existing cluster;
* :mod:`~harness.execution.ray.resources`: a job's demand (threads -> CPUs, a CUDA device -> one GPU, its
  machine's custom resources), the nodes, and the message when no node has what a job needs;
* :mod:`~harness.execution.ray.inputs`: local files on the nodes (used in place when the same, shipped through the
  object store, or refused clearly);
* :mod:`~harness.execution.ray.node_task`: what runs on a node (the job through the process executor's worker,
  streamed back; the doctor);
* :mod:`~harness.execution.ray.executor`: :class:`RayExecutor` (placement, one job per node, node loss and
  retries, Ctrl-C);
* :mod:`~harness.execution.ray.facts`: the machine facts every row gets (``node``, ``hostname``, ``cpu_model``,
  ``gpu_name``), for every executor;
* :mod:`~harness.execution.ray.doctor`: ``harness doctor --cluster``.

Importing this package imports neither Ray nor any ML framework; Ray is imported when a session starts.
"""

from __future__ import annotations

from typing import Any

from harness.execution.ray.facts import NODE_COLUMNS, RAY_COLUMNS, local_facts

__all__ = ["NODE_COLUMNS", "RAY_COLUMNS", "RayExecutor", "cluster_doctor", "local_facts"]


def __getattr__(name: str) -> Any:
    """RayExecutor and cluster_doctor on first use, so that importing the package stays free of Ray."""
    if name == "RayExecutor":
        from harness.execution.ray.executor import RayExecutor

        return RayExecutor
    if name == "cluster_doctor":
        from harness.execution.ray.doctor import cluster_doctor

        return cluster_doctor
    raise AttributeError(name)
