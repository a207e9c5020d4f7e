"""Scenarios: how frames reach the model, each with its own metrics (docs/scenarios.md).

``single-stream`` (the default: one frame at a time, as fast as possible), ``offline`` (batches),
``multi-stream`` (N sources at once), ``realtime`` (frames released at the source's FPS, dropped or queued
while the detector is busy) and ``server`` (Poisson arrivals at a QPS). With ``--loadgen``, MLPerf LoadGen drives single-stream, offline
and server instead (:mod:`harness.execution.scenarios.loadgen`). :func:`harness.execution.runner.run_job` loads
and warms the model, then hands the timed part to :func:`run_scenario`.

Importing this package is cheap (the job spec module imports :mod:`harness.core.scenario`); each scenario's
module is imported only when a job runs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.core.scenario import SCENARIOS, ScenarioSpec

if TYPE_CHECKING:
    from harness.execution.scenarios.context import ScenarioContext, ScenarioRun

__all__ = ["SCENARIOS", "ScenarioSpec", "run_scenario"]

_MODULES = {"single-stream": "single_stream", "offline": "offline", "multi-stream": "multi_stream",
            "realtime": "realtime", "server": "server"}


def run_scenario(ctx: "ScenarioContext") -> "ScenarioRun":
    """The timed part of a job, in its scenario."""
    name = "loadgen" if ctx.spec.scenario.loadgen else _MODULES[ctx.spec.scenario.kind]
    module = importlib.import_module(f"harness.execution.scenarios.{name}")
    return module.run(ctx)
