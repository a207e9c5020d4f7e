"""Accuracy and agreement of a whole results folder, from what the jobs saved (no model is rerun).

Reads the folder through :mod:`harness.results` (specs, policy, model facts, frame size, the frames each
job decoded, its saved detections); writes, through the folder's :class:`~harness.results.ResultsWriter`
(which holds the folder's lock, so an eval never races a run writing the same folder),

* ``runs.csv`` with the columns ``ap, ap50, ap75, ar100`` filled in (NaN where a job has no ground truth);
* ``accuracy.csv``: one row per job and category, plus a row ``category = "all"`` (COCO's summary);
* ``agreement.csv``: one row per *unordered* pair of jobs over the same frames (same source, same frame
  size; the frames both decoded). Each row carries both directions (``matched_share_a`` and
  ``matched_share_b``, ``only_a`` and ``only_b``), so the reverse row would add nothing.

Every file is written to a temporary file in the same folder and renamed over the old one, so an
interrupted evaluation leaves the previous files intact. A job whose detections file is damaged gets no
numbers and is listed in :attr:`EvaluationResult.damaged` (the others are still scored).

Ground truth per job: ``gt=None`` uses the job's source as an asset name with a ``ground_truth`` file
(jobs on sources without one get no accuracy, and a note); a source given as a path is looked up at the
absolute path the job recorded, so an eval from another folder finds it; a string names one ground truth
for every job (when the folder holds one source, or when the string is that source's asset name);
``"SOURCE=GT"`` entries (or a dict) pick one per source.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.core.errors import HarnessError
from harness.data.groundtruth import GroundTruth, load_ground_truth
from harness.core.labels import COCO, LabelMap
from harness.measure.metrics.accuracy import AccuracyOptions, AccuracyResult, evaluate_detections
from harness.measure.metrics.agreement import PairAgreement, check_iou_threshold, compare_frames
from harness.measure.metrics.floor import FLOOR_COLUMNS, FloorCheck, floor_checks
from harness.core.precision import DEFAULT_ACCURACY_FLOOR, check_accuracy_floor
from harness.core.policy import PostprocessPolicy, pair_policy
from harness.results import (
    DamagedFile, ResultsWriter, SavedJob, absolute_path, is_path_like, load_run, require_results_folder,
)

ACCURACY_RUN_COLUMNS = ("ap", "ap50", "ap75", "ar100")
EVALUATED_STATUSES = {"ok", "fallback"}
# accuracy.csv keeps its header even when no job has ground truth, so readers need no special case
ACCURACY_COLUMNS = ["job_id", "backend", "video", "gt", "frames", "min_height", "roi", "category_id", "category",
                    "ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "n_gt",
                    "n_ignore", "n_dets"]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_results` computed; ``notes`` says why a job or pair got no numbers, ``damaged``
    which jobs' saved files could not be read."""

    accuracy: Any  # pandas.DataFrame: accuracy.csv
    agreement: Any  # pandas.DataFrame: agreement.csv
    runs: Any  # pandas.DataFrame: runs.csv with the accuracy columns
    per_job: dict[str, AccuracyResult] = field(default_factory=dict)
    pairs: list[PairAgreement] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    damaged: dict[str, DamagedFile] = field(default_factory=dict)
    floor: list[FloorCheck] = field(default_factory=list)  # precision: variants against fp32


# reading ----------------------------------------------------------------------------------------------

def model_label_map(job: SavedJob) -> LabelMap | None:
    """The classes the job's model can emit: declared labels, else its model asset's manifest."""
    info_model = job.model_info
    space = job.label_space
    labels = info_model.get("labels") or info_model.get("label_names")
    if isinstance(labels, Mapping) and labels:
        return LabelMap(space, {int(k): str(v) for k, v in labels.items()})
    name = info_model.get("model")
    if name:
        from harness.data.assets import load_manifests
        from harness.data.models import manifest_label_map

        manifest = load_manifests().get(str(name))
        if manifest is not None and manifest.kind == "model":
            return manifest_label_map(manifest)
    return COCO if space == "coco" else None


def scorable_jobs(jobs: Iterable[SavedJob], damaged: dict[str, DamagedFile]) -> list[SavedJob]:
    """Jobs with measurements whose saved files read; the others go to ``damaged`` by job id."""
    out = []
    for job in jobs:
        if job.status not in EVALUATED_STATUSES or not job.detections_path.is_file():
            continue
        try:
            job.records  # noqa: B018 - parse now, so one damaged file is reported, not raised mid-way
            job.decoded_frames  # noqa: B018
        except DamagedFile as exc:
            damaged[job.job_id] = exc
            continue
        out.append(job)
    return out


# ground truth per source ------------------------------------------------------------------------------

def _gt_key(job: SavedJob) -> str:
    """How to look up a job's own ground truth: its asset name, or the absolute path of its source file."""
    return job.source_path if is_path_like(job.spec.source) else job.spec.source


def _gt_plan(gt: Any, jobs: list[SavedJob]) -> Callable[[SavedJob], Any]:
    """Which ground truth (spec or object) each job gets; None = none."""
    def by_source(plan: Mapping[str, Any]) -> Callable[[SavedJob], Any]:
        cwd = Path.cwd()
        keyed = {str(k): v for k, v in plan.items()}
        keyed.update({absolute_path(str(k), cwd): v for k, v in plan.items()})
        return lambda job: keyed.get(job.spec.source, keyed.get(job.source_path))

    sources = sorted({job.spec.source for job in jobs})
    if isinstance(gt, Mapping):
        return by_source(gt)
    if gt is None:
        return _gt_key
    if isinstance(gt, str) and "=" in gt:
        plan: dict[str, Any] = {}
        for part in gt.split(","):
            src, _, spec = part.partition("=")
            if not spec:
                raise HarnessError(f"--gt entry {part!r} is not SOURCE=GROUND_TRUTH", "e.g. --gt pets09-s2l1=gt.txt")
            plan[src.strip()] = spec.strip()
        return by_source(plan)
    if isinstance(gt, str) and gt in sources:
        return _gt_key
    if len({job.source_path for job in jobs}) <= 1:
        return lambda job: gt
    raise HarnessError(
        f"the results hold jobs on {len(sources)} sources ({', '.join(sources)}) and one --gt",
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
    writer: ResultsWriter | None = None,
    accuracy_floor: float = DEFAULT_ACCURACY_FLOOR,
) -> EvaluationResult:
    """Recompute accuracy and agreement for a results folder and (by default) rewrite its CSV files.

    ``writer``: the open writer of a run that is evaluating its own folder (it holds the lock); without one,
    the folder is opened (and locked) here for the writing. ``accuracy_floor``: the share of the fp32 job's
    AP50 a precision variant must keep (:mod:`harness.measure.metrics.floor`).
    """
    import pandas as pd

    check_iou_threshold(iou_threshold)
    check_accuracy_floor(accuracy_floor)
    if score_threshold is not None and not 0.0 <= float(score_threshold) <= 1.0:
        raise HarnessError(f"--score-threshold must be within [0, 1], got {score_threshold:g}",
                           "scores are probabilities; the run's policy used 0.3 unless told otherwise")
    if write and writer is None:
        require_results_folder(results_dir)
        with ResultsWriter(results_dir) as own:
            # a damaged runs.csv or frames table is refused before anything is scored or rewritten (a cut row
            # written back would lose its cells for good); a damaged detections file only leaves its job
            # unscored, named at the end with the others scored
            if own.saved is not None and any(d.path.parent != own.layout.detections_dir
                                             for d in own.saved.damage):
                own.saved.require_intact()
            return evaluate_results(results_dir, gt=gt, options=options, min_height=min_height, roi=roi,
                                    score_threshold=score_threshold, iou_threshold=iou_threshold, writer=own,
                                    accuracy_floor=accuracy_floor)
    options = options or AccuracyOptions(min_height=min_height, roi=roi)
    run = load_run(results_dir)
    result = EvaluationResult(None, None, None)
    jobs = scorable_jobs(run.jobs.values(), result.damaged)
    acc_rows = _score(jobs, gt, options, result)
    result.accuracy = pd.DataFrame(acc_rows, columns=ACCURACY_COLUMNS)
    result.pairs = agreement_pairs(jobs, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                   notes=result.notes)
    result.agreement = pd.DataFrame([p.to_row() for p in result.pairs],
                                    columns=[f.name for f in fields(PairAgreement)])
    _name_environments(result.agreement, {job.job_id: job.spec.env_label for job in jobs})
    columns = {jid: {col: (_fmt(getattr(result.per_job[jid], col)) if jid in result.per_job else float("nan"))
                     for col in ACCURACY_RUN_COLUMNS} for jid in run.runs["job_id"].astype(str)}
    # precision: each precision variant against the fp32 job of the same model on the same frames
    result.floor = floor_checks(jobs, result.per_job, accuracy_floor, result.notes)
    checked = {c.job_id: c.columns() for c in result.floor}
    for jid, cols in columns.items():
        cols.update(checked.get(jid, {col: None for col in FLOOR_COLUMNS}))
    runs = run.runs.copy()
    for col in (*ACCURACY_RUN_COLUMNS, *FLOOR_COLUMNS):
        runs[col] = [columns[j][col] for j in runs["job_id"].astype(str)]
    result.runs = runs
    if write and writer is not None:
        writer.write_table("accuracy", result.accuracy)
        writer.write_table("agreement", result.agreement)
        if run.layout.runs.is_file():
            writer.update_runs(columns)
    return result


def _name_environments(table: Any, where: Mapping[str, str]) -> None:
    """agreement.csv's ``env_a``/``env_b``: where each side of a pair ran (an environment's name or an
    interpreter's path), so a pair across environments (opencv in default vs in ocv4) reads as one."""
    for side in ("a", "b"):
        table.insert(list(table.columns).index(f"job_{side}") + 1, f"env_{side}",
                     [where.get(str(j), "default") for j in table[f"job_{side}"]])


def _score(jobs: list[SavedJob], gt: Any, options: AccuracyOptions, result: EvaluationResult) -> list[dict]:
    """Each job's COCO AP against its ground truth: accuracy.csv rows; per-job results and notes into ``result``."""
    plan = _gt_plan(gt, jobs)
    cache: dict[Any, GroundTruth] = {}
    rows: list[dict[str, Any]] = []
    for job in jobs:
        spec = plan(job)
        if spec is None:
            result.notes[job.job_id] = f"no ground truth given for source {job.spec.source}"
            continue
        try:
            truth = _load_gt(spec, job.frame_size, cache)
        except HarnessError as exc:
            if gt is None:  # the source simply has no annotations: not an error
                result.notes[job.job_id] = f"no ground truth for {job.spec.source}: {exc.problem}"
                continue
            raise
        gt_size = truth.frame_size
        if gt_size and job.frame_size and tuple(gt_size) != tuple(job.frame_size):
            result.notes[job.job_id] = (f"ground truth {truth.source} is for {gt_size[0]}x{gt_size[1]} frames, "
                                        f"the job decoded {job.frame_size[0]}x{job.frame_size[1]}")
            continue
        try:
            scored = evaluate_detections(
                truth, job.records, frames=job.decoded_frames or None, model_classes=model_label_map(job),
                policy_classes=job.policy.classes, options=options,
            )
        except HarnessError as exc:
            result.notes[job.job_id] = exc.problem
            continue
        result.per_job[job.job_id] = scored
        common = {"job_id": job.job_id, "backend": job.backend, "video": job.spec.source, "gt": truth.source,
                  "frames": scored.frames, "min_height": options.min_height,
                  "roi": ",".join(f"{v:g}" for v in options.roi) if options.roi else ""}
        summary = scored.summary()
        rows.append({**common, "category_id": "", "category": "all",
                     **{k: _fmt(summary[k]) for k in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
                                                      "ar1", "ar10", "ar100")},
                     "n_gt": scored.n_gt, "n_ignore": scored.n_ignore, "n_dets": scored.n_dets})
        for pc in scored.per_class:
            rows.append({**common, "category_id": pc.category_id, "category": pc.name, "ap": _fmt(pc.ap),
                         "ap50": _fmt(pc.ap50), "ap75": _fmt(pc.ap75), "ar100": _fmt(pc.ar100),
                         "n_gt": pc.n_gt, "n_ignore": pc.n_ignore, "n_dets": pc.n_dets})
    return rows


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
        if a.source_path != b.source_path:
            continue
        key = f"{a.job_id} ~ {b.job_id}"
        if a.frame_size and b.frame_size and a.frame_size != b.frame_size:
            notes[key] = f"frame sizes differ ({a.frame_size} vs {b.frame_size})"
            continue
        if a.label_space != b.label_space:
            notes[key] = f"label spaces differ ({a.label_space} vs {b.label_space})"
            continue
        frames = sorted(set(a.decoded_frames) & set(b.decoded_frames))
        if not frames:
            notes[key] = "no frames in common"
            continue
        out.append(compare_frames(
            a.detections_by_frame, b.detections_by_frame, frames,
            policy=pair_policy(a.policy, b.policy, score_threshold), iou_threshold=iou_threshold,
            job_a=a.job_id, job_b=b.job_id,
        ))
    return out
