"""How a job is named to a reader when one run holds jobs from several Python environments.

``runs.csv`` says where each job ran (``env``: an environment's name, or an interpreter's path). When a run
holds more than one, "opencv" alone no longer says which OpenCV: the summary table, every plot's labels and
legends, and the agreement matrix then name jobs ``backend @ environment`` (``opencv @ ocv4``). A run in one
environment keeps its short labels.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

DEFAULT_ENV = "default"  # the running interpreter's environment, as runs.csv names it (harness.envs.DEFAULT_ENV)


def env_of(row: Mapping[str, Any]) -> str:
    """Where a runs.csv row's job ran; rows of folders written before the column existed ran in the default."""
    value = row.get("env")
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("", "nan"):
        return DEFAULT_ENV
    return str(value)


def where_label(env: str) -> str:
    """An environment's name as is; an interpreter path as the folder above ``bin`` and a short hash (the
    job id's form, so two interpreters never share a label)."""
    if "/" not in env:
        return env
    from harness.core.jobs import python_label

    return python_label(env)


def environments(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct environments of ``rows`` in order of appearance."""
    return list(dict.fromkeys(env_of(r) for r in rows))


def many_environments(runs: Any) -> bool:
    """Whether a runs DataFrame holds jobs from more than one environment (labels then name them)."""
    return len(environments(runs.to_dict("records"))) > 1


def backend_label(row: Mapping[str, Any], with_env: bool) -> str:
    """``opencv`` or, with ``with_env``, ``opencv @ ocv4``."""
    backend = str(row.get("backend", "") or row.get("job_id", ""))
    return f"{backend} @ {where_label(env_of(row))}" if with_env else backend
