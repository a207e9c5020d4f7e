"""Read a results folder back (runs.csv, frames.csv, jobs.json, env.json, agreement.csv, detections/).

Reports, ``harness compare`` and the notebook all start here, so that they agree on what a folder holds and
on the order jobs are shown in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

#: runs.csv statuses that have measurements
MEASURED = ("ok", "fallback")


@dataclass
class Results:
    """One results folder, loaded. DataFrames are pandas (imported lazily by :func:`load_results`)."""

    out: Path
    runs: Any  # DataFrame: one row per job
    frames: Any  # DataFrame: per-frame timings with a ``total_ms`` column added
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job_id -> jobs.json entry
    env: dict[str, Any] = field(default_factory=dict)
    agreement: Any = None  # DataFrame or None
    _dets: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def measured(self) -> Any:
        """runs.csv rows with measurements (status ok or fallback)."""
        return self.runs[self.runs["status"].isin(MEASURED)]

    def job_ids(self, measured_only: bool = True) -> list[str]:
        rows = self.measured if measured_only else self.runs
        return [str(j) for j in rows["job_id"]]

    def detections(self, job_id: str) -> list[dict[str, Any]]:
        if job_id not in self._dets:
            f = self.out / "detections" / f"{job_id}.json"
            self._dets[job_id] = json.loads(f.read_text()) if f.is_file() else []
        return self._dets[job_id]

    def policy(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id, {})
        pol = (job.get("info") or {}).get("policy")
        if pol:
            return pol
        spec = job.get("spec", {})
        return {"score_threshold": spec.get("score_threshold", 0.3), "classes": spec.get("classes"),
                "top_k": spec.get("top_k", 100)}

    def source_path(self, job_id: str) -> str | None:
        """The frames' source as the job resolved it (falls back to the asset name in the spec)."""
        job = self.jobs.get(job_id, {})
        path = ((job.get("info") or {}).get("source") or {}).get("path")
        return path or job.get("spec", {}).get("source")


def _order_key(backend: str) -> tuple[int, str]:
    from harness.registry import backend_order_key

    return backend_order_key(backend)


def load_results(out_dir: Path | str) -> Results:
    """Load a results folder; raise a HarnessError naming what is missing if it isn't one."""
    import pandas as pd

    out = Path(out_dir)
    runs_file = out / "runs.csv"
    if not runs_file.is_file():
        what = "does not exist" if not out.exists() else "has no runs.csv"
        raise HarnessError(f"{out} {what}: it is not a results folder",
                           "give the folder a `harness run` wrote (it holds runs.csv, frames.csv, jobs.json)")
    runs = pd.read_csv(runs_file)
    if runs.empty or "job_id" not in runs.columns:
        raise HarnessError(f"{runs_file} has no job rows", "run `harness run` into this folder first")
    runs["job_id"] = runs["job_id"].astype(str)
    for col in ("status", "cause", "backend", "device_requested", "device_actual"):
        if col in runs.columns:
            runs[col] = runs[col].astype("string").fillna("").astype(str)
    runs["_order"] = [_order_key(b) for b in runs.get("backend", runs["job_id"])]
    runs = runs.sort_values(["_order", "job_id"], kind="stable").drop(columns="_order").reset_index(drop=True)

    frames_file = out / "frames.csv"
    frames = pd.read_csv(frames_file) if frames_file.is_file() and frames_file.stat().st_size else pd.DataFrame(
        columns=["job_id", "frame", "decode_ms", "pre_ms", "infer_ms", "post_ms", "n_dets"])
    frames["job_id"] = frames["job_id"].astype(str)
    frames["total_ms"] = frames[["pre_ms", "infer_ms", "post_ms"]].sum(axis=1) if len(frames) else []

    jobs: dict[str, dict[str, Any]] = {}
    if (out / "jobs.json").is_file():
        for job in json.loads((out / "jobs.json").read_text()).get("jobs", []):
            jobs[str(job["spec"]["job_id"])] = job
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").is_file() else {}
    agreement = None
    if (out / "agreement.csv").is_file():
        try:
            agreement = pd.read_csv(out / "agreement.csv")
        except pd.errors.EmptyDataError:  # one job: no pairs
            agreement = None
    return Results(out=out, runs=runs, frames=frames, jobs=jobs, env=env, agreement=agreement)
