"""The accuracy floor of reduced-precision variants, in MLPerf's style.

A variant (a job that asked for a precision, or ran at one other than fp32) is held against an fp32 job
on the same frames: the same backend running the same model at fp32 when the run has one, else another
backend's fp32 job of the same model (the same weights). Per variant:

* ``ap50_vs_fp32``: its AP50 over the fp32 job's AP50;
* ``below_floor``: that share below ``accuracy_floor`` (default 0.99: MLPerf's "99 % of fp32");
* ``agree_fp32``: the share of the fp32 job's boxes the variant also found (IoU 0.5, same class, at the pair's
  policy score threshold) and ``score_shift``/``score_shift_max``: the mean and largest score change of
  those matched boxes; ``fp32_job`` names the job it was held against.

Jobs with no precision asked that ran fp32 are the baselines: their cells stay empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from harness.measure.metrics.agreement import compare_frames
from harness.core.precision import DEFAULT_ACCURACY_FLOOR, check_accuracy_floor

FLOOR_COLUMNS = ("fp32_job", "ap50_vs_fp32", "below_floor", "accuracy_floor", "agree_fp32", "score_shift",
                 "score_shift_max")
#: IoU of "the same box" for agreement with fp32 (COCO's AP50 threshold)
FLOOR_IOU = 0.5


@dataclass(frozen=True)
class FloorCheck:
    """One variant against its fp32 job."""

    job_id: str
    fp32_job: str
    ap50_vs_fp32: float
    below_floor: bool
    accuracy_floor: float
    agree_fp32: float
    score_shift: float
    score_shift_max: float

    def columns(self) -> dict[str, Any]:
        return {"fp32_job": self.fp32_job, "ap50_vs_fp32": round(self.ap50_vs_fp32, 6),
                "below_floor": self.below_floor, "accuracy_floor": self.accuracy_floor,
                "agree_fp32": round(self.agree_fp32, 6), "score_shift": round(self.score_shift, 6),
                "score_shift_max": round(self.score_shift_max, 6)}


def _precision(job: Any) -> tuple[str | None, str]:
    """(requested, effective) as the job recorded them."""
    report = (job.model_info or {}).get("precision") or {}
    return job.spec.precision, str(report.get("effective") or "")


def _model_name(job: Any) -> str:
    return str((job.model_info or {}).get("model") or job.spec.model or "")


def _form(job: Any) -> dict[str, Any]:
    """The job's options that pick a form of the model (a cut), not its calibration."""
    return {k: v for k, v in job.spec.options.items() if not k.startswith("calibration")}


def _scenario(job: Any) -> Any:
    scenario = getattr(job.spec, "scenario", None)
    return scenario.normalized() if scenario is not None else None


def is_variant(job: Any) -> bool:
    """A job that asked for a precision other than fp32, or ran at one."""
    requested, effective = _precision(job)
    return requested not in (None, "fp32") or effective not in ("", "fp32", "unknown")


def is_fp32(job: Any) -> bool:
    requested, effective = _precision(job)
    return effective == "fp32" and requested in (None, "fp32", "auto")


def baseline_for(job: Any, candidates: Iterable[Any]) -> Any | None:
    """The fp32 job ``job`` is held against: on the same source and frames, the same model; the same
    backend preferred, then the same device, preprocessing and form (cut) of the model, then the same
    environment, scenario level and machine kind (each preference outranks all that follow it)."""
    best, best_rank = None, -1
    for other in candidates:
        if other.job_id == job.job_id or not is_fp32(other):
            continue
        if other.source_path != job.source_path or set(other.decoded_frames) != set(job.decoded_frames):
            continue
        if other.label_space != job.label_space or _model_name(other) != _model_name(job):
            continue
        same = [other.backend == job.backend, other.spec.device == job.spec.device,
                other.spec.preprocess == job.spec.preprocess, _form(other) == _form(job),
                other.spec.env_label == job.spec.env_label,  # the same framework build (environments)
                _scenario(other) == _scenario(job),  # the same scenario and level: batch 4 against batch 4
                other.spec.machine == job.spec.machine]  # the same machine kind (Ray)
        rank = sum(1 << (len(same) - 1 - i) for i, hit in enumerate(same) if hit)
        if rank > best_rank:
            best, best_rank = other, rank
    return best


def floor_checks(jobs: list[Any], per_job: Mapping[str, Any], accuracy_floor: float = DEFAULT_ACCURACY_FLOOR,
                 notes: dict[str, str] | None = None) -> list[FloorCheck]:
    """Every variant in ``jobs`` with ground truth held against its fp32 job (``per_job``: AccuracyResult by
    job id); a variant with no fp32 job to compare with gets a note instead."""
    from harness.core.policy import pair_policy

    floor = check_accuracy_floor(accuracy_floor)
    notes = notes if notes is not None else {}
    scored = [j for j in jobs if j.job_id in per_job]
    out = []
    for job in scored:
        if not is_variant(job):
            continue
        base = baseline_for(job, scored)
        if base is None:
            notes[job.job_id] = ("accuracy floor: no fp32 job of the same model on the same frames to compare "
                                 "with (add one: --precision fp32,...)")
            continue
        ap_v, ap_b = float(per_job[job.job_id].ap50), float(per_job[base.job_id].ap50)
        ratio = ap_v / ap_b if ap_b > 0 else float("nan")
        frames = sorted(set(job.decoded_frames))
        pair = compare_frames(base.detections_by_frame, job.detections_by_frame, frames,
                              policy=pair_policy(base.policy, job.policy, None), iou_threshold=FLOOR_IOU,
                              job_a=base.job_id, job_b=job.job_id)
        out.append(FloorCheck(job.job_id, base.job_id, ratio, bool(ratio < floor), floor, pair.matched_share_a,
                              pair.score_delta_mean, pair.score_delta_max))
    return out
