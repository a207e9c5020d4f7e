"""The answer of each sweep: the rows of one scenario that differ only in their level, read back together.

Each level is its own job (its own runs.csv row); a sweep is the set of jobs whose specs are equal but for the
level (``batch``, ``streams``, ``fps`` or ``qps``). Its answer is the question the scenario asks:

* offline: the highest throughput and the batch that gave it;
* multi-stream: the most streams whose slowest stream still got the target FPS ("cameras at F FPS");
* realtime: the highest release rate with no frame dropped (one level alone: its own estimate, one over the
  slowest frame's end-to-end time);
* server: the largest QPS whose end-to-end p99 stayed under the latency bound (MLPerf Server's question).

An answer rests on rows marked valid only if all its levels are; ``scenarios.csv`` says which.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results import MEASURED, SavedJob, SavedRun, load_run

#: the level field of each scenario (what varies inside one sweep)
LEVEL_FIELD = {"offline": "batch", "multi-stream": "streams", "realtime": "fps", "server": "qps"}
#: precision and machine too: `--precision fp32,int8 --batch 1,4` is two sweeps that differ only there
SWEEP_COLUMNS = ["scenario", "backend", "model", "video", "device", "preprocess", "env", "precision", "machine",
                 "levels", "answer", "value", "unit", "valid", "jobs"]


@dataclass
class Sweep:
    scenario: str
    jobs: list[SavedJob]  # ordered by level

    def level(self, job: SavedJob) -> float:
        sc = job.spec.scenario
        if self.scenario == "realtime":
            return float(_num(job.row.get("release_fps")) if job.row else (sc.fps or math.nan))
        return float(getattr(sc, {"offline": "batch_size", "multi-stream": "stream_count"}.get(
            self.scenario, LEVEL_FIELD[self.scenario])) or math.nan)


def _num(v: Any) -> float:
    try:
        out = float(v)
    except (TypeError, ValueError):
        return math.nan
    return out


def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1", "yes")


def _key(job: SavedJob) -> str:
    """The job's spec without its level (and without what does not change a measurement)."""
    d = dataclasses.replace(job.spec, job_id="-").to_dict()
    # defaults written out: a kept level saved without `instances` and a new one given `--instances 1` are
    # the same sweep (harness.results.settings_changes keeps the one for the other)
    d["scenario"] = job.spec.scenario.normalized().to_dict()
    d["scenario"].pop(LEVEL_FIELD[job.spec.scenario.kind], None)
    d.pop("timeout_s", None)
    return json.dumps(d, sort_keys=True, default=str)


def find_sweeps(run: SavedRun) -> list[Sweep]:
    """The measured non-single-stream jobs grouped into sweeps (a job alone is a sweep of one level)."""
    groups: dict[str, list[SavedJob]] = {}
    for job in run.jobs.values():
        if job.row is None or job.status not in MEASURED or job.spec.scenario.kind not in LEVEL_FIELD:
            continue
        groups.setdefault(_key(job), []).append(job)
    sweeps = []
    for jobs in groups.values():
        sweep = Sweep(jobs[0].spec.scenario.kind, jobs)
        sweep.jobs.sort(key=sweep.level)
        sweeps.append(sweep)
    return sweeps


def answer(sweep: Sweep) -> tuple[str, float, str]:
    """(the answer as a sentence, its number, the number's unit)."""
    rows = [(sweep.level(j), j.row or {}) for j in sweep.jobs]
    kind = sweep.scenario
    if kind == "offline":
        level, row = max(rows, key=lambda lr: _num(lr[1].get("model_fps")))
        value = _num(row.get("model_fps"))
        return f"{value:.1f} frames/s at batch {level:g}", value, "frames/s"
    if kind == "multi-stream":
        target = next((_num(r.get("target_fps")) for _, r in rows if not math.isnan(_num(r.get("target_fps")))), math.nan)
        if math.isnan(target):
            return "no target FPS (give --fps)", math.nan, "streams"
        served = [lv for lv, r in rows if _num(r.get("stream_fps_min")) >= target]
        if not served:
            return f"none of {_levels(rows)} streams got {target:g} FPS each", 0.0, "streams"
        return f"{max(served):g} stream(s) at {target:g} FPS each", max(served), "streams"
    if kind == "realtime":
        clean = [lv for lv, r in rows if _num(r.get("dropped")) == 0]
        if len(rows) == 1:
            estimate = _num(rows[0][1].get("max_fps_no_drop"))
            return f"about {estimate:.1f} FPS without drops (one over the slowest frame)", estimate, "fps"
        if not clean:
            return f"frames dropped at every rate tried ({_levels(rows)} fps)", 0.0, "fps"
        return f"{max(clean):g} FPS without drops", max(clean), "fps"
    bound = next((_num(r.get("latency_bound_ms")) for _, r in rows if not math.isnan(_num(r.get("latency_bound_ms")))),
                 math.nan)
    if math.isnan(bound):
        return "no latency bound (give --latency-bound)", math.nan, "qps"
    met = [lv for lv, r in rows if _truthy(r.get("bound_met"))]
    if not met:
        return f"no rate tried ({_levels(rows)} qps) kept p99 under {bound:g} ms", 0.0, "qps"
    return f"{max(met):g} qps with p99 under {bound:g} ms", max(met), "qps"


def sweep_precision(sweep: Sweep) -> str:
    """The precision a sweep asked for ('' when not asked, like runs.csv's ``precision_requested``), with what
    ran when the framework ran another (a fallback): ``int8``, ``fp16 (ran fp32)``."""
    asked = sweep.jobs[0].spec.precision or ""
    ran = sorted({str((j.row or {}).get("precision") or "") for j in sweep.jobs} - {""})
    if asked and ran and ran != [asked] and asked != "auto":
        return f"{asked} (ran {'/'.join(ran)})"
    return asked


def _levels(rows: list[tuple[float, Any]]) -> str:
    return ", ".join(f"{lv:g}" for lv, _ in rows)


def sweep_rows(run: SavedRun) -> list[dict[str, Any]]:
    out = []
    for sweep in find_sweeps(run):
        text, value, unit = answer(sweep)
        first = sweep.jobs[0]
        row = first.row or {}
        out.append({
            "scenario": sweep.scenario, "backend": first.backend, "model": row.get("model", first.spec.model),
            "video": first.spec.source, "device": first.spec.device, "preprocess": first.spec.preprocess,
            "env": first.spec.env_label, "precision": sweep_precision(sweep), "machine": first.spec.machine or "",
            "levels": ",".join(f"{sweep.level(j):g}" for j in sweep.jobs),
            "answer": text, "value": value, "unit": unit,
            "valid": all(_truthy((j.row or {}).get("valid", True)) for j in sweep.jobs),
            "jobs": " ".join(j.job_id for j in sweep.jobs),
        })
    return out


def write_sweeps(out_dir: Path | str, writer: Any) -> None:
    """scenarios.csv through the folder's writer (nothing when no job ran a non-default scenario)."""
    import pandas as pd

    rows = sweep_rows(load_run(out_dir))
    if rows:
        writer.write_table("scenarios", pd.DataFrame(rows, columns=SWEEP_COLUMNS))
