"""Where a suite's jobs run: the environments axis (``--env``/``--python``, matrix ``envs``, ``env``/``python``
keys) and the ``[envs.NAME]`` tables that define environments the run builds before its first job.

An axis entry is an environment name (``gpu-layout`` resolved per backend) or an interpreter path; a job runs
in one place, so an entry gives a job either ``env`` or ``python``, never both.
"""

from __future__ import annotations

import sys
from typing import Any

from harness.suites.env_choice import EnvChoices, python_path
from harness.core.env_names import DEFAULT_ENV
from harness.envs.spec import EnvSpec
from harness.core.errors import HarnessError, did_you_mean
from harness.suites.overrides import RunOverrides
from harness.suites.keys import check_settings
from harness.suites.source import SuiteSource

#: what an [envs.NAME] table holds
ENV_TABLE_KEYS = ("requirements", "python", "description")


def flag_choices(overrides: RunOverrides, suite_envs: dict[str, EnvSpec] | None = None) -> EnvChoices:
    """The run's environment names, each ``--env`` checked against them (one error listing the defined)."""
    choices = EnvChoices(suite_envs, report=print_note)
    for name in overrides.envs:
        error = choices.problem(name)
        if error is not None:
            raise HarnessError(f"--env {name}: {error.problem}", error.fix)
    return choices



def print_note(text: str) -> None:
    """A note on the choice of environment (a GPU environment not built, say), on stderr beside the run."""
    print(f"note: {text}", file=sys.stderr)


def where_entries(overrides: RunOverrides) -> list[dict[str, Any]]:
    """The command line's environments axis: ``--env`` names, then ``--python`` interpreters."""
    return [{"name": e} for e in overrides.envs] + [{"name": None, "python": p} for p in overrides.pythons]


def where(entry: dict[str, Any], backend: str, choices: EnvChoices) -> dict[str, Any]:
    """The ``env``/``python`` keys an environments-axis entry gives a job of ``backend`` (``gpu-layout``
    resolved); none for the empty entry of a suite without the axis."""
    if entry.get("python"):
        return {"python": entry["python"], "env": DEFAULT_ENV}
    if entry.get("name") is None:
        return {}
    return {"env": choices.for_backend(entry["name"], backend), "python": None}


def check_envs_axis_entry(ctx: SuiteSource, item: dict[str, Any], keypath: list[str | int]) -> dict[str, Any]:
    """An ``envs`` matrix entry table: a name, or ``python = PATH`` (an interpreter), with job settings."""
    name, python = item.get("name"), item.get("python")
    if name is not None and python is not None:
        raise ctx.error(keypath + ["python"], "an envs entry is an environment name or a python path, not both",
                        'write { name = "ocv4" } or { python = "/opt/tf220/bin/python" }')
    if python is None and (not isinstance(name, str) or not name):
        raise ctx.error(keypath, "an envs entry table needs a name (or python = PATH)",
                        'write { name = "ocv4", ... } or { python = "/opt/tf220/bin/python" }')
    check_settings(ctx, {k: v for k, v in item.items() if k not in ("name", "env")}, keypath, [])
    if "env" in item:
        raise ctx.error(keypath + ["env"], "an envs entry names its environment with name", 'write { name = "..." }')
    entry = dict(item)
    if python is not None:
        entry["python"] = python_path(python, ctx.base)
        entry["name"] = None
    return entry


def env_tables(ctx: SuiteSource, table: Any) -> dict[str, EnvSpec]:
    """The ``[envs.NAME]`` tables: requirements (a list of pip requirements), python ("3.11"), description."""
    if table is None:
        return {}
    out: dict[str, EnvSpec] = {}
    for name, body in table.items():
        keypath: list[str | int] = ["envs", name]
        if not isinstance(body, dict):
            raise ctx.error(keypath, f"expected a table, got {body!r}",
                            f'write [envs.{name}] then requirements = ["opencv-python==4.14.*"]')
        for key in body:
            if key not in ENV_TABLE_KEYS:
                raise ctx.error(keypath + [key], f"unknown key.{did_you_mean(key, ENV_TABLE_KEYS)}",
                                f"an [envs.NAME] table takes: {', '.join(ENV_TABLE_KEYS)}")
        reqs = body.get("requirements")
        if not isinstance(reqs, list) or not reqs or not all(isinstance(r, str) and r.strip() for r in reqs):
            raise ctx.error(keypath + ["requirements"], f"expected a non-empty list of pip requirements, got {reqs!r}",
                            'write requirements = ["opencv-python==4.14.*"]')
        python = body.get("python")
        if python is not None and not isinstance(python, str):
            raise ctx.error(keypath + ["python"], f"expected a Python version as a string, got {python!r}",
                            'write python = "3.11" (quoted: 3.10 unquoted would be the number 3.1)')
        description = body.get("description", "")
        if not isinstance(description, str):
            raise ctx.error(keypath + ["description"], "expected a string", 'write description = "..."')
        try:
            out[name] = EnvSpec.make(name, reqs, python, description)
        except HarnessError as exc:
            key = "python" if "python" in exc.problem and python is not None and "requirement" not in exc.problem \
                else ("requirements" if "requirement" in exc.problem else None)
            bad = next((r for r in reqs if repr(r) in exc.problem), None)
            raise ctx.error(keypath + ([key] if key else []), exc.problem, exc.fix, value=bad) from None
    return out
