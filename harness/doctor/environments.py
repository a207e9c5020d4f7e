"""The doctor inside other Python environments: ``harness doctor --env NAME`` and ``--all-envs``.

Each environment has its own frameworks and its own pip CUDA wheels (``site-packages/nvidia/...``), so the
whole doctor runs there (``ENV/bin/python -m harness doctor --json``): the library search, the probes and
the verdicts all see what a job in that environment would see. The reports come back as JSON and are
printed as one table (:func:`~harness.doctor.formatting.format_reports`), so "TensorFlow in the default
environment: CUDA 12 libraries missing; TensorFlow in tf-gpu: ready" reads as two rows.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Sequence

from harness.doctor.verdicts import EXIT_NOT_READY
from harness.envs.interpreter import Interpreter

#: on top of the probes' own limit: starting the interpreter, the library search, the report
OVERHEAD_S = 120.0


def error_report(env: str, problem: str, fix: str | None) -> dict[str, Any]:
    """A report for an environment the doctor could not ask: one row saying why, exit status 3."""
    return {"environment": env, "errors": [problem], "exit_status": EXIT_NOT_READY, "duration_s": 0.0,
            "backends": {"(environment)": {"backend": "(environment)", "framework": None, "status": "unknown",
                                           "reason": problem, "fix": fix or "", "problems": [], "facts": None}}}


def doctor_args(backends: Sequence[str] | None, device: str | None, timeout: float | None,
                live: bool | None) -> list[str]:
    """The ``harness doctor`` options that carry over into another environment."""
    args = ["--json"]
    for name in backends or []:
        args += ["--backend", name]
    if device:
        args += ["--device", device]
    if timeout is not None:
        args += ["--timeout", repr(float(timeout))]
    if live:
        args.append("--live")
    return args


def env_doctor_report(interpreter: Interpreter, backends: Sequence[str] | None = None, device: str | None = None,
                      timeout: float | None = None, live: bool | None = None) -> dict[str, Any]:
    """The doctor's report from inside ``interpreter``'s environment; never raises for what it finds."""
    limit = None if not timeout else float(timeout) * 2 + OVERHEAD_S
    command = [interpreter.python, "-m", "harness", "doctor", *doctor_args(backends, device, timeout, live)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=interpreter.environ(),
                              check=False)
    except subprocess.TimeoutExpired:
        return error_report(interpreter.env, f"the doctor in environment {interpreter.env!r} did not finish "
                            f"within {limit:g} s", "raise --timeout")
    except OSError as exc:
        return error_report(interpreter.env, f"cannot start {interpreter.python}: {exc}",
                            f"rebuild it: harness env create {interpreter.env} --force")
    start = proc.stdout.find("{")
    try:
        report = json.loads(proc.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return error_report(interpreter.env, f"the doctor in environment {interpreter.env!r} gave no report "
                            f"(exit {proc.returncode}): {tail}", "run it there by hand: "
                            f"{interpreter.python} -m harness doctor")
    report["environment"] = interpreter.env
    report["interpreter"] = interpreter.to_dict()
    return report
