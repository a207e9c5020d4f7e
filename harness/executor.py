"""How jobs are run: the interface, and the in-process executor (for debugging and tests).

The default for real suites is the subprocess executor (one fresh process per job), so that a segfault,
a hang or a framework's CUDA libraries in one job never affect another. A cluster executor can implement
the same interface later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from harness.jobs import JobResult, JobSpec
from harness.runner import Progress, failure_result, run_job


class Executor(ABC):
    name: str = "?"

    @abstractmethod
    def run(self, spec: JobSpec, progress: Progress | None = None) -> JobResult:
        """Run one job; return its result whatever happened to it (never raise for the job's own failure)."""

    def close(self) -> None:
        """Release workers."""


class InProcessExecutor(Executor):
    """Runs jobs in this process: fastest to start, but a crash in a native library ends the suite."""

    name = "inline"

    def run(self, spec: JobSpec, progress: Progress | None = None) -> JobResult:
        if spec.python or spec.env != "default":
            return failure_result(spec, "failed", f"EnvError: the inline executor runs jobs in this process, so it "
                                  f"cannot run one in {spec.env_label!r} (fix: use --executor process)")
        return run_job(spec, progress)


ExecutorFactory = Callable[[], Executor]


def make_executor(kind: str, log_dir: "Path | None" = None, resolver: Any = None) -> Executor:
    """``log_dir``: where the process executor keeps each job's stdout/stderr (``<file stem>.log``).
    ``resolver``: the run's :class:`~harness.envs.InterpreterResolver`, its environments already ensured
    before the first job (envs-b, issue 12); None: the executor makes its own."""
    if kind == "inline":
        return InProcessExecutor()
    if kind == "process":
        try:
            from harness.process_executor import SubprocessExecutor
        except ImportError:
            return InProcessExecutor()
        return SubprocessExecutor(log_dir=log_dir, resolver=resolver)
    raise ValueError(f"unknown executor {kind!r}: choose 'process' or 'inline'")
