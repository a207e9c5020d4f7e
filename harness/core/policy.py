"""The one post-processing policy every backend in a comparison shares.

Backends disagree on defaults (OpenCV keeps boxes above 0.0, the OD API pads to 100, TFLite keeps 10); a
comparison is only fair when the same rule decides which boxes count. The policy is written into the
results (``jobs.json``) so a report can say which rule made its numbers.

Two thresholds, on purpose: ``record_threshold`` is low, and every box above it is saved and used for AP
(COCO's AP integrates over the whole score range, so cutting at an operating point would understate it);
``score_threshold`` is the operating point used for agreement, counts and drawings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from harness.core.detections import Detections
from harness.core.errors import HarnessError


@dataclass(frozen=True)
class PostprocessPolicy:
    record_threshold: float = 0.01
    score_threshold: float = 0.3
    top_k: int | None = 100
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("record_threshold", "score_threshold"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise HarnessError(f"{name} must be within [0, 1], got {value}", "scores are probabilities")
            object.__setattr__(self, name, value)
        if self.score_threshold < self.record_threshold:
            raise HarnessError(
                f"score_threshold {self.score_threshold} is below record_threshold {self.record_threshold}: "
                "boxes between them were never saved",
                "raise score_threshold or lower record_threshold",
            )
        if self.top_k is not None:
            if int(self.top_k) <= 0:
                raise HarnessError(f"top_k must be positive, got {self.top_k}", "use e.g. 100, or None for no cap")
            object.__setattr__(self, "top_k", int(self.top_k))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    # serialization ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "record_threshold": self.record_threshold,
            "score_threshold": self.score_threshold,
            "top_k": self.top_k,
            "classes": list(self.classes) if self.classes is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PostprocessPolicy":
        """Read a policy; unknown keys (a whole job spec, say) are ignored, missing ones take defaults."""
        data = dict(data or {})
        kwargs: dict[str, Any] = {}
        for key in ("record_threshold", "score_threshold", "top_k", "classes"):
            if key not in data or (data[key] is None and key.endswith("threshold")):
                continue
            kwargs[key] = data[key]
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "PostprocessPolicy":
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return PostprocessPolicy.from_dict(d)

    # application ------------------------------------------------------------------------------------------
    def record(self, dets: Detections) -> Detections:
        """What a job saves: boxes above the record threshold, class filter, top-k by score."""
        return dets.filtered(min_score=self.record_threshold, top_k=self.top_k, classes=self.classes)

    def apply(self, dets: Detections) -> Detections:
        """The operating point: boxes above the score threshold, class filter, top-k by score."""
        return dets.filtered(min_score=self.score_threshold, top_k=self.top_k, classes=self.classes)

    def near_misses(self, dets: Detections) -> Detections:
        """Boxes the job saved but the operating point does not show (record threshold <= score < score
        threshold): another job's box that matches one of these is a borderline score, not a missed object."""
        return self.record(dets).filtered(max_score=self.score_threshold)

    def apply_records(self, records: Iterable[Mapping[str, Any]], *, threshold: float | None = None) -> list[dict]:
        """Filter results-json rows per frame like :meth:`apply` (``threshold`` overrides the score threshold)."""
        cut = self.score_threshold if threshold is None else threshold
        by_frame: dict[int, list[dict]] = {}
        for rec in records:
            if float(rec["score"]) < cut:
                continue
            if self.classes is not None and int(rec["category_id"]) not in self.classes:
                continue
            by_frame.setdefault(int(rec["frame"]), []).append(dict(rec))
        out: list[dict] = []
        for frame in sorted(by_frame):
            rows = by_frame[frame]
            order = np.argsort([-float(r["score"]) for r in rows], kind="stable")
            if self.top_k is not None:
                order = order[: self.top_k]
            out.extend(rows[i] for i in order)
        return out


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
