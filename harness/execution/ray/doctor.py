"""``harness doctor --cluster``: the doctor on every node of a Ray cluster, one table.

One Ray task per alive node, pinned to it (``NodeAffinitySchedulingStrategy``, hard) and asking for no
CPU, so that a node busy with jobs still answers. Each task runs the same :func:`harness.doctor.doctor_report`
as ``harness doctor`` on that machine (its own driver, CUDA libraries and frameworks); the reports are
printed with :func:`harness.doctor.format_reports`, labelled by node. A node that does not answer within
the time limit, or whose task fails, becomes a row saying so.
"""

from __future__ import annotations

from typing import Any, Sequence

from harness.execution.ray.connect import RaySession, connect
from harness.execution.ray.resources import nodes_from_ray

#: seconds a node may take beyond the probes' own limit (imports, a busy node)
SLACK_S = 120.0


def _label(node_facts: dict[str, Any], fallback: str) -> str:
    host = node_facts.get("hostname") or node_facts.get("node_ip") or fallback
    return f"{host}/{str(node_facts.get('node', ''))[:8]}"


def cluster_doctor(address: str | None = None, backends: Sequence[str] | None = None, device: str | None = None,
                   timeout: float | None = None, live: bool | None = None, allow_cpu: bool = False,
                   session: RaySession | None = None) -> dict[str, dict[str, Any]]:
    """``{node label: doctor report}`` for every alive node of the cluster at ``address`` (None: a private
    local Ray, i.e. this machine as a one-node cluster)."""
    from harness.execution.ray.node_task import doctor_on_node
    from harness.doctor.environments import error_report

    own = session is None
    session = session or connect(address)
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=0, max_retries=0)(doctor_on_node)
        options = {"backends": list(backends) if backends else None, "device": device, "timeout": timeout,
                   "live": live, "allow_cpu": allow_cpu}
        nodes = nodes_from_ray(ray.nodes())
        refs = {node.label: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
                .remote(options) for node in nodes}
        limit = (timeout or 0) * 8 + SLACK_S if timeout else None  # every probe may take `timeout`
        reports: dict[str, dict[str, Any]] = {}
        for label, ref in refs.items():
            try:
                answer = ray.get(ref, timeout=limit)
            except Exception as exc:  # noqa: BLE001 - one node that cannot answer is a row, not the end
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reports[label] = error_report(label, f"the doctor did not answer on node {label}: "
                                              f"{type(exc).__name__} {text}".strip(),
                                              "check the node (ray status; its raylet log), then run again")
                continue
            reports[_label(answer["node"], label)] = answer["report"]
        return reports
    finally:
        if own:
            session.close()


#: the widest label the doctor's table shows whole
LABEL_WIDTH = 11


def short_labels(reports: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The reports keyed by labels the doctor's table shows whole (``node1``... when a ``host/id`` label is
    too wide), and the legend lines that say which node each short label is."""
    if all(len(label) <= LABEL_WIDTH for label in reports):
        return reports, []
    shown, legend = {}, []
    for i, (label, report) in enumerate(reports.items(), start=1):
        shown[f"node{i}"] = report
        legend.append(f"node{i:<7}{label}")
    return shown, legend + [""]
