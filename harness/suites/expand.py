"""Which jobs a run means: from command-line flags, from a suite file (TOML), or the embedded default suite.

A suite file is a matrix ``backends x models x videos x devices`` plus single ``[[job]]`` entries, with
settings that can be given for every job (``[defaults]``) or per matrix entry (an entry is a name or an
inline table ``{ name = "opencv", options = { target = "opencl" } }``). The file is checked before anything
runs: a mistake is reported once, with the file, the line and key, and what was expected, because a typo
found after an hour of benchmarking costs an hour. The format is documented in docs/suites-and-reports.md.

The command line reaches this module only as a :class:`~harness.suites.overrides.RunOverrides` (what the user typed,
nothing else), so an explicit flag always beats the suite, and defaults live in JobSpec and
PostprocessPolicy alone.

The steps, each in its module of harness.suites, are: read and check the file (source, keys), expand the
matrix and [[job]] entries into candidates (candidates, with the environments, machines and precisions axes),
keep those that pass [[exclude]], --backend and ``when`` (selection, host), and make JobSpecs (specs).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterable

from harness.envs.spec import EnvSpec
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.core.registry import installed_backends
from harness.core.scenario import sweep_levels
from harness.core.settings import REFERENCE_MODEL
from harness.suites.overrides import RunOverrides
from harness.suites.candidates import empty_matrix_error, job_candidates, matrix_candidates
from harness.suites.environments import env_tables, flag_choices, where, where_entries
from harness.suites.host import HostProbes, gpu_ready
from harness.suites.host import machine_has_gpu as _machine_has_gpu
from harness.suites.keys import DEFAULT_SOURCE, check_settings, check_top_level
from harness.suites.selection import exclude_rules, select
from harness.suites.source import SuiteError, read_suite
from harness.suites.specs import job_spec

__all__ = ["DEFAULT_SOURCE", "DEFAULT_SUITE", "SuiteError", "check_backend_options", "default_suite",
           "default_suite_text", "gpu_ready", "jobs_from_flags", "load_suite", "suite_envs"]

DEFAULT_SUITE = Path(__file__).parent / "default.toml"


def jobs_from_flags(overrides: RunOverrides) -> list[JobSpec]:
    """``harness run --backend ...``: the product of the given backends, models, videos, devices and
    environments (``--env``/``--python``)."""
    settings = overrides.settings()
    models = overrides.models or (REFERENCE_MODEL,)
    videos = overrides.videos or (DEFAULT_SOURCE,)
    devices = overrides.devices or ("cpu",)
    repeated = sorted({b for b in overrides.backends if overrides.backends.count(b) > 1})
    if repeated:  # `-b opencv --env ocv4 -b opencv` reads like a pairing; axes don't pair
        raise HarnessError(f"--backend {', '.join(repeated)} is given more than once; the flags are axes, so the "
                           "same backend twice would be the same jobs twice",
                           "to run one backend in several environments, give --env once per environment: "
                           "-b opencv --env default --env ocv4")
    choices = flag_choices(overrides)
    wheres = where_entries(overrides) or [{"name": None}]
    precisions = [{"precision": p} for p in overrides.precisions] or [{}]
    return [job_spec(level) for b, m, v, d, w, p in itertools.product(overrides.backends, models, videos, devices,
                                                                       wheres, precisions)
            for level in sweep_levels({**settings, **where(w, b, choices), **p, "backend": b, "model": m,
                                       "video": v, "device": d})]


def suite_envs(path: Path | str | None = None, *, text: str | None = None) -> dict[str, EnvSpec]:
    """The ``[envs.NAME]`` specs of a suite file (of the default suite for ``None``): what a run ensures
    before its first job, besides the environments already registered."""
    if path is None:
        path, text = DEFAULT_SUITE, default_suite_text()
    ctx, data = read_suite(path, text)
    check_top_level(ctx, data)  # `envs = "x"` is a file:line error here too, not an AttributeError
    return env_tables(ctx, data.get("envs"))


def _host_probes() -> HostProbes:
    """This module's probes, looked up at each load: replacing ``installed_backends``, ``gpu_ready`` or
    ``_machine_has_gpu`` here (as tests do to play another machine) reaches every step."""
    return HostProbes(installed=installed_backends, gpu_ready=gpu_ready, has_gpu=_machine_has_gpu)


def load_suite(path: Path | str, overrides: RunOverrides | None = None, *, text: str | None = None) -> list[JobSpec]:
    """Expand a suite file into jobs, after checking every key.

    ``overrides`` is what the command line gave: its settings override every job; its videos, models and
    devices replace the suite's (so ``--device gpu`` asks for the GPU even where the suite says
    ``when = "gpu-ready"``); its backends keep only those backends' jobs. Relative paths in the suite are
    relative to the suite file's folder.
    """
    over = overrides or RunOverrides()
    probes = _host_probes()
    ctx, data = read_suite(path, text)
    check_top_level(ctx, data)
    ctx.choices = flag_choices(over, env_tables(ctx, data.get("envs")))
    defaults = data.get("defaults", {})
    check_settings(ctx, defaults, ["defaults"], [])
    matrix = data.get("matrix")
    candidates, empty_axes = matrix_candidates(ctx, matrix, defaults, over, probes)
    candidates += job_candidates(ctx, data.get("job", []), defaults, over, matrix)
    rules = exclude_rules(ctx, data.get("exclude", []))
    if not candidates:
        raise empty_matrix_error(ctx, matrix, empty_axes)
    jobs, skipped = select(ctx, candidates, rules, over, probes)
    if not jobs:
        if over.backends:
            raise SuiteError(f"{ctx.path}: no job of the suite uses backend(s) {', '.join(over.backends)}",
                             "drop --backend, or name a backend the suite lists")
        reason = "; ".join(sorted(set(skipped))) or "every job is excluded by [[exclude]]"
        raise SuiteError(f"{ctx.path}: the suite expands to no runnable jobs: {reason}",
                         "install a backend (pip install -e '.[all]') or change the suite's conditions")
    ids = [j.job_id for j in jobs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SuiteError(f"{ctx.path}: several entries make the same job id: {', '.join(dupes)}",
                         'give the differing entries a tag = "..." (it is appended to the job id), or remove repeats')
    return jobs


def default_suite_text() -> str:
    """The embedded default suite's TOML (harness/suites/default.toml)."""
    return DEFAULT_SUITE.read_text(encoding="utf-8")


def default_suite(overrides: RunOverrides | None = None) -> list[JobSpec]:
    """The embedded default suite (harness/suites/default.toml) with the command line's overrides."""
    return load_suite(DEFAULT_SUITE, overrides, text=default_suite_text())


def check_backend_options(jobs: Iterable[JobSpec]) -> None:
    """Let each backend refuse options it does not know before anything runs (``--opt bogus=1``).

    Every backend has the check, ``Detector.validate_options(options)`` (against its declared
    ``known_options``), raising HarnessError. Only the backend's module is imported here (backends import their
    framework when a detector loads), and a backend that cannot be found is left to fail as its own row when
    it runs.
    """
    from harness.core.registry import backend_class

    checked: dict[str, Any] = {}
    for job in jobs:
        if job.backend not in checked:
            try:
                checked[job.backend] = backend_class(job.backend).validate_options
            except HarnessError:
                checked[job.backend] = None
        validate = checked[job.backend]
        if validate is not None:
            try:
                validate(job.options)
            except HarnessError as exc:
                raise HarnessError(f"job {job.job_id}: {exc.problem}", exc.fix) from None
