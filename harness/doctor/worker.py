"""The doctor's throwaway subprocesses: how one is started, and the one-line protocol it answers with.

Both sides live here so the protocol has one home: the parent runs ``PYTHON -m harness.doctor COMMAND ...``
and reads the last stdout line that starts with :data:`JSON_MARK`; the child (:func:`worker_main`, reached
through ``harness/doctor/__main__.py``) prints exactly that line. Everything else a framework prints on
stdout/stderr is left alone (stderr is kept for its CUDA log lines). The interpreter is a parameter so that
the same protocol can later ask another Python environment; that interpreter must be able to import
``harness`` (installed there, or on its ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Mapping, Sequence

JSON_MARK = "HARNESS_DOCTOR_JSON:"
USAGE = "usage: python -m harness.doctor probe MODULE:FUNC | probes MODULE:FUNC... | libraries PATH..."


@dataclass
class WorkerResult:
    """What came back from one subprocess; ``data`` is None when it gave no answer line."""

    data: Any
    stderr: str
    returncode: int | None  # None: it never finished (timed out) or never started
    seconds: float
    timed_out: bool = False
    start_error: str | None = None  # the interpreter could not be started at all


def run_worker(args: Sequence[str], timeout: float | None, env: Mapping[str, str] | None = None,
               python: str | None = None) -> WorkerResult:
    """Run ``python -m harness.doctor ARGS`` and parse its answer. ``timeout`` None: no limit."""
    start = time.perf_counter()
    exe = python or sys.executable
    try:
        proc = subprocess.run([exe, "-m", "harness.doctor", *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return WorkerResult(None, err, None, time.perf_counter() - start, timed_out=True)
    except OSError as exc:
        return WorkerResult(None, "", None, time.perf_counter() - start, start_error=f"{exe}: {exc}")
    seconds = time.perf_counter() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(JSON_MARK):
            try:
                return WorkerResult(json.loads(line[len(JSON_MARK):]), proc.stderr, proc.returncode, seconds)
            except json.JSONDecodeError:
                break
    return WorkerResult(None, proc.stderr, proc.returncode, seconds)


def _call_probe(target: str) -> dict[str, Any]:
    """Run the probe function ``MODULE:FUNC`` here; its facts as JSON-able data."""
    import importlib

    module_name, _, attr = target.partition(":")
    result = getattr(importlib.import_module(module_name), attr)()
    return asdict(result) if is_dataclass(result) else dict(result)


def worker_main(argv: Sequence[str]) -> int:
    """The child side: ``probe MODULE:FUNC`` runs one probe, ``probes MODULE:FUNC...`` several in one process
    (static probes only: they read files and import no framework), ``libraries PATH...`` dlopens libraries."""
    if argv and argv[0] == "libraries":
        from harness.doctor.dlopen import dlopen_versions

        print(JSON_MARK + json.dumps(dlopen_versions(argv[1:])), flush=True)
        return 0
    if len(argv) == 2 and argv[0] == "probe":
        print(JSON_MARK + json.dumps(_call_probe(argv[1]), default=str), flush=True)
        return 0
    if len(argv) >= 2 and argv[0] == "probes":
        # several probes in this one process, each answer with its own time; one that raises is left out
        # (the parent asks it again alone, where its failure is its own)
        answers: dict[str, Any] = {}
        for target in argv[1:]:
            start = time.perf_counter()
            try:
                answers[target] = {"data": _call_probe(target), "seconds": time.perf_counter() - start}
            except Exception:
                pass
        print(JSON_MARK + json.dumps(answers, default=str), flush=True)
        return 0
    print(f"unknown worker command: {' '.join(argv)}\n{USAGE}" if argv else USAGE, file=sys.stderr)
    return 2
