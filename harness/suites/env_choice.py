"""What the environment names in a run's jobs mean, decided while the jobs are expanded (nothing is built here).

A job names where it runs with ``env`` (``--env``, a suite's ``envs`` axis or ``env =`` key) or ``python``.
Before any job is planned, each name must be one the run can use: ``default`` (the running interpreter), an
environment the suite defines in an ``[envs.NAME]`` table, or one ``harness env create`` registered. A
misspelt name is one error listing the defined ones, not a failed row an hour later.

``env = "gpu-layout"`` is a choice, not an environment: each backend goes to its GPU layout environment
(``tf-gpu`` for tf1/tf2/tflite, ``torch-gpu``, ``ort-gpu``: :mod:`harness.envs.gpu`) when that environment is
**ready**, i.e. completely built for this harness and its spec (its marker is written last, so a build that
was interrupted, is still running elsewhere, or was made for an older checkout never counts), and to the
default environment otherwise, with one line saying why and the command that builds it. So a half-built
environment is never picked, and a missing one never fails the default suite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

from harness.envs.gpu import gpu_env_for
from harness.core.env_names import DEFAULT_ENV, GPU_LAYOUT_ENV
from harness.envs.spec import EnvSpec
from harness.envs.store import EnvStore
from harness.core.errors import EnvError, HarnessError, did_you_mean

Report = Callable[[str], None]


def python_path(value: str, base: Path | str) -> str:
    """An interpreter path as a job stores it: ``~`` expanded, made absolute against ``base`` (the current
    folder for ``--python``, the suite's folder in a suite), symlinks kept: a virtual environment's
    ``bin/python`` is a link to its base interpreter, and resolving it would leave the environment."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base) / path
    return os.path.normpath(str(path))


class EnvChoices:
    """The environments one run may name, and the GPU layout's choice per backend; made once per expansion.

    ``suite_envs``: the ``[envs.NAME]`` specs of the suite being expanded (they count as defined before
    they are built). ``report`` gets the one line per layout environment that is not used, and why.
    """

    def __init__(self, suite_envs: Mapping[str, EnvSpec] | None = None, store: EnvStore | None = None,
                 report: Report | None = None) -> None:
        self.suite_envs = dict(suite_envs or {})
        self._store = store
        self._report = report
        self._registered: list[str] | None = None
        self._layout: dict[str, str] = {}  # layout environment -> what it resolves to (itself or default)
        self._doctor: dict[str, dict] = {}  # environment or interpreter -> the doctor's report there
        self.notes: list[str] = []

    @property
    def store(self) -> EnvStore:
        if self._store is None:
            self._store = EnvStore()
        return self._store

    def registered(self) -> list[str]:
        if self._registered is None:
            try:
                self._registered = self.store.names()
            except OSError:  # an unreadable cache: only the suite's and the default
                self._registered = []
        return self._registered

    def known(self) -> list[str]:
        return list(dict.fromkeys([DEFAULT_ENV, GPU_LAYOUT_ENV, *self.suite_envs, *self.registered()]))

    def problem(self, name: str) -> HarnessError | None:
        """None when ``name`` can be used by a job of this run, else the error to raise (where it was written
        is the caller's to add)."""
        if name in self.known():
            return None
        defined = [n for n in self.known() if n not in (DEFAULT_ENV, GPU_LAYOUT_ENV)]
        return EnvError(
            f"no environment named {name!r}.{did_you_mean(name, self.known())} Defined: {DEFAULT_ENV} (the running "
            f"one), {GPU_LAYOUT_ENV} (tf-gpu/torch-gpu/ort-gpu per backend when built)"
            + (f", {', '.join(defined)}" if defined else ""),
            f"create it first: harness env create {name} REQUIREMENT... (e.g. 'opencv-python==4.14.*'), or define "
            f"it in the suite: [envs.{name}] requirements = [...]",
        )

    def check(self, name: str) -> str:
        error = self.problem(name)
        if error is not None:
            raise error
        return name

    # the GPU layout -----------------------------------------------------------------------------------
    def for_backend(self, env: str, backend: str) -> str:
        """The environment a job of ``backend`` runs in when it names ``env``: ``env`` itself, except for
        ``gpu-layout`` (see the module docstring)."""
        if env != GPU_LAYOUT_ENV:
            return env
        name = gpu_env_for(backend)
        if name is None:
            return DEFAULT_ENV
        if name not in self._layout:
            ready, why = self._state(name)[:2]
            self._layout[name] = name if ready else DEFAULT_ENV
            if not ready:
                self._note(f"{GPU_LAYOUT_ENV}: {why}, so GPU jobs meant for it run in the default environment "
                           f"(build it: harness env create --gpu {name})")
        return self._layout[name]

    def _state(self, name: str) -> tuple[bool, str, Path | None]:
        """Whether environment ``name`` (the suite's spec, else the registered one) is completely built for
        this harness; if not, why; if so, its folder."""
        from harness.envs.resolve import current_key

        if name in self.suite_envs:
            spec = self.suite_envs[name]
        elif name in self.registered():
            try:
                spec = self.store.spec(name)
            except (HarnessError, OSError, ValueError) as exc:
                return False, f"environment {name!r} has an unreadable definition ({exc})", None
        else:
            return False, f"environment {name!r} is not created", None
        try:
            state = self.store.state(name, current_key(spec))
        except (HarnessError, OSError, ValueError) as exc:
            return False, f"environment {name!r} cannot be checked ({exc})", None
        if state.state == "ready":
            return True, "", state.folder
        if state.state == "stale":
            return False, f"environment {name!r} was built for another spec or harness checkout (stale)", None
        if state.state == "damaged":
            return False, f"environment {name!r} is incomplete (an interrupted build or a lost interpreter)", None
        return False, f"environment {name!r} is not built", None

    # GPU readiness inside an environment ------------------------------------------------------------------
    def gpu_ready(self, backend: str, env: str = DEFAULT_ENV, python: str | None = None) -> bool:
        """Whether the doctor, run inside ``env`` (or ``python``), says ``backend`` can use a GPU there. An
        environment that is not built yet cannot be asked: not ready (with a note), nothing is built here."""
        where = python or env
        if where not in self._doctor:
            self._doctor[where] = self._ask_doctor(env, python)
        entry = (self._doctor[where].get("backends") or {}).get(backend)
        return isinstance(entry, dict) and entry.get("status") == "gpu-ready"

    def _ask_doctor(self, env: str, python: str | None) -> dict:
        from harness.doctor.environments import env_doctor_report
        from harness.envs.installers import env_python
        from harness.envs.interpreter import check_python, hello

        try:
            if python:
                interpreter = check_python(python)
            else:
                ready, why, folder = self._state(env)
                if not ready or folder is None:
                    self._note(f"cannot ask the doctor whether environment {env!r} can use the GPU: {why} "
                               f"(harness env create {env} builds it)")
                    return {}
                interpreter = hello(env_python(folder), env, f"rebuild it: harness env create {env} --force")
        except HarnessError as exc:
            self._note(f"cannot ask the doctor in {where_text(env, python)}: {exc.problem}")
            return {}
        return env_doctor_report(interpreter)

    @property
    def layout(self) -> dict[str, str]:
        """Each layout environment asked about so far -> where its jobs run (itself, or ``default``)."""
        return dict(self._layout)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        if self._report is not None:
            self._report(text)


def where_text(env: str, python: str | None) -> str:
    return f"python {python}" if python else f"environment {env!r}"
