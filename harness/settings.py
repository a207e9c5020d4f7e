"""The settings a job can be given (from a suite file or the command line) and the one check of each.

A suite's ``frames = 0`` and the command line's ``--frames 0`` are the same mistake, so one table says what
each setting accepts and both get the same answer: the suite with its file and line, the command line with
its flag. Nothing here has a default value: what a job gets when nobody sets something lives in
:class:`harness.jobs.JobSpec` and :class:`harness.policy.PostprocessPolicy` only, so that "given" and "not
given" can always be told apart and an explicit flag always wins.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.device import Device
from harness.errors import HarnessError
from harness.precision import VALUES as PRECISION_VALUES, Precision, is_precision

Check = Callable[[Any], bool]

#: the largest class id accepted: category ids are stored as integers, and every label map in use (COCO's 90,
#: LVIS's 1203, ImageNet-21k's 21841) is far below it
CLASS_ID_MAX = 2**31 - 1


@dataclass(frozen=True)
class Setting:
    """What one job setting accepts, said once for suites and flags alike."""

    check: Check
    expected: str
    flag: str | None = None  # the ``harness run`` flag that sets it, if any


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _size(v: Any) -> bool:
    if isinstance(v, str):
        return re.fullmatch(r"\s*\d+\s*[xX]\s*\d+\s*", v) is not None
    return isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v)


def _classes(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(_is_int(c) and 0 <= c <= CLASS_ID_MAX for c in v)


SETTINGS: dict[str, Setting] = {
    "frames": Setting(lambda v: _is_int(v) and v > 0, "a positive integer (frames per job)", "--frames"),
    "warmup": Setting(lambda v: _is_int(v) and v >= 0, "an integer >= 0 (warm-up inferences)", "--warmup"),
    "preprocess": Setting(lambda v: v in ("native", "shared"), '"native" or "shared"', "--preprocess"),
    "threads": Setting(lambda v: _is_int(v) and v > 0, "a positive integer (intra-op threads)", "--threads"),
    "options": Setting(lambda v: isinstance(v, Mapping), 'a table of backend options, e.g. { target = "opencl" }',
                       "--opt"),
    "record_threshold": Setting(lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]", "--record-threshold"),
    "score_threshold": Setting(lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]", "--score-threshold"),
    "top_k": Setting(lambda v: _is_int(v) and v > 0, "a positive integer", "--top-k"),
    "classes": Setting(_classes, f"a list of integer class ids from 0 to {CLASS_ID_MAX}, e.g. [1]", "--classes"),
    "strict_device": Setting(lambda v: isinstance(v, bool), "true or false", "--strict-device"),
    "timeout_s": Setting(lambda v: _is_num(v) and v >= 0, "a number of seconds >= 0 (0 = no limit)", "--timeout"),
    "input_size": Setting(_size, 'the network input size as [width, height] or "WxH"'),
    "target": Setting(lambda v: isinstance(v, str), 'a backend target string, e.g. "opencl" or "cuda_fp16" (OpenCV DNN)'),
    "dnn_backend": Setting(lambda v: isinstance(v, str), 'an OpenCV DNN backend name, e.g. "opencv", "cuda", "openvino"'),
    # envs-b: where a job runs (harness.envs); "is it defined" is checked where names are known
    "env": Setting(lambda v: _env_name(v), 'an environment name like "ocv4" ("default": the running one; '
                   '"gpu-layout": tf-gpu, torch-gpu or ort-gpu per backend when built)', "--env"),
    "python": Setting(lambda v: isinstance(v, str) and bool(v.strip()),
                      'the path of an existing Python interpreter that can import harness, e.g. '
                      '"/opt/tf220/bin/python"', "--python"),
    "precision": Setting(is_precision, f"one of {', '.join(PRECISION_VALUES)} (docs/precision.md)", "--precision"),
    "strict_precision": Setting(lambda v: isinstance(v, bool), "true or false", "--strict-precision"),
}


def _env_name(value: Any) -> bool:
    from harness.envs.spec import RESERVED_NAMES, is_env_name

    return value in RESERVED_NAMES or is_env_name(value)
# scenarios: how frames reach the model, and the minimum measurement; lists are sweeps (one job
# per value), checked and spelled in harness.scenarios.spec
from harness.scenarios import spec as _scenario  # noqa: E402 - the block stays in one piece

SETTINGS.update({
    "scenario": Setting(lambda v: v in _scenario.SCENARIOS, " | ".join(_scenario.SCENARIOS), "--scenario"),
    "batch": Setting(_scenario.positive_ints, "a positive integer or a list of them (offline: frames per call)",
                     "--batch"),
    "streams": Setting(_scenario.positive_ints, "a positive integer or a list of them (multi-stream: sources)",
                       "--streams"),
    "instances": Setting(lambda v: _is_int(v) and v > 0, "a positive integer (model instances)", "--instances"),
    "fps": Setting(_scenario.positive_numbers, "a positive number or a list of them (frames per second)", "--fps"),
    "queue": Setting(lambda v: _is_int(v) and v >= 0, "an integer >= 0 (realtime: frames that may wait)", "--queue"),
    "qps": Setting(_scenario.positive_numbers, "a positive number or a list of them (server: queries per second)",
                   "--qps"),
    "latency_bound_ms": Setting(lambda v: _is_num(v) and v > 0, "a positive number of milliseconds",
                                "--latency-bound"),
    "min_duration_s": Setting(lambda v: _is_num(v) and v >= 0, "a number of seconds >= 0", "--min-duration"),
    "min_frames": Setting(lambda v: _is_int(v) and v > 0, "a positive integer (timed frames)", "--min-frames"),
    "loadgen": Setting(lambda v: isinstance(v, bool), "true or false (MLPerf LoadGen issues the queries)", "--loadgen"),
    "seed": Setting(lambda v: _is_int(v) and v >= 0, "an integer >= 0 (arrival and LoadGen seeds)", "--seed"),
})

#: the model name meaning "each backend's form of the reference SSD" (JobSpec.model None)
REFERENCE_MODEL = "reference"

#: settings that go into JobSpec.options rather than their own JobSpec field: setting -> option name
OPTION_SETTINGS = {"input_size": "input_size", "target": "target", "dnn_backend": "backend"}


def problem_with(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for setting ``key`` ("expected ..."), or None when it is fine."""
    setting = SETTINGS[key]
    return None if setting.check(value) else f"expected {setting.expected}"


# the command line's spellings ----------------------------------------------------------------------------

def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; values that look like numbers or booleans become them."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HarnessError(f"option {pair!r} is not key=value", "write e.g. --opt input=image_tensor:0")
        lowered = value.lower()
        if lowered in {"true", "false"}:
            out[key] = lowered == "true"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def parse_classes(text: str) -> tuple[int, ...]:
    """``--classes 1,3`` as class ids; a stray comma or a word is an error, not a silently dropped id."""
    fix = "write class ids separated by single commas, e.g. --classes 1 (persons in a COCO model) or --classes 1,3"
    ids: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise HarnessError(f"--classes {text!r}: an empty class id (a doubled or trailing comma?)", fix)
        try:
            ids.append(int(part))
        except ValueError:
            raise HarnessError(f"--classes {text!r}: {part!r} is not an integer class id", fix) from None
    return tuple(ids)


# paths ----------------------------------------------------------------------------------------------------

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def anchor_path(value: str, base: Path | str) -> str:
    """A job's video or model as it should be stored: an absolute path when it is one, else unchanged.

    A relative path is taken relative to ``base`` (the current folder for flags, the suite file's folder for a
    suite) and stored absolute, so nothing resolves it against another folder later (a worker, ``--resume``
    from elsewhere). Asset names stay names, and so do handles with a scheme (``hub:...``, ``https://...``,
    ``torchvision:...``). Anything path-like (a ``/`` or a file suffix) is anchored even when it does not
    exist, so the error that follows names the place that was looked at, not a file found elsewhere.
    """
    if not value or _SCHEME.match(value) or value in _asset_names():
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base) / path
    looks_like_path = any(sep in value for sep in ("/", os.sep)) or bool(Path(value).suffix)
    if path.exists() or looks_like_path:
        return os.path.normpath(os.path.abspath(path))
    return value


def _asset_names() -> set[str]:
    from harness.assets import load_manifests

    try:
        return set(load_manifests())
    except HarnessError:  # a broken manifest is reported where assets are used
        return set()


# threads --------------------------------------------------------------------------------------------------

def logical_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def oversubscription_note(threads: int | None) -> str | None:
    """A note when a job asks for more threads than there are CPUs: measured here, 999 threads on 2 cores
    made the median 3.5x slower, so such a number is worth a word in the results, not silence."""
    cpus = logical_cpus()
    if threads is None or threads <= cpus:
        return None
    return (f"{threads} threads on {cpus} logical CPU(s): the framework's threads compete for the cores, "
            "so latency is likely worse than with at most one thread per CPU")


# what the command line gives ------------------------------------------------------------------------------

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
        from harness.envs.choice import python_path

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
