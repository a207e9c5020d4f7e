"""Which executor ``harness run --executor`` makes: the one place that knows them all (the in-process and
subprocess executors, and the Ray executor of :mod:`harness.execution.ray`), so that the executor interface in
:mod:`harness.execution.interface` imports none of its implementations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.execution.interface import Executor, InProcessExecutor

#: the executors ``harness run --executor`` offers
EXECUTORS = ("process", "inline", "ray")


def make_executor(kind: str, log_dir: "Path | None" = None, resolver: Any = None, **options: Any) -> Executor:
    """``log_dir``: where each job's worker log is kept (``<file stem>.log``). ``resolver``: the run's
    :class:`~harness.envs.InterpreterResolver`, its environments already ensured before the first job (issue
    12); None: the executor makes its own. ``options`` go to the Ray executor (``address``, ``jobs_per_node``,
    ``node_retries``; see :class:`harness.execution.ray.RayExecutor`), which builds environments on each node."""
    if kind == "inline":
        return InProcessExecutor()
    if kind == "process":
        try:
            from harness.execution.process import SubprocessExecutor
        except ImportError:
            return InProcessExecutor()
        return SubprocessExecutor(log_dir=log_dir, resolver=resolver)
    if kind == "ray":
        from harness.execution.ray import RayExecutor

        return RayExecutor(log_dir=log_dir, **options)
    raise ValueError(f"unknown executor {kind!r}: choose {', '.join(repr(k) for k in EXECUTORS)}")
