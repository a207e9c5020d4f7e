"""The candidate jobs of a suite: the matrix's product, and the single ``[[job]]`` entries, each as merged
settings with where it came from; the command line's axes take the place of the suite's.

A matrix entry is a name or an inline table ``{ name = "opencv", options = { target = "opencl" } }`` whose
settings apply to the jobs of that entry.
"""

from __future__ import annotations

import itertools
from typing import Any

from harness.core.errors import did_you_mean
from harness.core.settings import REFERENCE_MODEL
from harness.suites.overrides import RunOverrides
from harness.suites.environments import check_envs_axis_entry, where_entries
from harness.suites.host import HostProbes
from harness.suites.keys import DEFAULT_SOURCE, JOB_KEYS, MATRIX_AXES, axis_value, check_settings
from harness.suites.layers import merge, strip_entry
from harness.suites.machines import MACHINES_AXIS, job_machine, machines
from harness.suites.precisions import PRECISION_AXIS, precision_layers
from harness.suites.source import SuiteError, SuiteSource

#: a candidate job: its merged settings and where it came from ("matrix" or "job[i]")
Candidate = tuple[dict[str, Any], str]


def axis_entries(ctx: SuiteSource, matrix: dict[str, Any], axis: str, probes: HostProbes) -> list[dict[str, Any]]:
    """One matrix list as entry tables ``{"name": ..., settings...}`` (``backends = "installed"``: those the
    probes find)."""
    raw = matrix.get(axis)
    keypath: list[str | int] = ["matrix", axis]
    if raw is None:
        if axis == "backends":
            raise ctx.error(keypath, "missing", 'list the backends, e.g. backends = ["tf1", "opencv"] or "installed"')
        if axis == "envs":  # no axis: each job's own env/python key, else the default
            return [{"name": None}]
        default = {"models": REFERENCE_MODEL, "videos": DEFAULT_SOURCE, "devices": "cpu"}[axis]
        return [{"name": default}]
    if axis == "backends" and raw == "installed":
        return [{"name": b, "_from_installed": True} for b in probes.installed()]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ctx.error(keypath, f"expected a list of names or {{ name = ... }} tables, got {raw!r}",
                        f'write e.g. {axis} = ["a", {{ name = "b", frames = 100 }}]')
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item:
            entry = {"name": item}
        elif isinstance(item, dict) and axis == "envs":  # a name or python = PATH
            entry = check_envs_axis_entry(ctx, item, keypath + [i])
            if entry["name"] is None:
                out.append(entry)
                continue
        elif isinstance(item, dict):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ctx.error(keypath + [i], "an entry table needs a name", 'write { name = "...", ... }')
            check_settings(ctx, item, keypath + [i], ["name"])
            if axis != "envs" and matrix.get("envs") is not None:
                both = next((k for k in ("env", "python") if k in item), None)
                if both:
                    raise ctx.error(keypath + [i, both], f"the matrix has an envs axis, so a {axis} entry "
                                    f"cannot also set {both}", "name the environments in matrix.envs only, or "
                                    "move this job to a [[job]] table with its own env/python")
            entry = dict(item)
        else:
            raise ctx.error(keypath + [i], f"expected a name or a {{ name = ... }} table, got {item!r}",
                            "write the entry as a string or an inline table")
        entry["name"] = axis_value(ctx, MATRIX_AXES[axis], entry["name"], keypath + [i])
        out.append(entry)
    return out


def matrix_candidates(ctx: SuiteSource, matrix: dict[str, Any] | None, defaults: dict[str, Any],
                      over: RunOverrides, probes: HostProbes) -> tuple[list[Candidate], list[str]]:
    """The matrix's product (with the command line's axes in place of the suite's), and its empty axes."""
    if matrix is None:
        return [], []
    for key in matrix:
        if key not in MATRIX_AXES and key not in (MACHINES_AXIS, PRECISION_AXIS):
            axes_known = [*MATRIX_AXES, MACHINES_AXIS, PRECISION_AXIS]
            raise ctx.error(["matrix", key], f"unknown matrix axis.{did_you_mean(key, axes_known)}",
                            f"the axes are: {', '.join(axes_known)}")
    axes = {axis: axis_entries(ctx, matrix, axis, probes) for axis in MATRIX_AXES}
    for axis, given in (("videos", over.videos), ("models", over.models), ("devices", over.devices)):
        if given:
            axes[axis] = [{"name": name} for name in given]
    if over.envs or over.pythons:  # --env/--python replace the envs axis
        axes["envs"] = where_entries(over)
    empty_axes = [a for a, listed in axes.items() if not listed]
    precisions = precision_layers(ctx, matrix, over)
    candidates = []
    places = machines(ctx, matrix)
    for b, m, v, d, e in itertools.product(*(axes[a] for a in MATRIX_AXES)):
        for machine, p in itertools.product(places, precisions):
            merged = merge(defaults, *(strip_entry(x) for x in (b, m, v, d, e)), p)
            merged.update(backend=b["name"], model=m["name"], video=v["name"], device=d["name"], **machine)
            if e["name"] is not None:
                merged = merge(merged, {"env": e["name"]})
            candidates.append((merged, "matrix"))
    return candidates, empty_axes


def job_candidates(ctx: SuiteSource, job_tables: list[dict[str, Any]], defaults: dict[str, Any],
                   over: RunOverrides, matrix: dict[str, Any] | None = None) -> list[Candidate]:
    """The ``[[job]]`` entries; the command line's videos, models and devices make one of each per entry."""
    candidates = []
    for i, job in enumerate(job_tables):
        if "backend" not in job or not isinstance(job["backend"], str):
            raise ctx.error(["job", i, "backend"], "each [[job]] needs a backend name", 'add backend = "tf1"')
        for key in ("model", "video", "device"):
            if key in job and not isinstance(job[key], str):
                raise ctx.error(["job", i, key], f"expected a string, got {job[key]!r}", f'write {key} = "..."')
        check_settings(ctx, job, ["job", i], (*JOB_KEYS, "machine"))
        machine = job_machine(ctx, job, i, matrix)
        merged = merge(defaults, {k: x for k, x in job.items() if k not in JOB_KEYS and k != "machine"}, machine)
        own = {key: axis_value(ctx, key, job.get(key, default), ["job", i, key])
               for key, default in (("model", REFERENCE_MODEL), ("video", DEFAULT_SOURCE), ("device", "cpu"))}
        models = over.models or (own["model"],)
        videos = over.videos or (own["video"],)
        devices = over.devices or (own["device"],)
        wheres = where_entries(over) or [{"name": None}]  # --env/--python: one job each
        precisions = [{"precision": p} for p in over.precisions] or [{}]
        for m, v, d, w, p in itertools.product(models, videos, devices, wheres, precisions):
            where = {"python": w["python"]} if w.get("python") else ({"env": w["name"]} if w["name"] else {})
            candidates.append(({**merge(merged, where), **p, "backend": job["backend"], "model": m, "video": v,
                                "device": d}, f"job[{i}]"))
    return candidates


def empty_matrix_error(ctx: SuiteSource, matrix: dict[str, Any] | None, empty_axes: list[str]) -> SuiteError:
    """Why a suite made no candidate at all: which axes are empty, or that it has neither matrix nor job."""
    if empty_axes:
        verb = "is" if len(empty_axes) == 1 else "are"
        why = f"matrix.{' and matrix.'.join(empty_axes)} {verb} empty"
    else:
        why = "it has no [matrix] and no [[job]]"
    if matrix is not None and matrix.get("backends") == "installed" and "backends" in empty_axes:
        why = 'backends = "installed" but no backend is installed'
    return SuiteError(f"{ctx.path}: the suite has an empty matrix: {why}",
                      "list at least one backend, model, video and device (or add a [[job]])")
