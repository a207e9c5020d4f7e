"""Which candidate jobs stay: ``[[exclude]]`` rules trim the matrix, ``--backend`` keeps its backends, and the
``when`` conditions (``installed``, ``gpu-ready``) drop what this machine cannot run, saying why.

A GPU job of the ``gpu-layout`` environment goes to that backend's GPU environment here, once the machine is
known to have a GPU at all.
"""

from __future__ import annotations

from typing import Any

from harness.core.device import Device
from harness.core.env_names import DEFAULT_ENV, GPU_LAYOUT_ENV
from harness.core.jobs import JobSpec
from harness.core.scenario import ScenarioSpec
from harness.suites.overrides import RunOverrides
from harness.suites.candidates import Candidate
from harness.suites.host import HostProbes, gpu_ready_where
from harness.suites.keys import JOB_KEYS, axis_value
from harness.suites.layers import merge
from harness.suites.source import SuiteSource
from harness.suites.specs import make_specs

#: what an [[exclude]] rule can match
EXCLUDE_KEYS = (*JOB_KEYS, "env", "python", "machine", "precision", "scenario")


def exclude_rules(ctx: SuiteSource, tables: list[dict[str, Any]]) -> list[dict[str, str]]:
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
            rule[key] = axis_value(ctx, key, value, ["exclude", i, key])
        out.append(rule)
    return out


def rule_value(merged: dict[str, Any], key: str) -> Any:
    """The value a rule compares with: env and scenario as a job without them has them."""
    if key == "env" and key not in merged:
        return None if merged.get("python") else DEFAULT_ENV
    if key == "scenario" and key not in merged:  # unset is single-stream
        return ScenarioSpec().kind
    return merged.get(key)


def select(ctx: SuiteSource, candidates: list[Candidate], rules: list[dict[str, str]], over: RunOverrides,
           probes: HostProbes) -> tuple[list[JobSpec], list[str]]:
    """The jobs that stay after [[exclude]], --backend and the ``when`` conditions; and why others went."""
    installed: set[str] | None = None
    jobs: list[JobSpec] = []
    skipped: list[str] = []
    for merged, origin in candidates:
        if origin == "matrix" and any(all(rule_value(merged, k) == v for k, v in ex.items()) for ex in rules):
            continue
        if over.backends and merged["backend"] not in over.backends:
            continue
        when = set(merged.pop("when", []))
        if over.devices:
            when.discard("gpu-ready")  # asked for by name on the command line
        if "installed" in when:
            if installed is None:
                installed = set(probes.installed())
            if merged["backend"] not in installed:
                skipped.append(f"{merged['backend']} (not installed)")
                continue
        gpu_when = "gpu-ready" in when and Device(merged["device"]).is_accelerator
        if merged.get("env") == GPU_LAYOUT_ENV:  # the layout's environment, if built
            if gpu_when and not probes.has_gpu():  # no GPU at all: don't look for (or note) environments
                skipped.append(f"{merged['backend']} on {merged['device']} (no GPU visible per harness doctor)")
                continue
            merged["env"] = ctx.choices.for_backend(GPU_LAYOUT_ENV, merged["backend"])
        if gpu_when and not gpu_ready_where(merged, ctx.choices, probes):
            skipped.append(f"{merged['backend']} on {merged['device']} (no ready GPU per harness doctor)")
            continue
        merged = merge(merged, over.settings())  # explicit flags win over every layer of the suite
        merged.pop("when", None)
        jobs.extend(make_specs(ctx, merged, origin))
    return jobs, skipped
