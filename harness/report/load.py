"""The report's view of a results folder: a :class:`~harness.results.SavedRun` with its rows in report order.

Reports, ``harness compare`` and the notebook all start here, so that they agree on the order jobs are
shown in and on which boxes are drawn; the files themselves are read only by :mod:`harness.results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.detections import Detections
from harness.core.errors import HarnessError
from harness.core.policy import PostprocessPolicy
from harness.results import MEASURED, SavedJob, SavedRun, load_run

__all__ = ["MEASURED", "Results", "load_results"]


@dataclass
class Results:
    """One results folder, loaded for the report. DataFrames are pandas."""

    run: SavedRun
    runs: Any  # DataFrame: one row per job, in report order (backend order, then job id)
    frames: Any  # DataFrame: per-frame timings with a ``total_ms`` column added

    @property
    def out(self) -> Path:
        return self.run.folder

    @property
    def jobs(self) -> dict[str, SavedJob]:
        return self.run.jobs

    @property
    def env(self) -> dict[str, Any]:
        return self.run.env

    @property
    def agreement(self) -> Any:
        """agreement.csv as a DataFrame, None when there is none (one job: no pairs)."""
        return self.run.agreement

    @property
    def measured(self) -> Any:
        """runs.csv rows with measurements (status ok or fallback)."""
        return self.runs[self.runs["status"].isin(MEASURED)]

    def job_ids(self, measured_only: bool = True) -> list[str]:
        rows = self.measured if measured_only else self.runs
        return [str(j) for j in rows["job_id"]]

    def detections(self, job_id: str) -> list[dict[str, Any]]:
        """The job's saved results-json rows (every box above its record threshold)."""
        job = self.run.job(job_id)
        return job.records if job is not None else []

    def policy(self, job_id: str) -> PostprocessPolicy:
        """The job's post-processing policy (the default one for a row jobs.json does not know)."""
        job = self.run.job(job_id)
        return job.policy if job is not None else PostprocessPolicy()

    def shown(self, job_id: str, frame: int) -> Detections:
        """The job's boxes on one frame at its policy's operating point (score threshold, classes, top-k)."""
        job = self.run.job(job_id)
        if job is None:
            return Detections.empty((1, 1))
        return job.shown(frame)

    def source_path(self, job_id: str) -> str | None:
        """The frames' source as the job resolved it (absolute), else the asset name in its spec."""
        job = self.run.job(job_id)
        return job.source_path if job is not None else None


def _order_key(backend: str) -> tuple[int, str]:
    from harness.core.registry import backend_order_key

    return backend_order_key(backend)


def load_results(out_dir: Path | str) -> Results:
    """Load a results folder for the report; one clear error if it isn't one, is damaged (every damaged row
    and file named: :mod:`harness.results.verify`) or has no finished job."""
    run = load_run(out_dir).require_intact()
    runs = run.runs.copy()
    if runs.empty:
        raise HarnessError(f"{run.layout.runs} has no job rows", "run `harness run` into this folder first")
    runs["_order"] = [_order_key(b) for b in runs.get("backend", runs["job_id"])]
    runs = runs.sort_values(["_order", "job_id"], kind="stable").drop(columns="_order").reset_index(drop=True)

    frames = run.frames.copy()
    for col in ("pre_ms", "infer_ms", "post_ms"):
        if col not in frames.columns:
            frames[col] = []
    frames["total_ms"] = frames[["pre_ms", "infer_ms", "post_ms"]].sum(axis=1) if len(frames) else []
    return Results(run=run, runs=runs, frames=frames)
