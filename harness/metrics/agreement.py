"""How closely two jobs agree, frame by frame, with no ground truth involved.

The same weights in two frameworks should give almost the same boxes; where they don't, something in the
pipeline differs (colour order, resize, a swapped x/y, a threshold). For two jobs over the same frames,
boxes above the shared policy's score threshold are matched one-to-one per frame by IoU and class
(:func:`harness.metrics.matching.match_boxes`) and summarized: the share of each side's boxes the other
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

from harness.metrics.matching import match_boxes


@dataclass(frozen=True)
class FrameBoxes:
    """One frame's boxes of one job: xyxy pixels, scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def empty(cls) -> "FrameBoxes":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> "FrameBoxes":
        keep = self.scores >= threshold
        return FrameBoxes(self.boxes[keep], self.scores[keep], self.class_ids[keep])

    def below(self, threshold: float) -> "FrameBoxes":
        keep = self.scores < threshold
        return FrameBoxes(self.boxes[keep], self.scores[keep], self.class_ids[keep])


def records_by_frame(records: Iterable[Mapping[str, Any]]) -> dict[int, FrameBoxes]:
    """Group results-json rows (``frame, bbox xywh, score, category_id``) into per-frame xyxy arrays."""
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for rec in records:
        grouped.setdefault(int(rec["frame"]), []).append(rec)
    out: dict[int, FrameBoxes] = {}
    for frame, rows in grouped.items():
        xywh = np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        out[frame] = FrameBoxes(boxes, np.array([float(r["score"]) for r in rows]),
                                np.array([int(r["category_id"]) for r in rows], dtype=np.int64))
    return out


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
    a: Mapping[int, FrameBoxes],
    b: Mapping[int, FrameBoxes],
    frames: Iterable[int],
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
    same_class: bool = True,
    worst: int = 10,
    job_a: str = "a",
    job_b: str = "b",
) -> PairAgreement:
    """Match the boxes of ``a`` and ``b`` above ``score_threshold`` on each of ``frames``."""
    frame_list = sorted(set(int(f) for f in frames))
    n_a = n_b = n_matched = n_only_a = n_only_b = near_a = near_b = 0
    ious: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    per_frame: list[FrameDisagreement] = []
    empty = FrameBoxes.empty()
    for k in frame_list:
        fa_all, fb_all = a.get(k, empty), b.get(k, empty)
        fa, fb = fa_all.above(score_threshold), fb_all.above(score_threshold)
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
            deltas.append(np.abs(fa.scores[m.pairs[:, 0]] - fb.scores[m.pairs[:, 1]]))
        near_a += _near(fa, m.unmatched_a, fb_all.below(score_threshold), iou_threshold, same_class)
        near_b += _near(fb, m.unmatched_b, fa_all.below(score_threshold), iou_threshold, same_class)
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
        score_threshold=float(score_threshold),
        worst_frames=tuple(per_frame[:worst]),
    )


def _near(side: FrameBoxes, unmatched: np.ndarray, other_low: FrameBoxes, iou_threshold: float,
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
    score_threshold: float,
    iou_threshold: float = 0.5,
    classes: Iterable[int] | None = None,
    top_k: int | None = None,
    worst: int = 10,
    job_a: str = "a",
    job_b: str = "b",
) -> PairAgreement:
    """:func:`compare_frames` on two results-json row lists (class filter and top-k of the policy applied)."""
    def prepare(records: Sequence[Mapping[str, Any]]) -> dict[int, FrameBoxes]:
        rows = records
        if classes is not None:
            keep = {int(c) for c in classes}
            rows = [r for r in rows if int(r["category_id"]) in keep]
        grouped = records_by_frame(rows)
        if top_k is not None:
            for k, fb in grouped.items():
                idx = np.argsort(-fb.scores, kind="stable")[:top_k]
                grouped[k] = FrameBoxes(fb.boxes[idx], fb.scores[idx], fb.class_ids[idx])
        return grouped

    return compare_frames(prepare(records_a), prepare(records_b), frames, score_threshold=score_threshold,
                          iou_threshold=iou_threshold, worst=worst, job_a=job_a, job_b=job_b)
