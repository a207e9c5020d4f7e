"""Which keys a suite takes, and the checks of their values: top-level tables, job settings, axis names.

Every value is checked before anything runs, against the one table of setting checks that flags use too
(harness.core.settings); the few keys only a suite has (``when``, ``tag``) are checked here.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from harness.core.device import Device
from harness.suites.env_choice import python_path
from harness.core.errors import HarnessError, did_you_mean
from harness.core.settings import REFERENCE_MODEL, SETTINGS, problem_with
from harness.data.paths import anchor_path
from harness.suites.source import SuiteSource

#: the video a job runs on when neither the suite nor the command line names one
DEFAULT_SOURCE = "pets09-s2l1"

WHEN_VALUES = ("installed", "gpu-ready")

#: keys a suite accepts beside the job settings of harness.core.settings: (check, expected)
SUITE_ONLY: dict[str, tuple[Callable[[Any], bool], str]] = {
    "when": (lambda v: (v in WHEN_VALUES) or (isinstance(v, list) and all(x in WHEN_VALUES for x in v)),
             f"one of {', '.join(repr(w) for w in WHEN_VALUES)} or a list of them"),
    "tag": (lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9._-]+", v) is not None,
            "a short name made of letters, digits, '.', '_' or '-' (appended to the job id)"),
}
SUITE_KEYS = sorted([*SETTINGS, *SUITE_ONLY])

#: the matrix's name axes and the job key each sets (machines and precisions add setting layers instead)
MATRIX_AXES = {"backends": "backend", "models": "model", "videos": "video", "devices": "device", "envs": "env"}
TOP_LEVEL = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "defaults": (lambda v: isinstance(v, dict), "a table of job settings"),
    "matrix": (lambda v: isinstance(v, dict), "a table with backends, models, videos, devices"),
    "job": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "[[job]] tables"),
    "exclude": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "[[exclude]] tables"),
    # environments the suite's jobs run in, built before the first job
    "envs": (lambda v: isinstance(v, dict), "[envs.NAME] tables with requirements = [...]"),
}
JOB_KEYS = ("backend", "model", "video", "device")


def check_top_level(ctx: SuiteSource, data: dict[str, Any]) -> None:
    """Only the known top-level keys, each of its kind (job settings belong under [defaults])."""
    for key, value in data.items():
        if key not in TOP_LEVEL:
            raise ctx.error([key], f"unknown top-level key.{did_you_mean(key, TOP_LEVEL)}",
                            f"use: {', '.join(TOP_LEVEL)} (job settings go under [defaults])")
        check, expected = TOP_LEVEL[key]
        if not check(value):
            raise ctx.error([key], f"expected {expected}", "see docs/suites-and-reports.md for the format")


def check_settings(ctx: SuiteSource, table: dict[str, Any], keypath: list[str | int],
                   allowed_extra: Iterable[str]) -> None:
    """Every key of a settings table known and its value valid; ``allowed_extra`` are keys the caller checks."""
    extra = set(allowed_extra)
    for key, value in table.items():
        if key in extra:
            continue
        if key == "timeout":  # accepted alias
            key = "timeout_s"
        if key in SUITE_ONLY:
            check, expected = SUITE_ONLY[key]
            problem = None if check(value) else f"expected {expected}"
        elif key in SETTINGS:
            problem, expected = problem_with(key, value), SETTINGS[key].expected
        else:
            known = sorted(set(SUITE_KEYS) | extra)
            raise ctx.error(keypath + [key], f"unknown key.{did_you_mean(key, known)}",
                            f"use one of: {', '.join(known)}")
        if problem:
            raise ctx.error(keypath + [key], f"{problem}, got {value!r}", f"write {key} as {expected}")
        if key == "env" and ctx.choices.problem(value) is not None:  # a defined one
            error = ctx.choices.problem(value)
            raise ctx.error(keypath + [key], error.problem, error.fix)


def axis_value(ctx: SuiteSource, axis: str, name: str, keypath: list[str | int]) -> str:
    """An entry's name as a job will hold it: a checked device, a video or model path made absolute against
    the suite's folder (asset names stay names)."""
    if axis == "device":
        try:
            return Device(name)
        except HarnessError as exc:
            raise ctx.error(keypath, exc.problem, exc.fix, value=name) from None
    if axis == "env":
        problem = problem_with("env", name)
        error = HarnessError(problem, "see harness env list") if problem else ctx.choices.problem(name)
        if error is not None:
            raise ctx.error(keypath, error.problem, error.fix, value=name)
    if axis == "python":
        return python_path(name, ctx.base)
    if axis in ("precision", "scenario"):  # a rule naming no real value would silently match nothing
        problem = problem_with(axis, name)
        if problem:
            raise ctx.error(keypath, f"{problem}, got {name!r}", f"a [[exclude]] {axis} is one of those values",
                            value=name)
    if axis in ("model", "video") and not (axis == "model" and name == REFERENCE_MODEL):
        return anchor_path(name, ctx.base)
    return name

