"""How closely two jobs agree, frame by frame, with no ground truth involved.

The same weights in two frameworks should give almost the same boxes; where they don't, something in the
pipeline differs (colour order, resize, a swapped x/y, a threshold). For two jobs over the same frames,
boxes above the shared policy's score threshold are matched one-to-one per frame by IoU and class
(:func:`harness.measure.metrics.matching.match_boxes`) and summarized: the share of each side's boxes the other
found, the IoU of the matches, the score differences of matched boxes, the boxes only one side found, and
the frames that disagree most (so a report can point at them).

A box one side scored just above the threshold and the other just below is not a real disagreement: such
boxes still count in ``only_a``/``only_b`` (the policy is the policy), and ``only_a_near``/``only_b_near``
say how many of them the other side did find below the threshold (above the record threshold).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness.core.detections import Detections, group_coco_records
from harness.core.errors import HarnessError
from harness.measure.metrics.matching import match_boxes
from harness.core.policy import PostprocessPolicy


def check_iou_threshold(iou_threshold: float) -> float:
    """IoU is a share in (0, 1]: 0 would match boxes that do not touch, above 1 nothing ever matches."""
    value = float(iou_threshold)
    if not 0.0 < value <= 1.0:
        raise HarnessError(f"--iou must be within (0, 1], got {value:g}",
                           "0.5 is the usual threshold for 'the same object'; 0.75 for close boxes")
    return value


@dataclass(frozen=True)
class FrameDisagreement:
    frame: int
    only_a: int
    only_b: int
    matched: int

    def __str__(self) -> str:
        return f"{self.frame}:{self.only_a}+{self.only_b}"


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of job ``a`` and job ``b`` over their common frames, at one score threshold."""

    job_a: str
    job_b: str
    frames: int
    boxes_a: int
    boxes_b: int
    matched: int
    only_a: int
    only_b: int
    only_a_near: int  # of only_a: b found it below the score threshold
    only_b_near: int
    matched_share_a: float  # matched / boxes_a: how much of a's output b reproduces
    matched_share_b: float
    mean_iou: float
    min_iou: float
    score_delta_mean: float  # mean |score_a - score_b| over matches
    score_delta_max: float
    frames_disagreeing: int
    iou_threshold: float
    score_threshold: float
    worst_frames: tuple[FrameDisagreement, ...] = field(default=())

    def to_row(self) -> dict[str, Any]:
        """A flat agreement.csv row; ``worst_frames`` as ``frame:only_a+only_b`` separated by spaces."""
        row = asdict(self)
        row["worst_frames"] = " ".join(str(w) for w in self.worst_frames)
        return row


def _share(matched: int, total: int) -> float:
    return matched / total if total else float("nan")


def compare_frames(
    a: Mapping[int, Detections],
    b: Mapping[int, Detections],
    frames: Iterable[int],
    *,
    policy: PostprocessPolicy,
    iou_threshold: float = 0.5,
    same_class: bool = True,
    worst: int = 10,
    job_a: str = "a",
    job_b: str = "b",
) -> PairAgreement:
    """Match the boxes ``policy`` shows of ``a`` and ``b`` (every saved box per frame) on each of ``frames``."""
    iou_threshold = check_iou_threshold(iou_threshold)
    frame_list = sorted(set(int(f) for f in frames))
    n_a = n_b = n_matched = n_only_a = n_only_b = near_a = near_b = 0
    ious: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    per_frame: list[FrameDisagreement] = []
    empty = Detections.empty((1, 1))
    for k in frame_list:
        fa_all, fb_all = a.get(k, empty), b.get(k, empty)
        fa, fb = policy.apply(fa_all), policy.apply(fb_all)
        m = match_boxes(fa.boxes, fb.boxes, iou_threshold=iou_threshold,
                        classes_a=fa.class_ids if same_class else None,
                        classes_b=fb.class_ids if same_class else None)
        n_a += len(fa)
        n_b += len(fb)
        n_matched += m.matched
        n_only_a += len(m.unmatched_a)
        n_only_b += len(m.unmatched_b)
        if m.matched:
            ious.append(m.ious)
            # saved scores have 5 decimals: rounding to 6 drops float32's noise (1.0014e-05 -> 1e-05)
            deltas.append(np.round(np.abs(fa.scores[m.pairs[:, 0]].astype(np.float64)
                                          - fb.scores[m.pairs[:, 1]].astype(np.float64)), 6))
        near_a += _near(fa, m.unmatched_a, policy.near_misses(fb_all), iou_threshold, same_class)
        near_b += _near(fb, m.unmatched_b, policy.near_misses(fa_all), iou_threshold, same_class)
        if len(m.unmatched_a) or len(m.unmatched_b):
            per_frame.append(FrameDisagreement(k, len(m.unmatched_a), len(m.unmatched_b), m.matched))
    iou_all = np.concatenate(ious) if ious else np.zeros(0)
    delta_all = np.concatenate(deltas) if deltas else np.zeros(0)
    per_frame.sort(key=lambda d: (-(d.only_a + d.only_b), d.frame))
    nan = float("nan")
    return PairAgreement(
        job_a=job_a,
        job_b=job_b,
        frames=len(frame_list),
        boxes_a=n_a,
        boxes_b=n_b,
        matched=n_matched,
        only_a=n_only_a,
        only_b=n_only_b,
        only_a_near=near_a,
        only_b_near=near_b,
        matched_share_a=_share(n_matched, n_a),
        matched_share_b=_share(n_matched, n_b),
        mean_iou=float(iou_all.mean()) if iou_all.size else nan,
        min_iou=float(iou_all.min()) if iou_all.size else nan,
        score_delta_mean=float(delta_all.mean()) if delta_all.size else nan,
        score_delta_max=float(delta_all.max()) if delta_all.size else nan,
        frames_disagreeing=len(per_frame),
        iou_threshold=float(iou_threshold),
        score_threshold=float(policy.score_threshold),
        worst_frames=tuple(per_frame[:worst]),
    )


def _near(side: Detections, unmatched: np.ndarray, other_low: Detections, iou_threshold: float,
          same_class: bool) -> int:
    """How many unmatched boxes of ``side`` the other side has below the score threshold."""
    if not len(unmatched) or not len(other_low):
        return 0
    m = match_boxes(side.boxes[unmatched], other_low.boxes, iou_threshold=iou_threshold,
                    classes_a=side.class_ids[unmatched] if same_class else None,
                    classes_b=other_low.class_ids if same_class else None)
    return m.matched


def compare_records(
    records_a: Sequence[Mapping[str, Any]],
    records_b: Sequence[Mapping[str, Any]],
    frames: Iterable[int],
    *,
    policy: PostprocessPolicy | None = None,
    score_threshold: float | None = None,
    iou_threshold: float = 0.5,
    frame_size: tuple[int, int] | None = None,
    label_space: str = "coco",
    worst: int = 10,
    job_a: str = "a",
    job_b: str = "b",
) -> PairAgreement:
    """:func:`compare_frames` on two results-json row lists. ``policy`` (or, for a quick look, a bare
    ``score_threshold`` with no top-k or class filter) decides which boxes count."""
    if policy is None:
        thr = 0.3 if score_threshold is None else float(score_threshold)
        policy = PostprocessPolicy(record_threshold=0.0, score_threshold=thr, top_k=None)
    elif score_threshold is not None:
        policy = policy.replace(score_threshold=score_threshold)
    return compare_frames(group_coco_records(records_a, frame_size, label_space=label_space),
                          group_coco_records(records_b, frame_size, label_space=label_space), frames,
                          policy=policy, iou_threshold=iou_threshold, worst=worst, job_a=job_a, job_b=job_b)
