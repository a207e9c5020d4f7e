"""What this machine offers a suite's ``when`` conditions: which backends are installed, and which can use a
GPU, per ``harness doctor`` (in the running environment, or in the environment a job runs in).

The doctor probes every framework (seconds, not milliseconds), so its report is made once per process.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable

from harness.suites.env_choice import EnvChoices
from harness.core.env_names import DEFAULT_ENV


@dataclass(frozen=True)
class HostProbes:
    """The questions a suite asks about this machine. harness.suites.expand hands in its own functions at each load,
    so that they can be replaced there (a test that plays a GPU machine, say)."""

    installed: Callable[[], list[str]]  #: the backends whose frameworks are installed
    gpu_ready: Callable[[str], bool]  #: whether a backend can use a GPU in the running environment
    has_gpu: Callable[[], bool]  #: whether any GPU is visible here at all


@functools.cache
def doctor() -> Any:
    """The doctor's report, made once per process (it probes every framework: seconds, not milliseconds)."""
    try:
        from harness.doctor import doctor_report

        return doctor_report()
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - an unreadable doctor means "not known to be ready"
        return None


def truthy_ready(entry: Any) -> bool | None:
    """A doctor entry's word on GPU readiness, in whichever key this doctor's version uses; None if it has none."""
    if not isinstance(entry, dict):
        return None
    for key in ("gpu_ready", "ready", "gpu_usable", "usable"):
        if key in entry and isinstance(entry[key], bool):
            return entry[key]
    verdict = entry.get("status") or entry.get("verdict")  # harness.doctor: gpu-ready | cpu-only | mismatch | ...
    if isinstance(verdict, str):
        return verdict.lower() in ("gpu-ready", "gpu ready", "ready")
    return None


def gpu_ready(backend: str) -> bool:
    """Whether ``harness doctor`` says this backend can use a GPU here (False when nobody can tell)."""
    report = doctor()
    if report is None:
        # no doctor in this build: a GPU is at least possible only where the NVIDIA driver is there
        return bool(shutil.which("nvidia-smi")) and os.path.exists("/dev/nvidia0")
    entries = report.get("backends") if isinstance(report, dict) else None
    if isinstance(entries, dict):
        found = truthy_ready(entries.get(backend))
        if found is not None:
            return found
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and (entry.get("backend") == backend or entry.get("name") == backend):
                found = truthy_ready(entry)
                if found is not None:
                    return found
    return False


def machine_has_gpu() -> bool:
    """Whether any GPU is visible here (the doctor's system facts), before asking any environment."""
    report = doctor()
    system = report.get("system") if isinstance(report, dict) else None
    if isinstance(system, dict) and isinstance(system.get("visible_gpus"), int):
        return system["visible_gpus"] > 0
    return bool(shutil.which("nvidia-smi")) and os.path.exists("/dev/nvidia0")


def gpu_ready_where(merged: dict[str, Any], choices: EnvChoices, probes: HostProbes) -> bool:
    """gpu-ready for the job's backend where the job runs: the doctor of that environment or interpreter."""
    env, python = merged.get("env") or DEFAULT_ENV, merged.get("python")
    if not python and env == DEFAULT_ENV:
        return probes.gpu_ready(merged["backend"])
    if not probes.has_gpu():
        return False
    return choices.gpu_ready(merged["backend"], env=env, python=python)
