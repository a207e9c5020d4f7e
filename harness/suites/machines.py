"""The machines axis: where a job must run on a Ray cluster (``--executor ray``).

``machines = ["orin", { name = "any-gpu", resources = { GPU = 1 } }]`` in [matrix] makes each job once per
machine: a name alone means the custom resource of that name (``ray start --resources '{"orin": 1}'``); a
table names the resources a node needs. A [[job]] names one machine of the axis, or gives its own table.
"""

from __future__ import annotations

from typing import Any

from harness.core.errors import HarnessError
from harness.core.jobs import check_machine
from harness.suites.source import SuiteSource

MACHINES_AXIS = "machines"


def machine_entry(ctx: SuiteSource, item: Any, keypath: list[str | int]) -> dict[str, Any]:
    """One machine as the job settings it adds: ``machine`` (its name, in the job id) and ``resources``."""
    fix = 'write machines = ["orin", { name = "any-gpu", resources = { GPU = 1 } }]'
    if isinstance(item, str) and item:
        item = {"name": item, "resources": {item: 1}}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise ctx.error(keypath, f"expected a machine name or a {{ name = ..., resources = {{...}} }} table, "
                        f"got {item!r}", fix)
    unknown = sorted(set(item) - {"name", "resources"})
    if unknown:
        raise ctx.error(keypath + [unknown[0]], "unknown key in a machine entry", fix)
    try:
        resources = check_machine(item["name"], item.get("resources", {}))  # the one check, as JobSpec's
    except HarnessError as exc:
        raise ctx.error(keypath, exc.problem, exc.fix, value=item["name"]) from None
    return {"machine": item["name"], "resources": resources}


def machines(ctx: SuiteSource, matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """The matrix's machines axis ([no machine] when absent: the job runs wherever the executor runs it)."""
    raw = matrix.get(MACHINES_AXIS)
    if raw is None:
        return [{"machine": None, "resources": {}}]
    if not isinstance(raw, list) or not raw:
        raise ctx.error(["matrix", MACHINES_AXIS], f"expected a non-empty list of machines, got {raw!r}",
                        'write machines = ["orin", { name = "any-gpu", resources = { GPU = 1 } }]')
    return [machine_entry(ctx, item, ["matrix", MACHINES_AXIS, i]) for i, item in enumerate(raw)]


def job_machine(ctx: SuiteSource, job: dict[str, Any], i: int, matrix: dict[str, Any] | None) -> dict[str, Any]:
    """A [[job]]'s ``machine``: a name of the matrix's machines axis, or its own table."""
    given = job.get("machine")
    if given is None:
        return {"machine": None, "resources": {}}
    if isinstance(given, str) and matrix and matrix.get(MACHINES_AXIS) is not None:
        named = {m["machine"]: m for m in machines(ctx, matrix)}
        if given in named:
            return named[given]
    return machine_entry(ctx, given, ["job", i, "machine"])
