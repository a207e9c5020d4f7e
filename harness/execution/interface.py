"""How jobs are run: the interface, and the in-process executor (for debugging and tests).

The default for real suites is the subprocess executor (one fresh process per job), so that a segfault,
a hang or a framework's CUDA libraries in one job never affect another. The Ray executor
(:mod:`harness.execution.ray`) runs the same worker on the nodes of a cluster, several jobs in flight.

The run loop hands an executor the whole list (:meth:`Executor.run_all`) and gets each result back through
a callback as the job finishes, so the results folder is written job by job whatever the executor: one
after another for the local executors, in the order they finish on a cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

from harness.core.jobs import JobResult, JobSpec
from harness.execution.runner import Progress, failure_result, run_job

#: called with each finished job's result, in the order the jobs finish (the run loop saves it there)
OnResult = Callable[[JobResult], None]
#: called when a job starts, returns the progress callback for it (the run loop's progress bar)
ProgressFor = Callable[[JobSpec], "Progress | None"]


class Executor(ABC):
    name: str = "?"

    @abstractmethod
    def run(self, spec: JobSpec, progress: Progress | None = None) -> JobResult:
        """Run one job; return its result whatever happened to it (never raise for the job's own failure)."""

    def run_all(self, specs: Sequence[JobSpec], on_result: OnResult, progress_for: ProgressFor | None = None) -> None:
        """Run every job and pass each result to ``on_result`` as soon as it is there.

        This default runs them one after another through :meth:`run`, each row stamped with the facts of
        this machine (``node`` = ``local``, ``hostname``, ``cpu_model``, ``gpu_name``), as a cluster executor
        stamps the facts of the node a job ran on. KeyboardInterrupt (Ctrl-C, SIGTERM through the run loop)
        propagates once the running job is stopped; results passed to ``on_result`` before it are kept.
        """
        facts: dict[str, Any] | None = None
        for spec in specs:
            result = self.run(spec, progress_for(spec) if progress_for else None)
            if facts is None:
                from harness.execution.ray.facts import local_facts

                facts = local_facts(self.name)
            on_result(stamp_node(result, facts))

    def describe(self) -> dict[str, Any]:
        """What env.json records about how the jobs were run (a cluster executor adds its nodes)."""
        return {"name": self.name}

    def close(self) -> None:
        """Release workers."""


def stamp_node(result: JobResult, facts: dict[str, Any]) -> JobResult:
    """The machine a job ran on, in its row (``runs.csv``) and in ``jobs.json`` (``info.node``)."""
    from harness.execution.ray.facts import NODE_COLUMNS

    for column in NODE_COLUMNS:
        if column in facts:
            result.summary[column] = facts[column]
    result.summary["machine"] = result.spec.machine or ""
    result.info["node"] = dict(facts)
    return result


class InProcessExecutor(Executor):
    """Runs jobs in this process: fastest to start, but a crash in a native library ends the suite."""

    name = "inline"

    def run(self, spec: JobSpec, progress: Progress | None = None) -> JobResult:
        if spec.python or spec.env != "default":
            return failure_result(spec, "failed", f"EnvError: the inline executor runs jobs in this process, so it "
                                  f"cannot run one in {spec.env_label!r} (fix: use --executor process)")
        return run_job(spec, progress)
