"""Which jobs a run means: from command-line flags, from a suite file (TOML), or the embedded default suite.

A suite file is a matrix ``backends x models x videos x devices`` plus single ``[[job]]`` entries, with
settings that can be given for every job (``[defaults]``) or per matrix entry (an entry is a name or an
inline table ``{ name = "opencv", options = { target = "opencl" } }``). The file is checked before anything
runs: a mistake is reported once, with the file, the line and key, and what was expected, because a typo
found after an hour of benchmarking costs an hour. The format is documented in docs/suites-and-reports.md.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.detector import is_accelerator_request
from harness.errors import HarnessError
from harness.jobs import JobSpec
from harness.policy import PostprocessPolicy
from harness.registry import installed_backends

DEFAULT_SOURCE = "pets09-s2l1"


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


def jobs_from_flags(
    backends: list[str],
    devices: list[str],
    *,
    source: str,
    model: str | None,
    **common: Any,
) -> list[JobSpec]:
    return [JobSpec(backend=b, source=source, model=model, device=d, **common) for b in backends for d in devices]


# ------------------------------------------------------------------------------------------------------
# suite files
# ------------------------------------------------------------------------------------------------------

#: job settings accepted in [defaults], in matrix entry tables and in [[job]] tables: key -> (check, expected)
Check = Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def _size(v: Any) -> bool:
    if isinstance(v, str):
        return re.fullmatch(r"\s*\d+\s*[xX]\s*\d+\s*", v) is not None
    return isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v)


WHEN_VALUES = ("installed", "gpu-ready")

SETTINGS: dict[str, tuple[Check, str]] = {
    "frames": (lambda v: _is_int(v) and v > 0, "a positive integer (frames per job)"),
    "warmup": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (warm-up inferences)"),
    "preprocess": (lambda v: v in ("native", "shared"), '"native" or "shared"'),
    "threads": (lambda v: _is_int(v) and v > 0, "a positive integer (intra-op threads)"),
    "options": (lambda v: isinstance(v, dict), 'a table of backend options, e.g. { target = "opencl" }'),
    "record_threshold": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "score_threshold": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "top_k": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "classes": (lambda v: isinstance(v, list) and all(_is_int(c) for c in v), "a list of integer class ids, e.g. [1]"),
    "strict_device": (lambda v: isinstance(v, bool), "true or false"),
    "timeout_s": (lambda v: _is_num(v) and v > 0, "a positive number of seconds"),
    "input_size": (_size, 'the network input size as [width, height] or "WxH"'),
    "target": (lambda v: isinstance(v, str), 'a backend target string, e.g. "opencl" or "cuda_fp16" (OpenCV DNN)'),
    "dnn_backend": (lambda v: isinstance(v, str), 'an OpenCV DNN backend name, e.g. "opencv", "cuda", "openvino"'),
    "when": (lambda v: (v in WHEN_VALUES) or (isinstance(v, list) and all(x in WHEN_VALUES for x in v)),
             f"one of {', '.join(repr(w) for w in WHEN_VALUES)} or a list of them"),
    "tag": (lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9._-]+", v) is not None,
            "a short name made of letters, digits, '.', '_' or '-' (appended to the job id)"),
}
#: settings that go into JobSpec.options rather than their own JobSpec field: suite key -> option name
OPTION_SETTINGS = {"input_size": "input_size", "target": "target", "dnn_backend": "backend"}

MATRIX_AXES = {"backends": "backend", "models": "model", "videos": "video", "devices": "device"}
TOP_LEVEL = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "defaults": (lambda v: isinstance(v, dict), "a table of job settings"),
    "matrix": (lambda v: isinstance(v, dict), "a table with backends, models, videos, devices"),
    "job": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "[[job]] tables"),
    "exclude": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "[[exclude]] tables"),
}
JOB_KEYS = ("backend", "model", "video", "device")


class SuiteError(HarnessError):
    """A suite file that can't be used as written."""


@dataclass
class _Ctx:
    """Where a suite came from, so that every error can name the file and line."""

    path: str
    text: str
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def line_of(self, keypath: list[str | int]) -> int | None:
        """The 1-based line where the last named key of ``keypath`` is set (best effort, by scanning text).

        tomllib keeps no positions, so the table header is found first (``[matrix]``, the n-th ``[[job]]``),
        then the key after it.
        """
        start = 0
        names = [k for k in keypath if isinstance(k, str)]
        if not names:
            return None
        head = names[0]
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
                return i + 1
        return start + 1 if start else None

    def error(self, keypath: list[str | int], problem: str, fix: str) -> SuiteError:
        where = self.path
        line = self.line_of(keypath)
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
        if key not in SETTINGS:
            from harness.errors import did_you_mean

            known = sorted(set(SETTINGS) | extra)
            raise ctx.error(keypath + [key], f"unknown key.{did_you_mean(key, known)}",
                            f"use one of: {', '.join(known)}")
        check, expected = SETTINGS[key]
        if not check(value):
            raise ctx.error(keypath + [key], f"expected {expected}, got {value!r}", f"write {key} as {expected}")


def _entries(ctx: _Ctx, matrix: dict[str, Any], axis: str) -> list[dict[str, Any]]:
    """One matrix list as entry tables ``{"name": ..., settings...}``."""
    raw = matrix.get(axis)
    keypath: list[str | int] = ["matrix", axis]
    if raw is None:
        if axis == "backends":
            raise ctx.error(keypath, "missing", 'list the backends, e.g. backends = ["tf1", "opencv"] or "installed"')
        default = {"models": "reference", "videos": DEFAULT_SOURCE, "devices": "cpu"}[axis]
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
            out.append({"name": item})
        elif isinstance(item, dict):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ctx.error(keypath + [i], "an entry table needs a name", f'write {{ name = "...", ... }}')
            _check_settings(ctx, item, keypath + [i], ["name"])
            out.append(dict(item))
        else:
            raise ctx.error(keypath + [i], f"expected a name or a {{ name = ... }} table, got {item!r}",
                            "write the entry as a string or an inline table")
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
            else:
                out[key] = value
    return out


#: run flags that override a suite only when they differ from their command-line defaults
_FLAG_DEFAULTS = {"warmup": 10, "score_threshold": 0.3, "record_threshold": 0.01, "top_k": 100}


def _flag_overrides(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, axis replacements) the user gave on the command line next to a suite."""
    if args is None:
        return {}, {}
    settings: dict[str, Any] = {}
    for key in ("frames", "threads", "preprocess"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    for key, default in _FLAG_DEFAULTS.items():
        value = getattr(args, key, None)
        if value is not None and value != default:
            settings[key] = value
    if getattr(args, "timeout", None) is not None:
        settings["timeout_s"] = args.timeout
    if getattr(args, "strict_device", False):
        settings["strict_device"] = True
    if getattr(args, "classes", None):
        settings["classes"] = [int(c) for c in str(args.classes).split(",") if c.strip()]
    if getattr(args, "opt", None):
        settings["options"] = parse_options(args.opt)
    axes: dict[str, Any] = {}
    if getattr(args, "source", None):
        axes["video"] = args.source
    if getattr(args, "model", None):
        axes["model"] = args.model
    if getattr(args, "device", None):
        axes["devices"] = list(args.device)
    if getattr(args, "backend", None):
        axes["backends"] = list(args.backend)
    return settings, axes


# GPU readiness ------------------------------------------------------------------------------------------

_DOCTOR_CACHE: dict[str, Any] = {}


def _doctor() -> Any:
    if "report" not in _DOCTOR_CACHE:
        try:
            from harness.doctor import doctor_report

            _DOCTOR_CACHE["report"] = doctor_report()
        except ImportError:
            _DOCTOR_CACHE["report"] = None
        except Exception:  # noqa: BLE001 - an unreadable doctor means "not known to be ready"
            _DOCTOR_CACHE["report"] = None
    return _DOCTOR_CACHE["report"]


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
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SuiteError(f"suite file {path} does not exist", "give the path of a .toml suite file "
                             "(see docs/suites-and-reports.md), or omit it for the default suite") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SuiteError(f"cannot read suite file {path}: {exc}", "check the file's permissions and encoding")
    ctx = _Ctx(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # the message ends with "(at line L, column C)"
        raise SuiteError(f"{path}: not valid TOML: {exc}", "fix the syntax at that line (strings need quotes, "
                         "lists need [ ], tables need [name] headers)") from None
    return ctx, data


def load_suite(path: Path | str, overrides: Any = None, *, text: str | None = None) -> list[JobSpec]:
    """Expand a suite file into jobs, after checking every key. ``overrides`` is the ``harness run`` args.

    Command-line flags next to a suite: --frames, --warmup, --threads, --preprocess, thresholds, --classes,
    --opt, --timeout, --strict-device override every job; --video and --model replace the suite's
    videos/models; --device replaces its devices (so ``--device gpu`` asks for the GPU even where the suite
    says ``when = "gpu-ready"``); --backend keeps only those backends' jobs.
    """
    ctx, data = _read(path, text)
    for key, value in data.items():
        if key not in TOP_LEVEL:
            from harness.errors import did_you_mean

            raise ctx.error([key], f"unknown top-level key.{did_you_mean(key, TOP_LEVEL)}",
                            f"use: {', '.join(TOP_LEVEL)} (job settings go under [defaults])")
        check, expected = TOP_LEVEL[key]
        if not check(value):
            raise ctx.error([key], f"expected {expected}", "see docs/suites-and-reports.md for the format")
    defaults = data.get("defaults", {})
    _check_settings(ctx, defaults, ["defaults"], [])
    settings_over, axes_over = _flag_overrides(overrides)

    candidates: list[tuple[dict[str, Any], str]] = []  # (merged entry, where it came from)
    matrix = data.get("matrix")
    empty_axes: list[str] = []
    if matrix is not None:
        for key in matrix:
            if key not in MATRIX_AXES:
                from harness.errors import did_you_mean

                raise ctx.error(["matrix", key], f"unknown matrix axis.{did_you_mean(key, MATRIX_AXES)}",
                                f"the axes are: {', '.join(MATRIX_AXES)}")
        axes = {axis: _entries(ctx, matrix, axis) for axis in MATRIX_AXES}
        if "video" in axes_over:
            axes["videos"] = [{"name": axes_over["video"]}]
        if "model" in axes_over:
            axes["models"] = [{"name": axes_over["model"]}]
        if "devices" in axes_over:
            axes["devices"] = [{"name": d} for d in axes_over["devices"]]
        empty_axes = [a for a, entries in axes.items() if not entries]
        for b, m, v, d in itertools.product(*(axes[a] for a in MATRIX_AXES)):
            merged = _merge(defaults, *({k: x for k, x in e.items() if k not in ("name", "_from_installed")}
                                        for e in (b, m, v, d)))
            merged.update(backend=b["name"], model=m["name"], video=v["name"], device=d["name"])
            candidates.append((merged, "matrix"))

    for i, job in enumerate(data.get("job", [])):
        if "backend" not in job or not isinstance(job["backend"], str):
            raise ctx.error(["job", i, "backend"], "each [[job]] needs a backend name", 'add backend = "tf1"')
        for key in ("model", "video", "device"):
            if key in job and not isinstance(job[key], str):
                raise ctx.error(["job", i, key], f"expected a string, got {job[key]!r}", f'write {key} = "..."')
        _check_settings(ctx, job, ["job", i], JOB_KEYS)
        merged = _merge(defaults, {k: x for k, x in job.items() if k not in JOB_KEYS})
        merged.update(backend=job["backend"], model=job.get("model", "reference"),
                      video=job.get("video", DEFAULT_SOURCE), device=job.get("device", "cpu"))
        if "video" in axes_over:
            merged["video"] = axes_over["video"]
        if "model" in axes_over:
            merged["model"] = axes_over["model"]
        if "devices" in axes_over:
            for d in axes_over["devices"]:
                candidates.append(({**merged, "device": d}, f"job[{i}]"))
        else:
            candidates.append((merged, f"job[{i}]"))

    excludes = data.get("exclude", [])
    for i, ex in enumerate(excludes):
        for key, value in ex.items():
            if key not in JOB_KEYS:
                raise ctx.error(["exclude", i, key], "unknown key in [[exclude]]",
                                f"match on: {', '.join(JOB_KEYS)}")
            if not isinstance(value, str):
                raise ctx.error(["exclude", i, key], f"expected a string, got {value!r}", f'write {key} = "..."')

    if not candidates:
        why = f"matrix.{' and matrix.'.join(empty_axes)} {'is' if len(empty_axes) == 1 else 'are'} empty" if empty_axes else "it has no [matrix] and no [[job]]"
        if matrix is not None and matrix.get("backends") == "installed" and "backends" in empty_axes:
            why = 'backends = "installed" but no backend is installed'
        raise SuiteError(f"{ctx.path}: the suite has an empty matrix: {why}",
                         "list at least one backend, model, video and device (or add a [[job]])")

    installed: set[str] | None = None
    jobs: list[JobSpec] = []
    skipped: list[str] = []
    for merged, origin in candidates:
        if origin == "matrix" and any(all(merged[k] == v for k, v in ex.items()) for ex in excludes):
            continue
        if "backends" in axes_over and merged["backend"] not in axes_over["backends"]:
            continue
        when = set(merged.pop("when", []))
        if "devices" in axes_over:
            when.discard("gpu-ready")  # asked for by name on the command line
        if "installed" in when:
            if installed is None:
                installed = set(installed_backends())
            if merged["backend"] not in installed:
                skipped.append(f"{merged['backend']} (not installed)")
                continue
        if "gpu-ready" in when and is_accelerator_request(merged["device"]) and not gpu_ready(merged["backend"]):
            skipped.append(f"{merged['backend']} on {merged['device']} (no ready GPU per harness doctor)")
            continue
        merged = _merge(merged, settings_over)
        merged.pop("when", None)
        jobs.append(_spec(merged))

    if not jobs:
        if "backends" in axes_over:
            raise SuiteError(f"{ctx.path}: no job of the suite uses backend(s) {', '.join(axes_over['backends'])}",
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


def _spec(merged: dict[str, Any]) -> JobSpec:
    options = dict(merged.get("options") or {})
    for key, option in OPTION_SETTINGS.items():
        if key in merged:
            value = merged[key]
            if key == "input_size" and isinstance(value, list):
                value = f"{value[0]}x{value[1]}"
            options[option] = value.replace(" ", "") if isinstance(value, str) else value
    model = merged.get("model")
    spec = JobSpec(
        backend=merged["backend"],
        source=merged["video"],
        model=None if model in (None, "reference", "") else model,
        device=merged["device"],
        frames=merged.get("frames"),
        warmup=merged.get("warmup", 10),
        preprocess=merged.get("preprocess", "native"),
        threads=merged.get("threads"),
        options=options,
        policy=PostprocessPolicy.from_dict(merged),
        strict_device=merged.get("strict_device", False),
        timeout_s=float(merged["timeout_s"]) if merged.get("timeout_s") is not None else None,
    )
    if merged.get("tag"):
        object.__setattr__(spec, "job_id", f"{spec.job_id}_{merged['tag']}")
    return spec


def default_suite_text() -> str:
    return (Path(__file__).parent / "suites" / "default.toml").read_text(encoding="utf-8")


def default_suite(args: Any = None) -> list[JobSpec]:
    """The embedded default suite (harness/suites/default.toml) with the command line's overrides."""
    return load_suite("<default suite: harness/suites/default.toml>", overrides=args, text=default_suite_text())
