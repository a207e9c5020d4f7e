"""Every environment a run needs, built or reused once, before its first job starts.

Why before: a requirement that does not resolve, a registry that cannot be reached or an interpreter that
cannot import the harness must stop the run before anything is measured, with one clear error, rather than
turn into failed rows after an hour of other jobs. So ``harness run`` ensures each environment its jobs
name (a suite's ``[envs.NAME]`` tables are registered and built here, like ``harness env create`` would)
and checks each ``python =`` interpreter, once, holding every environment's use lock until the run ends;
the executor then gets the same :class:`~harness.envs.resolve.InterpreterResolver`, so no job checks again.

It also says what ``env.json`` records about each environment: its key, requirements, interpreter and every
installed package (what ``pip freeze`` would list, asked from inside it or read from its build record).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from harness.envs.builder import Report, print_report
from harness.envs.interpreter import Interpreter, list_packages
from harness.envs.resolve import InterpreterResolver, create
from harness.core.env_names import DEFAULT_ENV
from harness.envs.spec import EnvSpec
from harness.envs.store import EnvStore
from harness.core.versions import installed_distributions
from harness.core.errors import EnvError, HarnessError
from harness.core.jobs import JobSpec

#: (env, python) of a job: where it runs
Where = tuple[str, "str | None"]


def _where(job: JobSpec) -> Where:
    return (DEFAULT_ENV, job.python) if job.python else (job.env, None)


def _label(where: Where) -> str:
    env, python = where
    return f"python {python}" if python else f"environment {env!r}"


def running_packages() -> dict[str, str]:
    """Every distribution installed in this interpreter's environment (the default one), asked in process."""
    return installed_distributions()


@dataclass
class PreparedEnvs:
    """The environments of one run, ready, with their use locks held until :meth:`close` (or the ``with``
    block's end)."""

    resolver: InterpreterResolver
    jobs: dict[Where, list[str]] = field(default_factory=dict)  # where -> the job ids that run there
    seconds: dict[Where, float] = field(default_factory=dict)  # where -> seconds its check or build took

    def close(self) -> None:
        self.resolver.close()

    def __enter__(self) -> "PreparedEnvs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def environments(self) -> dict[str, Any]:
        """``env.json``'s ``environments``: per environment (or interpreter) its key, requirements, Python,
        the jobs that ran there and every package installed in it."""
        out: dict[str, Any] = {}
        for where, job_ids in self.jobs.items():
            env, python = where
            try:
                entry = self._describe(env, python)
            except HarnessError as exc:  # env.json must still be written
                entry = {"error": exc.problem}
            entry["jobs"] = job_ids
            out[python or env] = entry
        return out

    def identity(self, job: JobSpec) -> dict[str, Any] | None:
        """What a job's results record about the built environment it ran in: its name, content key,
        requirements and Python (None for the running interpreter or a ``python =`` path, which the harness
        does not build). ``--resume`` compares the key with the environment's key then, and reruns the job
        when the name now means something else."""
        if job.python or job.env == DEFAULT_ENV:
            return None
        done = self.resolver.ensured.get(job.env)
        if done is None:
            return None
        return {"name": job.env, "key": done.key, "requirements": list(done.spec.requirements),
                "python": done.spec.python}

    def _describe(self, env: str, python: str | None) -> dict[str, Any]:
        if python is None and env == DEFAULT_ENV:
            return {"python": sys.executable, "python_version": platform.python_version(),
                    "packages": running_packages()}
        interpreter = self.resolver.resolve(env, python)
        assert interpreter is not None
        entry: dict[str, Any] = {"python": interpreter.python, "python_version": interpreter.python_version,
                                 "harness": interpreter.harness_version}
        done = self.resolver.ensured.get(env) if python is None else None
        record = None
        if done is not None:
            folder = self.resolver.store.folder(env, done.key)
            record = self.resolver.store.record(folder)
            entry.update(key=done.key, requirements=list(done.spec.requirements), python_spec=done.spec.python,
                         folder=str(folder))
        if record is not None:
            entry.update(installer=record.installer, built_at=record.built_at, packages=dict(record.packages))
        else:
            entry["packages"] = list_packages(interpreter.python)
        return entry


def prepare_envs(jobs: Iterable[JobSpec], suite_envs: Mapping[str, EnvSpec] | None = None, *,
                 executor: str = "process", store: EnvStore | None = None,
                 report: Report = print_report) -> PreparedEnvs:
    """Ensure every environment ``jobs`` name (building the suite's own definitions), check every
    interpreter; one :class:`HarnessError` naming the environment and its jobs if one cannot be had.

    ``executor`` "inline" runs jobs in this process, so a job in another environment is refused here.
    """
    grouped: dict[Where, list[str]] = {}
    for job in jobs:
        grouped.setdefault(_where(job), []).append(job.job_id)
    others = [w for w in grouped if w != (DEFAULT_ENV, None)]
    if others and executor == "inline":
        raise HarnessError(f"--executor inline runs every job in this process, so it cannot run jobs in "
                           f"{_label(others[0])} ({len(grouped[others[0]])} job(s))",
                           "use --executor process (the default), or run those jobs without --env/--python")
    resolver = InterpreterResolver(store, report)
    prepared = PreparedEnvs(resolver, grouped)
    suite_envs = dict(suite_envs or {})
    try:
        for where in others:
            start = time.perf_counter()
            interpreter = _ensure_one(resolver, where, suite_envs, report, len(grouped[where]))
            prepared.seconds[where] = round(time.perf_counter() - start, 2)
            built = where[1] is None and resolver.ensured.get(where[0]) is not None and \
                resolver.ensured[where[0]].built
            report(f"{_label(where)}: {'built' if built else 'ready'} in {prepared.seconds[where]:.1f} s, "
                   f"Python {interpreter.python_version} ({interpreter.python}), "
                   f"{len(grouped[where])} job(s)")
    except HarnessError as exc:
        resolver.close()
        jobs_there = grouped[where]
        example = jobs_there[0] + (f" and {len(jobs_there) - 1} more" if len(jobs_there) > 1 else "")
        raise type(exc)(f"{_label(where)}, needed by {example}, cannot be used: {exc.problem}; no job was run",
                        exc.fix) from None
    except BaseException:
        resolver.close()
        raise
    return prepared


def _ensure_one(resolver: InterpreterResolver, where: Where, suite_envs: Mapping[str, EnvSpec], report: Report,
                count: int) -> Interpreter:
    env, python = where
    report(f"preparing {_label(where)} for {count} job(s) ...")
    if python is None and env in suite_envs:
        spec = suite_envs[env]
        done, previous = create(spec, resolver.store, report, hold=resolver.locks)
        if previous is not None and previous != spec:
            report(f"environment {env!r}: the suite's definition replaces the registered one "
                   f"(was {' '.join(previous.requirements)}, Python {previous.python})")
        resolver.adopt(done)
        return done.interpreter
    interpreter = resolver.resolve(env, python)
    if interpreter is None:  # only the default environment resolves to None, and it is never asked here
        raise EnvError(f"{_label(where)} resolved to the running interpreter", "report this as a harness bug")
    return interpreter
