"""Accuracy and agreement of a whole results folder, from what the jobs saved (no model is rerun).

Reads ``jobs.json`` (specs, policy, model facts, frame size), ``frames/<job_id>.csv`` or ``frames.csv``
(which frames each job decoded) and ``detections/<job_id>.json``; writes

* ``runs.csv`` with the columns ``ap, ap50, ap75, ar100`` filled in (NaN where a job has no ground truth);
* ``accuracy.csv``: one row per job and category, plus a row ``category = "all"`` (COCO's summary);
* ``agreement.csv``: one row per *unordered* pair of jobs over the same frames (same source, same frame
  size; the frames both decoded). Each row carries both directions (``matched_share_a`` and
  ``matched_share_b``, ``only_a`` and ``only_b``), so the reverse row would add nothing.

Every file is written to a temporary file in the same folder and renamed over the old one, so an
interrupted evaluation leaves the previous files intact.

Ground truth per job: ``gt=None`` uses the job's source as an asset name with a ``ground_truth`` file
(jobs on sources without one get no accuracy, and a note); a string names one ground truth for every job
(when the folder holds one source, or when the string is that source's asset name); ``"SOURCE=GT"``
entries (or a dict) pick one per source.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import HarnessError
from harness.groundtruth import GroundTruth, load_ground_truth
from harness.labels import COCO, LabelMap
from harness.metrics.accuracy import AccuracyOptions, AccuracyResult, evaluate_detections
from harness.metrics.agreement import PairAgreement, compare_records
from harness.policy import PostprocessPolicy

ACCURACY_RUN_COLUMNS = ("ap", "ap50", "ap75", "ar100")
EVALUATED_STATUSES = {"ok", "fallback"}
# accuracy.csv keeps its header even when no job has ground truth, so readers need no special case
ACCURACY_COLUMNS = ["job_id", "backend", "video", "gt", "frames", "min_height", "roi", "category_id", "category",
                    "ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "n_gt",
                    "n_ignore", "n_dets"]


@dataclass
class SavedJob:
    """One job as its results folder describes it."""

    job_id: str
    backend: str
    source: str
    status: str
    policy: PostprocessPolicy
    frames: list[int]
    frame_size: tuple[int, int] | None
    label_map: LabelMap | None
    label_space: str
    detections: list[dict[str, Any]]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_results` computed; ``notes`` says why a job or pair got no numbers."""

    accuracy: Any  # pandas.DataFrame: accuracy.csv
    agreement: Any  # pandas.DataFrame: agreement.csv
    runs: Any  # pandas.DataFrame: runs.csv with the accuracy columns
    per_job: dict[str, AccuracyResult] = field(default_factory=dict)
    pairs: list[PairAgreement] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


# reading ----------------------------------------------------------------------------------------------

def _model_label_map(info_model: Mapping[str, Any]) -> LabelMap | None:
    """The classes the job's model can emit: declared labels, else its model asset's manifest."""
    space = str(info_model.get("label_space", "coco"))
    labels = info_model.get("labels") or info_model.get("label_names")
    if isinstance(labels, Mapping) and labels:
        return LabelMap(space, {int(k): str(v) for k, v in labels.items()})
    name = info_model.get("model")
    if name:
        from harness.assets import load_manifests
        from harness.models import manifest_label_map

        manifest = load_manifests().get(str(name))
        if manifest is not None and manifest.kind == "model":
            return manifest_label_map(manifest)
    return COCO if space == "coco" else None


def _job_frames(results_dir: Path, job_id: str, all_frames: Any) -> list[int]:
    per_job = results_dir / "frames" / f"{job_id}.csv"
    import pandas as pd

    if per_job.is_file() and per_job.stat().st_size > 0:
        df = pd.read_csv(per_job)
        if "frame" in df.columns:
            return sorted(int(f) for f in df["frame"].dropna().unique())
    if all_frames is not None and len(all_frames):
        sel = all_frames[all_frames["job_id"].astype(str) == job_id]
        return sorted(int(f) for f in sel["frame"].dropna().unique())
    return []


def load_saved_jobs(results_dir: str | Path) -> list[SavedJob]:
    """Every job of a results folder whose detections were saved, in ``jobs.json`` order."""
    import pandas as pd

    folder = Path(results_dir)
    jobs_file = folder / "jobs.json"
    if not jobs_file.is_file():
        raise HarnessError(f"{folder} is not a results folder (no jobs.json)",
                           "give the folder a `harness run` wrote (e.g. results/<timestamp>)")
    data = json.loads(jobs_file.read_text(encoding="utf-8"))
    entries = data.get("jobs", []) if isinstance(data, dict) else data
    frames_csv = folder / "frames.csv"
    all_frames = pd.read_csv(frames_csv) if frames_csv.is_file() and frames_csv.stat().st_size > 0 else None
    jobs: list[SavedJob] = []
    for entry in entries:
        spec = entry.get("spec", entry)
        info = entry.get("info", {}) or {}
        job_id = str(spec["job_id"])
        det_file = folder / "detections" / f"{job_id}.json"
        if not det_file.is_file():
            continue
        size = info.get("frame_size")
        model = info.get("model", {}) or {}
        jobs.append(SavedJob(
            job_id=job_id,
            backend=str(spec.get("backend", "")),
            source=str(spec.get("source", "")),
            status=str(entry.get("status", "")),
            policy=PostprocessPolicy.from_dict(info.get("policy") or spec),
            frames=_job_frames(folder, job_id, all_frames),
            frame_size=(int(size[0]), int(size[1])) if size else None,
            label_map=_model_label_map(model),
            label_space=str(model.get("label_space", "coco")),
            detections=json.loads(det_file.read_text(encoding="utf-8")),
        ))
    return jobs


# ground truth per source ------------------------------------------------------------------------------

def _gt_plan(gt: Any, sources: list[str]) -> dict[str, Any]:
    """Which ground truth (spec or object) each source gets; a source missing from the plan gets none."""
    if isinstance(gt, Mapping):
        return dict(gt)
    if gt is None:
        return {s: s for s in sources}
    if isinstance(gt, str) and "=" in gt:
        plan: dict[str, Any] = {}
        for part in gt.split(","):
            src, _, spec = part.partition("=")
            if not spec:
                raise HarnessError(f"--gt entry {part!r} is not SOURCE=GROUND_TRUTH", "e.g. --gt pets09-s2l1=gt.txt")
            plan[src.strip()] = spec.strip()
        return plan
    if isinstance(gt, str) and gt in sources:
        return {s: s for s in sources}
    if len(set(sources)) <= 1:
        return {s: gt for s in sources}
    raise HarnessError(
        f"the results hold jobs on {len(set(sources))} sources ({', '.join(sorted(set(sources)))}) and one --gt",
        "say which source it belongs to: --gt SOURCE=GROUND_TRUTH (comma-separated for several)",
    )


def _load_gt(spec: Any, frame_size: tuple[int, int] | None, cache: dict[Any, GroundTruth]) -> GroundTruth:
    if isinstance(spec, GroundTruth):
        return spec
    # the ground truth's own frame size (seqinfo.ini, COCO image sizes) wins, so that a mismatch shows;
    # the job's frame size only fills in where the annotations don't say (for clipping)
    if str(spec) not in cache:
        cache[str(spec)] = load_ground_truth(str(spec))
    truth = cache[str(spec)]
    if truth.frame_size is None and not truth.frame_sizes and frame_size is not None:
        key = (str(spec), frame_size)
        if key not in cache:
            cache[key] = load_ground_truth(str(spec), frame_size=frame_size)
        truth = cache[key]
    return truth


# evaluation -------------------------------------------------------------------------------------------

def _fmt(value: float) -> float:
    return round(value, 6) if isinstance(value, float) and not math.isnan(value) else value


def evaluate_results(
    results_dir: str | Path,
    *,
    gt: Any = None,
    options: AccuracyOptions | None = None,
    min_height: float | None = None,
    roi: tuple[float, float, float, float] | None = None,
    score_threshold: float | None = None,
    iou_threshold: float = 0.5,
    write: bool = True,
) -> EvaluationResult:
    """Recompute accuracy and agreement for a results folder and (by default) rewrite its CSV files."""
    import pandas as pd

    folder = Path(results_dir)
    options = options or AccuracyOptions(min_height=min_height, roi=roi)
    jobs = [j for j in load_saved_jobs(folder) if j.status in EVALUATED_STATUSES or not j.status]
    notes: dict[str, str] = {}
    plan = _gt_plan(gt, [j.source for j in jobs])
    cache: dict[Any, GroundTruth] = {}
    per_job: dict[str, AccuracyResult] = {}
    acc_rows: list[dict[str, Any]] = []
    gt_names: dict[str, str] = {}
    for job in jobs:
        spec = plan.get(job.source)
        if spec is None:
            notes[job.job_id] = f"no ground truth given for source {job.source}"
            continue
        try:
            truth = _load_gt(spec, job.frame_size, cache)
        except HarnessError as exc:
            if gt is None:  # the source simply has no annotations: not an error
                notes[job.job_id] = f"no ground truth for {job.source}: {exc.problem}"
                continue
            raise
        gt_size = truth.frame_size
        if gt_size and job.frame_size and tuple(gt_size) != tuple(job.frame_size):
            notes[job.job_id] = (f"ground truth {truth.source} is for {gt_size[0]}x{gt_size[1]} frames, "
                                 f"the job decoded {job.frame_size[0]}x{job.frame_size[1]}")
            continue
        try:
            result = evaluate_detections(
                truth, job.detections, frames=job.frames or None, model_classes=job.label_map,
                policy_classes=job.policy.classes, options=options,
            )
        except HarnessError as exc:
            notes[job.job_id] = exc.problem
            continue
        per_job[job.job_id] = result
        gt_names[job.job_id] = truth.source
        common = {"job_id": job.job_id, "backend": job.backend, "video": job.source, "gt": truth.source,
                  "frames": result.frames, "min_height": options.min_height,
                  "roi": ",".join(f"{v:g}" for v in options.roi) if options.roi else ""}
        summary = result.summary()
        acc_rows.append({**common, "category_id": "", "category": "all",
                         **{k: _fmt(summary[k]) for k in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
                                                          "ar1", "ar10", "ar100")},
                         "n_gt": result.n_gt, "n_ignore": result.n_ignore, "n_dets": result.n_dets})
        for pc in result.per_class:
            acc_rows.append({**common, "category_id": pc.category_id, "category": pc.name, "ap": _fmt(pc.ap),
                             "ap50": _fmt(pc.ap50), "ap75": _fmt(pc.ap75), "ar100": _fmt(pc.ar100),
                             "n_gt": pc.n_gt, "n_ignore": pc.n_ignore, "n_dets": pc.n_dets})
    accuracy = pd.DataFrame(acc_rows, columns=ACCURACY_COLUMNS)

    pairs = agreement_pairs(jobs, score_threshold=score_threshold, iou_threshold=iou_threshold, notes=notes)
    agreement = pd.DataFrame([p.to_row() for p in pairs], columns=[f.name for f in fields(PairAgreement)])

    runs_file = folder / "runs.csv"
    runs = pd.read_csv(runs_file, keep_default_na=False) if runs_file.is_file() else pd.DataFrame({"job_id": []})
    runs["job_id"] = runs["job_id"].astype(str)
    for col in ACCURACY_RUN_COLUMNS:
        runs[col] = [_fmt(getattr(per_job[j], col)) if j in per_job else float("nan") for j in runs["job_id"]]

    if write:
        from harness.results import atomic_write_csv

        atomic_write_csv(folder / "accuracy.csv", accuracy)
        atomic_write_csv(folder / "agreement.csv", agreement)
        if runs_file.is_file():
            atomic_write_csv(runs_file, runs)
    return EvaluationResult(accuracy, agreement, runs, per_job, pairs, notes)


def pair_policy(a: PostprocessPolicy, b: PostprocessPolicy, score_threshold: float | None) -> PostprocessPolicy:
    """The policy two jobs are compared under: the stricter of each setting, unless a threshold is given.

    Both jobs saved every box above their record threshold, so any threshold at or above both record
    thresholds sees the same boxes a job with that threshold would have kept.
    """
    classes: tuple[int, ...] | None
    if a.classes is None or b.classes is None:
        classes = a.classes if b.classes is None else b.classes
    else:
        classes = tuple(sorted(set(a.classes) & set(b.classes)))
    record = max(a.record_threshold, b.record_threshold)
    thr = max(a.score_threshold, b.score_threshold) if score_threshold is None else float(score_threshold)
    if thr < record:
        raise HarnessError(f"score threshold {thr} is below the jobs' record threshold {record}: those boxes "
                           "were never saved", f"use a score threshold of at least {record}")
    tops = [t for t in (a.top_k, b.top_k) if t is not None]
    return PostprocessPolicy(record, thr, min(tops) if tops else None, classes)


def agreement_pairs(
    jobs: Iterable[SavedJob],
    *,
    score_threshold: float | None = None,
    iou_threshold: float = 0.5,
    notes: dict[str, str] | None = None,
) -> list[PairAgreement]:
    """Every unordered pair of jobs on the same source and frame size, over the frames both decoded."""
    notes = notes if notes is not None else {}
    out: list[PairAgreement] = []
    for a, b in itertools.combinations(list(jobs), 2):
        if a.source != b.source:
            continue
        key = f"{a.job_id} ~ {b.job_id}"
        if a.frame_size and b.frame_size and a.frame_size != b.frame_size:
            notes[key] = f"frame sizes differ ({a.frame_size} vs {b.frame_size})"
            continue
        if a.label_space != b.label_space:
            notes[key] = f"label spaces differ ({a.label_space} vs {b.label_space})"
            continue
        frames = sorted(set(a.frames) & set(b.frames)) if a.frames and b.frames else []
        if not frames:
            notes[key] = "no frames in common"
            continue
        policy = pair_policy(a.policy, b.policy, score_threshold)
        out.append(compare_records(
            a.detections, b.detections, frames, score_threshold=policy.score_threshold,
            iou_threshold=iou_threshold, classes=policy.classes, top_k=policy.top_k,
            job_a=a.job_id, job_b=b.job_id,
        ))
    return out
