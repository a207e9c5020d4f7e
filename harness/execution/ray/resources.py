"""What a job asks of a node, what each node has, and the message when no node has it.

Ray queues a task whose resources no node has and waits for one to appear (an autoscaler may add it), so a
suite naming a machine that is not there would wait forever. The executor therefore compares each job's
demand with the nodes Ray reports alive before it submits the job, and again while the job waits, and
turns "no node has this" into a row that names the missing resource. Pure functions: no Ray import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from harness.core.device import Device
from harness.core.jobs import JobSpec

#: resources Ray declares by itself and takes as keyword arguments (num_cpus, num_gpus, memory), never in
#: ``resources={...}``
BUILTIN = ("CPU", "GPU", "memory")
#: resource names every node has that say nothing about a machine kind (hidden in messages)
_NOISE_PREFIXES = ("node:", "accelerator_type:")
_NOISE = {"object_store_memory", "memory"}


def device_problem(device: str) -> str | None:
    """Why a device cannot be asked for on Ray, or None. Ray gives a GPU job the GPU it assigns and hides the
    others (``CUDA_VISIBLE_DEVICES`` = that one), so inside the job it is GPU 0 and ``gpu:1`` does not exist."""
    device = Device(device)
    if device.is_cuda_gpu and device.index > 0:
        return (f"device {device}: on Ray a job gets the GPU Ray assigns it, seen as GPU 0 (CUDA_VISIBLE_DEVICES), "
                "so a GPU index other than 0 does not exist there (fix: ask for device gpu; to choose the "
                "machine, name it in the suite's machines axis)")
    return None


def _amount(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value / 2**30:.1f} GiB"


@dataclass(frozen=True)
class Demand:
    """What one job needs of a node: CPUs (its threads, at least 1), GPUs, memory bytes, custom resources."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: float = 0.0
    custom: Mapping[str, float] = field(default_factory=dict)

    def amounts(self) -> dict[str, float]:
        out = {"CPU": self.cpus}
        if self.gpus:
            out["GPU"] = self.gpus
        if self.memory:
            out["memory"] = self.memory
        out.update(self.custom)
        return out

    def ray_options(self) -> dict[str, Any]:
        """The keyword arguments of ``remote_function.options(...)`` that ask for this demand."""
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus, "resources": dict(self.custom)}
        if self.memory:
            options["memory"] = self.memory
        return options

    def text(self) -> str:
        return ", ".join(f"{k} {_amount(v)}" for k, v in self.amounts().items())


def demand_of(spec: JobSpec) -> Demand:
    """``num_cpus`` from ``threads`` (default 1), one GPU for a CUDA device, and the job's resources (its
    machine's); an explicit ``CPU``/``GPU``/``memory`` among them raises the amount, never lowers it."""
    custom = dict(spec.resources)
    cpus = max(float(spec.threads or 1), float(custom.pop("CPU", 0.0)))
    # a CUDA GPU job needs num_gpus = 1: Ray then gives it a GPU of its own (CUDA_VISIBLE_DEVICES); OpenCL,
    # Vulkan and NPU targets ask for nothing (name them as a custom resource of the machine if they matter)
    gpus = max(1.0 if Device(spec.device).is_cuda_gpu else 0.0, float(custom.pop("GPU", 0.0)))
    memory = float(custom.pop("memory", 0.0))
    return Demand(cpus=cpus, gpus=gpus, memory=memory, custom=custom)


@dataclass(frozen=True)
class Node:
    """One node as Ray reports it (``ray.nodes()``): its id, address, host name and total resources."""

    node_id: str
    ip: str
    hostname: str
    total: Mapping[str, float]
    alive: bool = True

    def fits(self, demand: Demand) -> bool:
        return all(self.total.get(name, 0.0) >= amount - 1e-9 for name, amount in demand.amounts().items())

    @property
    def label(self) -> str:
        """How people tell nodes apart: the host name (or address) and the start of the node id."""
        return f"{self.hostname or self.ip}/{self.node_id[:8]}"

    def resources_text(self) -> str:
        shown = {k: v for k, v in self.total.items() if k not in _NOISE and not k.startswith(_NOISE_PREFIXES)}
        return ", ".join(f"{k} {_amount(v)}" for k, v in sorted(shown.items())) or "no resources"


def nodes_from_ray(raw: Iterable[Mapping[str, Any]]) -> list[Node]:
    """The alive nodes of ``ray.nodes()``, in a stable order (head first, then by id)."""
    nodes = []
    for entry in raw:
        if not entry.get("Alive", entry.get("alive", False)):
            continue
        total = {str(k): float(v) for k, v in (entry.get("Resources") or {}).items()}
        nodes.append(Node(node_id=str(entry.get("NodeID")), ip=str(entry.get("NodeManagerAddress", "")),
                          hostname=str(entry.get("NodeManagerHostname", "")), total=total))
    return sorted(nodes, key=lambda n: ("node:__internal_head__" not in n.total, n.node_id))


def fitting(demand: Demand, nodes: Sequence[Node]) -> list[Node]:
    """The nodes that could run the job at all, those with the fewest resources the job does not need first,
    so a CPU job does not take the only GPU machine while a CPU machine is free."""
    wanted = set(demand.amounts())

    def spare(node: Node) -> tuple[int, int]:
        extra = [k for k in node.total if k not in wanted and k not in _NOISE and not k.startswith(_NOISE_PREFIXES)
                 and k != "CPU"]
        return (int("GPU" in extra), len(extra))

    return sorted((n for n in nodes if n.fits(demand)), key=spare)


def missing_text(demand: Demand, nodes: Sequence[Node], machine: str | None = None) -> str:
    """Why no node can take the job: the resources none has (or none has enough of), and every node's."""
    what = f"machine {machine!r} ({demand.text()})" if machine else demand.text()
    if not nodes:
        return f"the job needs {what} and the Ray cluster has no alive node"
    lacking = []
    for name, amount in demand.amounts().items():
        most = max(n.total.get(name, 0.0) for n in nodes)
        if most <= 0:
            lacking.append(f'no node has resource "{name}"')
        elif most < amount - 1e-9:
            lacking.append(f'the job asks for {name} {_amount(amount)}, the most any node has is {_amount(most)}')
    if not lacking:
        lacking.append(f"no single node has all of {demand.text()}")
    listing = "; ".join(f"{n.label}: {n.resources_text()}" for n in nodes)
    return f"the job needs {what}: {'; '.join(lacking)} (nodes: {listing})"


def missing_fix(demand: Demand) -> str:
    custom = {k: v for k, v in demand.custom.items()}
    declare = ", ".join(f'"{k}": {v:g}' for k, v in custom.items())
    start = f"start a node that has it (ray start --address HEAD:6379 --resources '{{{declare}}}'" + (
        " --num-gpus 1" if demand.gpus else "") + ")" if custom else (
        "start a node with enough CPUs/GPUs (ray start --num-cpus N --num-gpus N)")
    return f"{start}, or drop the machine from the suite; `harness doctor --cluster` lists the nodes"
