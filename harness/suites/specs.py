"""From merged settings to JobSpecs: only what was given is passed, so that JobSpec's and PostprocessPolicy's
own defaults are the only ones; a setting with a sweep (``batch = [1, 4]``) makes one job per level.
"""

from __future__ import annotations

from typing import Any

from harness.suites.env_choice import python_path
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.core.policy import PostprocessPolicy
from harness.core.scenario import ScenarioSpec, sweep_levels
from harness.core.settings import OPTION_SETTINGS, REFERENCE_MODEL
from harness.suites.keys import JOB_KEYS
from harness.suites.source import SuiteError, SuiteSource

#: JobSpec fields a suite or the command line may set directly (the policy's keys go through PostprocessPolicy)
SPEC_FIELDS = ("frames", "warmup", "preprocess", "threads", "strict_device", "timeout_s")


def job_spec(merged: dict[str, Any]) -> JobSpec:
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
    given = {key: merged[key] for key in SPEC_FIELDS if merged.get(key) is not None}
    given.update({key: merged[key] for key in ("env", "python") if merged.get(key)})
    given.update({k: merged[k] for k in ("precision", "strict_precision") if merged.get(k) is not None})
    if "timeout_s" in given:
        given["timeout_s"] = float(given["timeout_s"])
    spec = JobSpec(
        backend=merged["backend"],
        source=merged["video"],
        model=None if model in (None, REFERENCE_MODEL, "") else model,
        device=merged["device"],
        options=options,
        policy=PostprocessPolicy.from_dict(merged),
        machine=merged.get("machine"),
        resources=merged.get("resources") or {},
        scenario=ScenarioSpec.from_dict(merged),
        **given,
    )
    if merged.get("tag"):
        object.__setattr__(spec, "job_id", f"{spec.job_id}_{merged['tag']}")
    return spec


def make_specs(ctx: SuiteSource, merged: dict[str, Any], origin: str) -> list[JobSpec]:
    """The candidate's job, or one per level when it sets a sweep (``batch = [1, 4]``)."""
    if merged.get("python"):  # relative to the suite's folder, like videos and models
        merged = {**merged, "python": python_path(merged["python"], ctx.base)}
    try:
        return [job_spec(level) for level in sweep_levels(merged)]
    except HarnessError as exc:  # settings that are fine alone but not together (thresholds)
        what = " x ".join(str(merged[k]) for k in JOB_KEYS)
        raise SuiteError(f"{ctx.path}: {origin} ({what}): {exc.problem}", exc.fix) from None
