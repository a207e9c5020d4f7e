"""The run's flags as overrides of a suite: parsed and checked once, where the command line enters."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from harness.core.device import Device
from harness.core.errors import HarnessError
from harness.core.precision import Precision
from harness.core.settings import REFERENCE_MODEL, SETTINGS, problem_with
from harness.data.paths import anchor_path


@dataclass(frozen=True)
class RunOverrides:
    """What the command line said about the jobs, and only that: ``None`` or empty means "not given".

    So a flag typed with its default value still beats a suite (``--score-threshold 0.3`` next to a suite
    that says 0.5 means 0.3). ``harness run`` builds this from its arguments; the suite module never sees
    argparse. The axes (backends, models, videos, devices) replace a suite's; the settings override every job.
    """

    backends: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    frames: int | None = None
    warmup: int | None = None
    preprocess: str | None = None
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    score_threshold: float | None = None
    record_threshold: float | None = None
    top_k: int | None = None
    classes: tuple[int, ...] | None = None
    strict_device: bool | None = None
    timeout_s: float | None = None
    # envs-b: where the jobs run, an axis like devices (--env NAME, --python PATH; repeatable)
    envs: tuple[str, ...] = ()
    pythons: tuple[str, ...] = ()
    # scenarios: sweeps are tuples (one job per value)
    scenario: str | None = None
    batch: tuple[int, ...] | None = None
    streams: tuple[int, ...] | None = None
    instances: int | None = None
    fps: tuple[float, ...] | None = None
    queue: int | None = None
    qps: tuple[float, ...] | None = None
    latency_bound_ms: float | None = None
    min_duration_s: float | None = None
    min_frames: int | None = None
    loadgen: bool | None = None
    seed: int | None = None
    # precision: an axis like devices (each job once per precision), and the strict flag
    precisions: tuple[str, ...] = ()
    strict_precision: bool | None = None

    def __post_init__(self) -> None:
        devices = []
        for device in self.devices:
            try:
                devices.append(Device(device))
            except HarnessError as exc:
                raise HarnessError(f"--device {device}: {exc.problem}", exc.fix) from None
        object.__setattr__(self, "devices", tuple(devices))
        object.__setattr__(self, "precisions", tuple(Precision(p) for p in self.precisions))
        here = os.getcwd()  # paths typed on the command line are relative to where it was typed
        object.__setattr__(self, "models", tuple(
            m if m == REFERENCE_MODEL else anchor_path(m, here) for m in self.models))
        object.__setattr__(self, "videos", tuple(anchor_path(v, here) for v in self.videos))
        for key, value in self.settings().items():
            problem = problem_with(key, value)
            if problem:
                flag = SETTINGS[key].flag
                shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) \
                    if isinstance(value, (tuple, list)) else (f"{value:g}" if isinstance(value, float) else value)
                raise HarnessError(f"{flag} {shown}: {problem}", f"give {flag} {SETTINGS[key].expected}, or leave "
                                   "it out for the suite's or the default value")
        self._check_where(here)

    def _check_where(self, here: str) -> None:
        """``--env`` names spelled as names (whether each is defined is checked with the suite's [envs]),
        ``--python`` paths made absolute where they were typed."""
        from harness.suites.env_choice import python_path

        for name in self.envs:
            problem = problem_with("env", name)
            if problem:
                raise HarnessError(f"--env {name}: {problem}", "give --env NAME as `harness env list` shows it")
        for python in self.pythons:
            if problem_with("python", python):
                raise HarnessError(f"--python {python!r}: {SETTINGS['python'].expected}", "give the interpreter's path")
        object.__setattr__(self, "envs", tuple(dict.fromkeys(self.envs)))
        object.__setattr__(self, "pythons", tuple(dict.fromkeys(python_path(p, here) for p in self.pythons)))

    def settings(self) -> dict[str, Any]:
        """The job settings given, under their suite keys (what a suite's ``[defaults]`` would say)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in SETTINGS and f.name != "options":
                value = getattr(self, f.name)
                if value is not None:
                    out[f.name] = list(value) if f.name == "classes" else value
        if self.options:
            out["options"] = dict(self.options)
        return out
