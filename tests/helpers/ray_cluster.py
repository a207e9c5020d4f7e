"""A real Ray cluster on 127.0.0.1 for the Ray executor's tests and benchmarks (``ray.cluster_utils``).

Several raylets on this one machine, each with custom resources standing for a machine kind ("kind-a",
"kind-b"...), one CPU each, no dashboard. Everything it starts is stopped in :meth:`TestCluster.shutdown`,
and whatever Ray leaves behind (measured: after a killed driver, Ray's dashboard and runtime-env agents
outlive their raylet) is killed by pid, so a failing test never leaves a cluster running.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

# Ray picks the loopback address only when this is set before it is imported (see harness.execution.ray.connect)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

NODE_ARGS = {"num_cpus": 1, "include_dashboard": False}


class TestCluster:
    """A started cluster, the driver connected to it; nodes added by kind."""

    __test__ = False  # not a pytest test class

    def __init__(self, head_resources: dict[str, float], head_cpus: int = 1) -> None:
        self.procs: dict[int, psutil.Process] = {}  # pid -> process (psutil checks a pid was not reused)
        self.cluster = Cluster(initialize_head=True, head_node_args={
            **NODE_ARGS, "num_cpus": head_cpus, "resources": head_resources})
        self.head = self.cluster.head_node
        self._remember(self.head)
        ray.init(address=self.cluster.address, log_to_driver=False, logging_level="WARNING")

    @property
    def address(self) -> str:
        return self.cluster.address

    def _remember(self, node: Any) -> None:
        for infos in node.all_processes.values():
            for info in infos:
                self._add(info.process.pid)

    def _add(self, pid: int) -> None:
        if pid not in self.procs:
            try:
                self.procs[pid] = psutil.Process(pid)
            except psutil.Error:
                pass

    def add_node(self, resources: dict[str, float], env_vars: dict[str, str] | None = None, num_cpus: int = 1) -> Any:
        node = self.cluster.add_node(**{**NODE_ARGS, "num_cpus": num_cpus}, resources=resources,
                                     env_vars=env_vars or None)
        self._remember(node)
        self.cluster.wait_for_nodes()
        return node

    def remove_node(self, node: Any) -> None:
        self._collect()
        self.cluster.remove_node(node, allow_graceful=False)

    def node_id(self, node: Any) -> str:
        return node.node_id

    def _collect(self) -> None:
        """Every process under the cluster's processes now (workers, agents, the jobs' workers)."""
        for proc in list(self.procs.values()):
            try:
                for child in proc.children(recursive=True):
                    self.procs.setdefault(child.pid, child)
            except psutil.Error:
                pass

    def shutdown(self) -> None:
        self._collect()
        try:
            ray.shutdown()
        finally:
            try:
                self.cluster.shutdown()
            finally:
                kill_leftovers(list(self.procs.values()))


def kill_leftovers(procs: list[psutil.Process], wait_s: float = 5.0) -> list[int]:
    """Kill whichever of ``procs`` still run after ``wait_s``; returns the pids it had to kill."""
    deadline = time.monotonic() + wait_s
    left = [p for p in procs if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if _running(p)]
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return [p.pid for p in left]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
