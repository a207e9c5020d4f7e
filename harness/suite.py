"""Which jobs a run means: from command-line flags, from a suite file (TOML), or the embedded default suite.

A suite file is a matrix ``backends x models x videos x devices`` plus single ``[[job]]`` entries, with
settings that can be given for every job (``[defaults]``) or per matrix entry (an entry is a name or an
inline table ``{ name = "opencv", options = { target = "opencl" } }``). The file is checked before anything
runs: a mistake is reported once, with the file, the line and key, and what was expected, because a typo
found after an hour of benchmarking costs an hour. The format is documented in docs/suites-and-reports.md.

The command line reaches this module only as a :class:`~harness.settings.RunOverrides` (what the user typed,
nothing else), so an explicit flag always beats the suite, and defaults live in JobSpec and
PostprocessPolicy alone.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.detector import is_accelerator_request, parse_device
from harness.envs.choice import EnvChoices, python_path
from harness.envs.spec import DEFAULT_ENV, GPU_LAYOUT_ENV, EnvSpec
from harness.errors import HarnessError, did_you_mean
from harness.jobs import JobSpec, check_machine
from harness.policy import PostprocessPolicy
from harness.registry import installed_backends
from harness.scenarios.spec import ScenarioSpec, sweep_levels  # scenarios (issue 14)
from harness.settings import OPTION_SETTINGS, REFERENCE_MODEL, SETTINGS, RunOverrides, anchor_path, problem_with

DEFAULT_SOURCE = "pets09-s2l1"
DEFAULT_SUITE = Path(__file__).parent / "suites" / "default.toml"

#: JobSpec fields a suite or the command line may set directly (the policy's keys go through PostprocessPolicy)
_SPEC_FIELDS = ("frames", "warmup", "preprocess", "threads", "strict_device", "timeout_s")


def _spec(merged: dict[str, Any]) -> JobSpec:
    """A JobSpec from merged settings: only what was given is passed, so JobSpec's and PostprocessPolicy's
    own defaults are the only ones."""
    options = dict(merged.get("options") or {})
    for key, option in OPTION_SETTINGS.items():
        if key in merged:
            value = merged[key]
            if key == "input_size" and isinstance(value, list):
                value = f"{value[0]}x{value[1]}"
            options[option] = value.replace(" ", "") if isinstance(value, str) else value
    model = merged.get("model")
    given = {key: merged[key] for key in _SPEC_FIELDS if merged.get(key) is not None}
    given.update({key: merged[key] for key in ("env", "python") if merged.get(key)})  # envs-b (issue 12)
    given.update({k: merged[k] for k in ("precision", "strict_precision") if merged.get(k) is not None})  # issue 15
    if "timeout_s" in given:
        given["timeout_s"] = float(given["timeout_s"])
    spec = JobSpec(
        backend=merged["backend"],
        source=merged["video"],
        model=None if model in (None, REFERENCE_MODEL, "") else model,
        device=merged["device"],
        options=options,
        policy=PostprocessPolicy.from_dict(merged),
        machine=merged.get("machine"),  # ray (issue 13)
        resources=merged.get("resources") or {},
        scenario=ScenarioSpec.from_dict(merged),  # scenarios (issue 14)
        **given,
    )
    if merged.get("tag"):
        object.__setattr__(spec, "job_id", f"{spec.job_id}_{merged['tag']}")
    return spec


def jobs_from_flags(overrides: RunOverrides) -> list[JobSpec]:
    """``harness run --backend ...``: the product of the given backends, models, videos, devices and
    environments (``--env``/``--python``)."""
    settings = overrides.settings()
    models = overrides.models or (REFERENCE_MODEL,)
    videos = overrides.videos or (DEFAULT_SOURCE,)
    devices = overrides.devices or ("cpu",)
    repeated = sorted({b for b in overrides.backends if overrides.backends.count(b) > 1})
    if repeated:  # envs-b (issue 12): `-b opencv --env ocv4 -b opencv` reads like a pairing; axes don't pair
        raise HarnessError(f"--backend {', '.join(repeated)} is given more than once; the flags are axes, so the "
                           "same backend twice would be the same jobs twice",
                           "to run one backend in several environments, give --env once per environment: "
                           "-b opencv --env default --env ocv4")
    choices = _flag_choices(overrides)
    wheres = _where_entries(overrides) or [{"name": None}]
    precisions = [{"precision": p} for p in overrides.precisions] or [{}]  # precision (issue 15)
    return [_spec(level) for b, m, v, d, w, p in itertools.product(overrides.backends, models, videos, devices,
                                                                    wheres, precisions)
            for level in sweep_levels({**settings, **_where(w, b, choices), **p, "backend": b, "model": m,
                                       "video": v, "device": d})]


# envs-b (issue 12): where jobs run -------------------------------------------------------------------------

def _flag_choices(overrides: RunOverrides, suite_envs: dict[str, EnvSpec] | None = None) -> EnvChoices:
    """The run's environment names, each ``--env`` checked against them (one error listing the defined)."""
    choices = EnvChoices(suite_envs, report=_print_note)
    for name in overrides.envs:
        error = choices.problem(name)
        if error is not None:
            raise HarnessError(f"--env {name}: {error.problem}", error.fix)
    return choices


def _print_note(text: str) -> None:
    import sys

    print(f"note: {text}", file=sys.stderr)


def _where_entries(overrides: RunOverrides) -> list[dict[str, Any]]:
    """The command line's environments axis: ``--env`` names, then ``--python`` interpreters."""
    return [{"name": e} for e in overrides.envs] + [{"name": None, "python": p} for p in overrides.pythons]


def _where(entry: dict[str, Any], backend: str, choices: EnvChoices) -> dict[str, Any]:
    """The ``env``/``python`` keys an environments-axis entry gives a job of ``backend`` (``gpu-layout``
    resolved); none for the empty entry of a suite without the axis."""
    if entry.get("python"):
        return {"python": entry["python"], "env": DEFAULT_ENV}
    if entry.get("name") is None:
        return {}
    return {"env": choices.for_backend(entry["name"], backend), "python": None}


def _check_envs_axis_entry(ctx: "_Ctx", item: dict[str, Any], keypath: list[str | int]) -> dict[str, Any]:
    """An ``envs`` matrix entry table: a name, or ``python = PATH`` (an interpreter), with job settings."""
    name, python = item.get("name"), item.get("python")
    if name is not None and python is not None:
        raise ctx.error(keypath + ["python"], "an envs entry is an environment name or a python path, not both",
                        'write { name = "ocv4" } or { python = "/opt/tf220/bin/python" }')
    if python is None and (not isinstance(name, str) or not name):
        raise ctx.error(keypath, "an envs entry table needs a name (or python = PATH)",
                        'write { name = "ocv4", ... } or { python = "/opt/tf220/bin/python" }')
    _check_settings(ctx, {k: v for k, v in item.items() if k not in ("name", "env")}, keypath, [])
    if "env" in item:
        raise ctx.error(keypath + ["env"], "an envs entry names its environment with name", 'write { name = "..." }')
    entry = dict(item)
    if python is not None:
        entry["python"] = python_path(python, ctx.base)
        entry["name"] = None
    return entry


def _suite_envs(ctx: "_Ctx", table: Any) -> dict[str, EnvSpec]:
    """The ``[envs.NAME]`` tables: requirements (a list of pip requirements), python ("3.11"), description."""
    if table is None:
        return {}
    out: dict[str, EnvSpec] = {}
    for name, body in table.items():
        keypath: list[str | int] = ["envs", name]
        if not isinstance(body, dict):
            raise ctx.error(keypath, f"expected a table, got {body!r}",
                            f'write [envs.{name}] then requirements = ["opencv-python==4.14.*"]')
        for key in body:
            if key not in ENV_TABLE_KEYS:
                raise ctx.error(keypath + [key], f"unknown key.{did_you_mean(key, ENV_TABLE_KEYS)}",
                                f"an [envs.NAME] table takes: {', '.join(ENV_TABLE_KEYS)}")
        reqs = body.get("requirements")
        if not isinstance(reqs, list) or not reqs or not all(isinstance(r, str) and r.strip() for r in reqs):
            raise ctx.error(keypath + ["requirements"], f"expected a non-empty list of pip requirements, got {reqs!r}",
                            'write requirements = ["opencv-python==4.14.*"]')
        python = body.get("python")
        if python is not None and not isinstance(python, str):
            raise ctx.error(keypath + ["python"], f"expected a Python version as a string, got {python!r}",
                            'write python = "3.11" (quoted: 3.10 unquoted would be the number 3.1)')
        description = body.get("description", "")
        if not isinstance(description, str):
            raise ctx.error(keypath + ["description"], "expected a string", 'write description = "..."')
        try:
            out[name] = EnvSpec.make(name, reqs, python, description)
        except HarnessError as exc:
            key = "python" if "python" in exc.problem and python is not None and "requirement" not in exc.problem \
                else ("requirements" if "requirement" in exc.problem else None)
            bad = next((r for r in reqs if repr(r) in exc.problem), None)
            raise ctx.error(keypath + ([key] if key else []), exc.problem, exc.fix, value=bad) from None
    return out


def suite_envs(path: Path | str | None = None, *, text: str | None = None) -> dict[str, EnvSpec]:
    """The ``[envs.NAME]`` specs of a suite file (of the default suite for ``None``): what a run ensures
    before its first job, besides the environments already registered."""
    if path is None:
        path, text = DEFAULT_SUITE, default_suite_text()
    ctx, data = _read(path, text)
    return _suite_envs(ctx, data.get("envs"))


# ------------------------------------------------------------------------------------------------------
# suite files
# ------------------------------------------------------------------------------------------------------

WHEN_VALUES = ("installed", "gpu-ready")

#: keys a suite accepts beside the job settings of harness.settings: (check, expected)
_SUITE_ONLY: dict[str, tuple[Callable[[Any], bool], str]] = {
    "when": (lambda v: (v in WHEN_VALUES) or (isinstance(v, list) and all(x in WHEN_VALUES for x in v)),
             f"one of {', '.join(repr(w) for w in WHEN_VALUES)} or a list of them"),
    "tag": (lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9._-]+", v) is not None,
            "a short name made of letters, digits, '.', '_' or '-' (appended to the job id)"),
}
SUITE_KEYS = sorted([*SETTINGS, *_SUITE_ONLY])

MATRIX_AXES = {"backends": "backend", "models": "model", "videos": "video", "devices": "device",
               "envs": "env"}  # envs-b (issue 12): the environments axis
TOP_LEVEL = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "defaults": (lambda v: isinstance(v, dict), "a table of job settings"),
    "matrix": (lambda v: isinstance(v, dict), "a table with backends, models, videos, devices"),
    "job": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "[[job]] tables"),
    "exclude": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "[[exclude]] tables"),
    # envs-b (issue 12): environments the suite's jobs run in, built before the first job
    "envs": (lambda v: isinstance(v, dict), "[envs.NAME] tables with requirements = [...]"),
}
JOB_KEYS = ("backend", "model", "video", "device")
#: envs-b (issue 12): what an [envs.NAME] table holds; what [[exclude]] can match besides JOB_KEYS
ENV_TABLE_KEYS = ("requirements", "python", "description")
EXCLUDE_KEYS = (*JOB_KEYS, "env", "python", "machine", "precision", "scenario")  # precision 15, scenarios 14

# ray (issue 13): the machines axis: where a job must run on a Ray cluster --------------------------------
#: ``machines = ["orin", { name = "any-gpu", resources = { GPU = 1 } }]``: a name alone means the custom
#: resource of that name (``ray start --resources '{"orin": 1}'``); a table names the resources a node needs
MACHINES_AXIS = "machines"


def _machine_entry(ctx: "_Ctx", item: Any, keypath: list[str | int]) -> dict[str, Any]:
    """One machine as the job settings it adds: ``machine`` (its name, in the job id) and ``resources``."""
    fix = 'write machines = ["orin", { name = "any-gpu", resources = { GPU = 1 } }]'
    if isinstance(item, str) and item:
        item = {"name": item, "resources": {item: 1}}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise ctx.error(keypath, f"expected a machine name or a {{ name = ..., resources = {{...}} }} table, "
                        f"got {item!r}", fix)
    unknown = sorted(set(item) - {"name", "resources"})
    if unknown:
        raise ctx.error(keypath + [unknown[0]], "unknown key in a machine entry", fix)
    try:
        resources = check_machine(item["name"], item.get("resources", {}))  # the one check, as JobSpec's
    except HarnessError as exc:
        raise ctx.error(keypath, exc.problem, exc.fix, value=item["name"]) from None
    return {"machine": item["name"], "resources": resources}


def _machines(ctx: "_Ctx", matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """The matrix's machines axis ([no machine] when absent: the job runs wherever the executor runs it)."""
    raw = matrix.get(MACHINES_AXIS)
    if raw is None:
        return [{"machine": None, "resources": {}}]
    if not isinstance(raw, list) or not raw:
        raise ctx.error(["matrix", MACHINES_AXIS], f"expected a non-empty list of machines, got {raw!r}",
                        'write machines = ["orin", { name = "any-gpu", resources = { GPU = 1 } }]')
    return [_machine_entry(ctx, item, ["matrix", MACHINES_AXIS, i]) for i, item in enumerate(raw)]


def _job_machine(ctx: "_Ctx", job: dict[str, Any], i: int, matrix: dict[str, Any] | None) -> dict[str, Any]:
    """A [[job]]'s ``machine``: a name of the matrix's machines axis, or its own table."""
    given = job.get("machine")
    if given is None:
        return {"machine": None, "resources": {}}
    if isinstance(given, str) and matrix and matrix.get(MACHINES_AXIS) is not None:
        named = {m["machine"]: m for m in _machines(ctx, matrix)}
        if given in named:
            return named[given]
    return _machine_entry(ctx, given, ["job", i, "machine"])

# precision (issue 15): ``precisions = ["fp32", "int8"]`` in [matrix] makes each job once per precision; an
# entry is a word or a table { name = "int8", options = { calibration = "tud-campus" } }. --precision replaces it.
PRECISION_AXIS = "precisions"


class SuiteError(HarnessError):
    """A suite file that can't be used as written."""


@dataclass
class _Ctx:
    """Where a suite came from, so that every error can name the file and line, and relative paths have a
    folder to be relative to (the suite file's own)."""

    path: str
    text: str
    base: Path
    lines: list[str] = field(init=False)
    choices: EnvChoices = field(default_factory=EnvChoices)  # envs-b (issue 12): the names jobs may run in

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def line_of(self, keypath: list[str | int], value: str | None = None) -> int | None:
        """The 1-based line where the last named key of ``keypath`` is set (best effort, by scanning text);
        with ``value``, the first line from there that holds that string (an entry of a multi-line list).

        tomllib keeps no positions, so the table header is found first (``[matrix]``, the n-th ``[[job]]``),
        then the key after it.
        """
        start = 0
        names = [k for k in keypath if isinstance(k, str)]
        if not names:
            return None
        head = names[0]
        if head == "envs" and len(names) >= 2:  # envs-b (issue 12): [envs.NAME] headers
            header = next((i for i, ln in enumerate(self.lines)
                           if re.match(rf"\s*\[\s*envs\s*\.\s*[\"']?{re.escape(names[1])}[\"']?\s*\]", ln)), None)
            if header is not None:
                if len(names) == 2:
                    return header + 1
                start, names = header, names[1:]
        if head in ("job", "exclude"):
            index = next((k for k in keypath[1:2] if isinstance(k, int)), 0)
            headers = [i for i, ln in enumerate(self.lines) if re.match(rf"\s*\[\[\s*{head}\s*\]\]", ln)]
            if index < len(headers):
                start = headers[index]
                if len(names) == 1:
                    return start + 1
        else:
            for i, ln in enumerate(self.lines):
                if re.match(rf"\s*\[\s*{re.escape(head)}\s*\]", ln):
                    start = i
                    if len(names) == 1:
                        return i + 1
                    break
        key = names[-1]
        pattern = re.compile(rf"(^|[{{,\s])\"?{re.escape(key)}\"?\s*=")
        for i in range(start, len(self.lines)):
            if pattern.search(self.lines[i].split("#", 1)[0]):
                if value is not None:
                    quoted = re.compile(rf"[\"']{re.escape(value)}[\"']")
                    return next((j + 1 for j in range(i, len(self.lines))
                                 if quoted.search(self.lines[j].split("#", 1)[0])), i + 1)
                return i + 1
        return start + 1 if start else None

    def error(self, keypath: list[str | int], problem: str, fix: str | None, value: str | None = None) -> SuiteError:
        where = self.path
        line = self.line_of(keypath, value)
        if line:
            where += f":{line}"
        return SuiteError(f"{where}: {_fmt_path(keypath)}: {problem}", fix)


def _fmt_path(keypath: list[str | int]) -> str:
    out = ""
    for k in keypath:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def _check_settings(ctx: _Ctx, table: dict[str, Any], keypath: list[str | int], allowed_extra: Iterable[str]) -> None:
    extra = set(allowed_extra)
    for key, value in table.items():
        if key in extra:
            continue
        if key == "timeout":  # accepted alias
            key = "timeout_s"
        if key in _SUITE_ONLY:
            check, expected = _SUITE_ONLY[key]
            problem = None if check(value) else f"expected {expected}"
        elif key in SETTINGS:
            problem, expected = problem_with(key, value), SETTINGS[key].expected
        else:
            known = sorted(set(SUITE_KEYS) | extra)
            raise ctx.error(keypath + [key], f"unknown key.{did_you_mean(key, known)}",
                            f"use one of: {', '.join(known)}")
        if problem:
            raise ctx.error(keypath + [key], f"{problem}, got {value!r}", f"write {key} as {expected}")
        if key == "env" and ctx.choices.problem(value) is not None:  # envs-b (issue 12): a defined one
            error = ctx.choices.problem(value)
            raise ctx.error(keypath + [key], error.problem, error.fix)


def _axis_value(ctx: _Ctx, axis: str, name: str, keypath: list[str | int]) -> str:
    """An entry's name as a job will hold it: a checked device, a video or model path made absolute against
    the suite's folder (asset names stay names)."""
    if axis == "device":
        try:
            return parse_device(name)
        except HarnessError as exc:
            raise ctx.error(keypath, exc.problem, exc.fix, value=name) from None
    if axis == "env":  # envs-b (issue 12)
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


def _entries(ctx: _Ctx, matrix: dict[str, Any], axis: str) -> list[dict[str, Any]]:
    """One matrix list as entry tables ``{"name": ..., settings...}``."""
    raw = matrix.get(axis)
    keypath: list[str | int] = ["matrix", axis]
    if raw is None:
        if axis == "backends":
            raise ctx.error(keypath, "missing", 'list the backends, e.g. backends = ["tf1", "opencv"] or "installed"')
        if axis == "envs":  # envs-b (issue 12): no axis: each job's own env/python key, else the default
            return [{"name": None}]
        default = {"models": REFERENCE_MODEL, "videos": DEFAULT_SOURCE, "devices": "cpu"}[axis]
        return [{"name": default}]
    if axis == "backends" and raw == "installed":
        return [{"name": b, "_from_installed": True} for b in installed_backends()]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ctx.error(keypath, f"expected a list of names or {{ name = ... }} tables, got {raw!r}",
                        f'write e.g. {axis} = ["a", {{ name = "b", frames = 100 }}]')
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item:
            entry = {"name": item}
        elif isinstance(item, dict) and axis == "envs":  # envs-b (issue 12): a name or python = PATH
            entry = _check_envs_axis_entry(ctx, item, keypath + [i])
            if entry["name"] is None:
                out.append(entry)
                continue
        elif isinstance(item, dict):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ctx.error(keypath + [i], "an entry table needs a name", 'write { name = "...", ... }')
            _check_settings(ctx, item, keypath + [i], ["name"])
            if axis != "envs" and matrix.get("envs") is not None:  # envs-b (issue 12)
                both = next((k for k in ("env", "python") if k in item), None)
                if both:
                    raise ctx.error(keypath + [i, both], f"the matrix has an envs axis, so a {axis} entry "
                                    f"cannot also set {both}", "name the environments in matrix.envs only, or "
                                    "move this job to a [[job]] table with its own env/python")
            entry = dict(item)
        else:
            raise ctx.error(keypath + [i], f"expected a name or a {{ name = ... }} table, got {item!r}",
                            "write the entry as a string or an inline table")
        entry["name"] = _axis_value(ctx, MATRIX_AXES[axis], entry["name"], keypath + [i])
        out.append(entry)
    return out


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; ``options`` tables merge key by key; ``when`` conditions add up."""
    out: dict[str, Any] = {"options": {}, "when": []}
    for layer in layers:
        for key, value in layer.items():
            if key == "options":
                out["options"].update(value)
            elif key == "when":
                out["when"] += [value] if isinstance(value, str) else list(value)
            elif key == "tag":
                out["tag"] = f"{out['tag']}_{value}" if out.get("tag") else value
            elif key == "timeout":
                out["timeout_s"] = value
            elif key in ("env", "python"):  # envs-b (issue 12): one place a job runs; the latest layer says it
                out.pop("python" if key == "env" else "env", None)
                out[key] = value
            else:
                out[key] = value
    return out


# GPU readiness ------------------------------------------------------------------------------------------

@functools.cache
def _doctor() -> Any:
    """The doctor's report, made once per process (it probes every framework: seconds, not milliseconds)."""
    try:
        from harness.doctor import doctor_report

        return doctor_report()
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - an unreadable doctor means "not known to be ready"
        return None


def _truthy_ready(entry: Any) -> bool | None:
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
    report = _doctor()
    if report is None:
        # no doctor in this build: a GPU is at least possible only where the NVIDIA driver is there
        return bool(shutil.which("nvidia-smi")) and os.path.exists("/dev/nvidia0")
    entries = report.get("backends") if isinstance(report, dict) else None
    if isinstance(entries, dict):
        found = _truthy_ready(entries.get(backend))
        if found is not None:
            return found
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and (entry.get("backend") == backend or entry.get("name") == backend):
                found = _truthy_ready(entry)
                if found is not None:
                    return found
    return False


# loading ----------------------------------------------------------------------------------------------

def _read(path: Path | str, text: str | None = None) -> tuple[_Ctx, dict[str, Any]]:
    base = Path(path).expanduser().absolute().parent
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SuiteError(f"suite file {path} does not exist", "give the path of a .toml suite file "
                             "(see docs/suites-and-reports.md), or omit it for the default suite") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SuiteError(f"cannot read suite file {path}: {exc}", "check the file's permissions and encoding")
    ctx = _Ctx(path, text, base)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # the message ends with "(at line L, column C)"
        raise SuiteError(f"{path}: not valid TOML: {exc}", "fix the syntax at that line (strings need quotes, "
                         "lists need [ ], tables need [name] headers)") from None
    return ctx, data


def _check_top_level(ctx: _Ctx, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if key not in TOP_LEVEL:
            raise ctx.error([key], f"unknown top-level key.{did_you_mean(key, TOP_LEVEL)}",
                            f"use: {', '.join(TOP_LEVEL)} (job settings go under [defaults])")
        check, expected = TOP_LEVEL[key]
        if not check(value):
            raise ctx.error([key], f"expected {expected}", "see docs/suites-and-reports.md for the format")


#: a candidate job: its merged settings and where it came from ("matrix" or "job[i]")
Candidate = tuple[dict[str, Any], str]


def _strip(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: x for k, x in entry.items() if k not in ("name", "_from_installed")}


def _matrix_candidates(ctx: _Ctx, matrix: dict[str, Any] | None, defaults: dict[str, Any],
                       over: RunOverrides) -> tuple[list[Candidate], list[str]]:
    """The matrix's product (with the command line's axes in place of the suite's), and its empty axes."""
    if matrix is None:
        return [], []
    for key in matrix:
        if key not in MATRIX_AXES and key not in (MACHINES_AXIS, PRECISION_AXIS):  # ray (13), precision (15)
            axes_known = [*MATRIX_AXES, MACHINES_AXIS, PRECISION_AXIS]
            raise ctx.error(["matrix", key], f"unknown matrix axis.{did_you_mean(key, axes_known)}",
                            f"the axes are: {', '.join(axes_known)}")
    axes = {axis: _entries(ctx, matrix, axis) for axis in MATRIX_AXES}
    for axis, given in (("videos", over.videos), ("models", over.models), ("devices", over.devices)):
        if given:
            axes[axis] = [{"name": name} for name in given]
    if over.envs or over.pythons:  # envs-b (issue 12): --env/--python replace the envs axis
        axes["envs"] = _where_entries(over)
    empty_axes = [a for a, entries in axes.items() if not entries]
    precisions = _precision_layers(ctx, matrix, over)  # precision (issue 15)
    candidates = []
    machines = _machines(ctx, matrix)  # ray (issue 13)
    for b, m, v, d, e in itertools.product(*(axes[a] for a in MATRIX_AXES)):
        for machine, p in itertools.product(machines, precisions):
            merged = _merge(defaults, *(_strip(x) for x in (b, m, v, d, e)), p)
            merged.update(backend=b["name"], model=m["name"], video=v["name"], device=d["name"], **machine)
            if e["name"] is not None:
                merged = _merge(merged, {"env": e["name"]})
            candidates.append((merged, "matrix"))
    return candidates, empty_axes


def _job_candidates(ctx: _Ctx, job_tables: list[dict[str, Any]], defaults: dict[str, Any],
                    over: RunOverrides, matrix: dict[str, Any] | None = None) -> list[Candidate]:
    """The ``[[job]]`` entries; the command line's videos, models and devices make one of each per entry."""
    candidates = []
    for i, job in enumerate(job_tables):
        if "backend" not in job or not isinstance(job["backend"], str):
            raise ctx.error(["job", i, "backend"], "each [[job]] needs a backend name", 'add backend = "tf1"')
        for key in ("model", "video", "device"):
            if key in job and not isinstance(job[key], str):
                raise ctx.error(["job", i, key], f"expected a string, got {job[key]!r}", f'write {key} = "..."')
        _check_settings(ctx, job, ["job", i], (*JOB_KEYS, "machine"))
        machine = _job_machine(ctx, job, i, matrix)  # ray (issue 13)
        merged = _merge(defaults, {k: x for k, x in job.items() if k not in JOB_KEYS and k != "machine"}, machine)
        own = {key: _axis_value(ctx, key, job.get(key, default), ["job", i, key])
               for key, default in (("model", REFERENCE_MODEL), ("video", DEFAULT_SOURCE), ("device", "cpu"))}
        models = over.models or (own["model"],)
        videos = over.videos or (own["video"],)
        devices = over.devices or (own["device"],)
        wheres = _where_entries(over) or [{"name": None}]  # envs-b (issue 12): --env/--python, one job each
        precisions = [{"precision": p} for p in over.precisions] or [{}]  # precision (issue 15)
        for m, v, d, w, p in itertools.product(models, videos, devices, wheres, precisions):
            where = {"python": w["python"]} if w.get("python") else ({"env": w["name"]} if w["name"] else {})
            candidates.append(({**_merge(merged, where), **p, "backend": job["backend"], "model": m, "video": v,
                                "device": d}, f"job[{i}]"))
    return candidates


# precision (issue 15) ----------------------------------------------------------------------------------

def _precision_layers(ctx: _Ctx, matrix: dict[str, Any], over: RunOverrides) -> list[dict[str, Any]]:
    """The matrix's precisions as setting layers (``{"precision": "int8", ...}``); ``[{}]`` when the suite
    names none (each job then asks for no precision); the command line's ``--precision`` replaces them."""
    if over.precisions:
        return [{"precision": p} for p in over.precisions]
    raw = matrix.get(PRECISION_AXIS)
    if raw is None:
        return [{}]
    keypath: list[str | int] = ["matrix", PRECISION_AXIS]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ctx.error(keypath, f"expected a list of precisions, got {raw!r}",
                        f'write e.g. precisions = ["fp32", "int8"]: {SETTINGS["precision"].expected}')
    layers = []
    for i, item in enumerate(raw):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ctx.error(keypath + [i], f"expected a precision or a {{ name = ... }} table, got {item!r}",
                            'write e.g. "int8" or { name = "int8", options = { calibration = "tud-campus" } }')
        problem = problem_with("precision", entry["name"])
        if problem:
            raise ctx.error(keypath + [i], f"{problem}, got {entry['name']!r}", "see docs/precision.md",
                            value=entry["name"])
        _check_settings(ctx, entry, keypath + [i], ["name"])
        layers.append({**_strip(entry), "precision": entry["name"]})
    return layers


def _excludes(ctx: _Ctx, tables: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The ``[[exclude]]`` rules, their values in the form the matrix entries have (checked devices,
    absolute paths), so that a rule matches what it names."""
    out = []
    for i, ex in enumerate(tables):
        rule = {}
        for key, value in ex.items():
            if key not in EXCLUDE_KEYS:
                raise ctx.error(["exclude", i, key], "unknown key in [[exclude]]",
                                f"match on: {', '.join(EXCLUDE_KEYS)}")
            if not isinstance(value, str):
                raise ctx.error(["exclude", i, key], f"expected a string, got {value!r}", f'write {key} = "..."')
            rule[key] = _axis_value(ctx, key, value, ["exclude", i, key])
        out.append(rule)
    return out


def _empty_matrix(ctx: _Ctx, matrix: dict[str, Any] | None, empty_axes: list[str]) -> SuiteError:
    if empty_axes:
        verb = "is" if len(empty_axes) == 1 else "are"
        why = f"matrix.{' and matrix.'.join(empty_axes)} {verb} empty"
    else:
        why = "it has no [matrix] and no [[job]]"
    if matrix is not None and matrix.get("backends") == "installed" and "backends" in empty_axes:
        why = 'backends = "installed" but no backend is installed'
    return SuiteError(f"{ctx.path}: the suite has an empty matrix: {why}",
                      "list at least one backend, model, video and device (or add a [[job]])")


def _rule_value(merged: dict[str, Any], key: str) -> Any:  # envs-b (issue 12): env/python may be unset
    if key == "env" and key not in merged:
        return None if merged.get("python") else DEFAULT_ENV
    if key == "scenario" and key not in merged:  # scenarios (issue 14): unset is single-stream
        return ScenarioSpec().scenario
    return merged.get(key)


def _machine_has_gpu() -> bool:  # envs-b (issue 12)
    """Whether any GPU is visible here (the doctor's system facts), before asking any environment."""
    report = _doctor()
    system = report.get("system") if isinstance(report, dict) else None
    if isinstance(system, dict) and isinstance(system.get("visible_gpus"), int):
        return system["visible_gpus"] > 0
    return bool(shutil.which("nvidia-smi")) and os.path.exists("/dev/nvidia0")


def _gpu_ready_where(merged: dict[str, Any], choices: EnvChoices) -> bool:  # envs-b (issue 12)
    """gpu-ready for the job's backend where the job runs: the doctor of that environment or interpreter."""
    env, python = merged.get("env") or DEFAULT_ENV, merged.get("python")
    if not python and env == DEFAULT_ENV:
        return gpu_ready(merged["backend"])
    if not _machine_has_gpu():
        return False
    return choices.gpu_ready(merged["backend"], env=env, python=python)


def _make_specs(ctx: _Ctx, merged: dict[str, Any], origin: str) -> list[JobSpec]:
    """The candidate's job, or one per level when it sets a sweep (``batch = [1, 4]``)."""
    if merged.get("python"):  # envs-b (issue 12): relative to the suite's folder, like videos and models
        merged = {**merged, "python": python_path(merged["python"], ctx.base)}
    try:
        return [_spec(level) for level in sweep_levels(merged)]
    except HarnessError as exc:  # settings that are fine alone but not together (thresholds)
        what = " x ".join(str(merged[k]) for k in JOB_KEYS)
        raise SuiteError(f"{ctx.path}: {origin} ({what}): {exc.problem}", exc.fix) from None


def _select(ctx: _Ctx, candidates: list[Candidate], excludes: list[dict[str, str]],
            over: RunOverrides) -> tuple[list[JobSpec], list[str]]:
    """The jobs that stay after [[exclude]], --backend and the ``when`` conditions; and why others went."""
    installed: set[str] | None = None
    jobs: list[JobSpec] = []
    skipped: list[str] = []
    for merged, origin in candidates:
        if origin == "matrix" and any(all(_rule_value(merged, k) == v for k, v in ex.items()) for ex in excludes):
            continue
        if over.backends and merged["backend"] not in over.backends:
            continue
        when = set(merged.pop("when", []))
        if over.devices:
            when.discard("gpu-ready")  # asked for by name on the command line
        if "installed" in when:
            if installed is None:
                installed = set(installed_backends())
            if merged["backend"] not in installed:
                skipped.append(f"{merged['backend']} (not installed)")
                continue
        gpu_when = "gpu-ready" in when and is_accelerator_request(merged["device"])
        if merged.get("env") == GPU_LAYOUT_ENV:  # envs-b (issue 12): the layout's environment, if built
            if gpu_when and not _machine_has_gpu():  # no GPU at all: don't look for (or note) environments
                skipped.append(f"{merged['backend']} on {merged['device']} (no GPU visible per harness doctor)")
                continue
            merged["env"] = ctx.choices.for_backend(GPU_LAYOUT_ENV, merged["backend"])
        if gpu_when and not _gpu_ready_where(merged, ctx.choices):
            skipped.append(f"{merged['backend']} on {merged['device']} (no ready GPU per harness doctor)")
            continue
        merged = _merge(merged, over.settings())  # explicit flags win over every layer of the suite
        merged.pop("when", None)
        jobs.extend(_make_specs(ctx, merged, origin))
    return jobs, skipped


def load_suite(path: Path | str, overrides: RunOverrides | None = None, *, text: str | None = None) -> list[JobSpec]:
    """Expand a suite file into jobs, after checking every key.

    ``overrides`` is what the command line gave: its settings override every job; its videos, models and
    devices replace the suite's (so ``--device gpu`` asks for the GPU even where the suite says
    ``when = "gpu-ready"``); its backends keep only those backends' jobs. Relative paths in the suite are
    relative to the suite file's folder.
    """
    over = overrides or RunOverrides()
    ctx, data = _read(path, text)
    _check_top_level(ctx, data)
    ctx.choices = _flag_choices(over, _suite_envs(ctx, data.get("envs")))  # envs-b (issue 12)
    defaults = data.get("defaults", {})
    _check_settings(ctx, defaults, ["defaults"], [])
    matrix = data.get("matrix")
    candidates, empty_axes = _matrix_candidates(ctx, matrix, defaults, over)
    candidates += _job_candidates(ctx, data.get("job", []), defaults, over, matrix)
    excludes = _excludes(ctx, data.get("exclude", []))
    if not candidates:
        raise _empty_matrix(ctx, matrix, empty_axes)
    jobs, skipped = _select(ctx, candidates, excludes, over)
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
    return DEFAULT_SUITE.read_text(encoding="utf-8")


def default_suite(overrides: RunOverrides | None = None) -> list[JobSpec]:
    """The embedded default suite (harness/suites/default.toml) with the command line's overrides."""
    return load_suite(DEFAULT_SUITE, overrides, text=default_suite_text())


def check_backend_options(jobs: Iterable[JobSpec]) -> None:
    """Let each backend refuse options it does not know before anything runs (``--opt bogus=1``).

    A backend declares the check as ``validate_options(options: Mapping[str, Any]) -> None`` on its class,
    raising HarnessError; backends without one are not checked. Only the backend's module is imported here
    (backends import their framework when a detector loads), and a backend that cannot be found is left to
    fail as its own row when it runs.
    """
    from harness.registry import backend_class

    checked: dict[str, Any] = {}
    for job in jobs:
        if job.backend not in checked:
            try:
                checked[job.backend] = getattr(backend_class(job.backend), "validate_options", None)
            except HarnessError:
                checked[job.backend] = None
        validate = checked[job.backend]
        if validate is not None:
            try:
                validate(job.options)
            except HarnessError as exc:
                raise HarnessError(f"job {job.job_id}: {exc.problem}", exc.fix) from None
