"""What the tests share to check that two backends (or two runs) found the same boxes."""

from __future__ import annotations

import numpy as np

from harness.core.detections import Detections
from harness.measure.metrics.matching import match_detections


def agreement(ref: list[Detections], other: list[Detections], iou: float = 0.95,
              min_score: float | None = None) -> dict[str, float]:
    """Share of boxes matched both ways at ``iou`` (same class), the IoUs of the matches and the largest
    score gap, over frames in the same order (optionally both filtered at ``min_score`` first)."""
    n_a = n_b = matched = 0
    ious: list[float] = []
    max_dscore = 0.0
    for a, b in zip(ref, other, strict=True):
        if min_score is not None:
            a, b = a.filtered(min_score=min_score), b.filtered(min_score=min_score)
        m = match_detections(a, b, iou_threshold=iou)
        n_a, n_b, matched = n_a + len(a), n_b + len(b), matched + m.matched
        ious += m.ious.tolist()
        if m.matched:
            max_dscore = max(max_dscore, float(np.abs(a.scores[m.pairs[:, 0]] - b.scores[m.pairs[:, 1]]).max()))
    return {"ref_boxes": n_a, "other_boxes": n_b, "matched": matched, "ref_matched": matched / max(n_a, 1),
            "other_matched": matched / max(n_b, 1), "mean_iou": float(np.mean(ious)) if ious else 0.0,
            "min_iou": float(np.min(ious)) if ious else 0.0, "max_dscore": max_dscore}


def _boxes(records: list[dict]) -> dict[int, np.ndarray]:
    out: dict[int, list] = {}
    for r in records:
        out.setdefault(r["frame"], []).append([*r["bbox"], r["score"], r["category_id"]])
    return {f: np.array(sorted(v, key=lambda x: (-x[4], x[0]))) for f, v in out.items()}


def assert_same_records(a: list[dict], b: list[dict]) -> None:
    ba, bb = _boxes(a), _boxes(b)
    assert ba.keys() == bb.keys()
    for frame in ba:
        assert ba[frame].shape == bb[frame].shape, frame
        np.testing.assert_allclose(ba[frame], bb[frame], atol=0.01)  # hundredths of a pixel and of a score
