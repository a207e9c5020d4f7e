"""The settings a job can be given (from a suite file or the command line) and the one check of each.

A suite's ``frames = 0`` and the command line's ``--frames 0`` are the same mistake, so one table says what
each setting accepts and both get the same answer: the suite with its file and line, the command line with
its flag. Nothing here has a default value: what a job gets when nobody sets something lives in
:class:`harness.core.jobs.JobSpec` and :class:`harness.core.policy.PostprocessPolicy` only, so that "given" and "not
given" can always be told apart and an explicit flag always wins.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from harness.core.env_names import RESERVED_NAMES, is_env_name
from harness.core.errors import HarnessError
from harness.core.precision import VALUES as PRECISION_VALUES, is_precision

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
    return value in RESERVED_NAMES or is_env_name(value)
# scenarios: how frames reach the model, and the minimum measurement; lists are sweeps (one job
# per value), checked and spelled in harness.core.scenario
from harness.core import scenario as _scenario  # noqa: E402 - the block stays in one piece

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
