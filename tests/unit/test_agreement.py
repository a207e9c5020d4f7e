"""Cross-job agreement: identical outputs agree fully, known shifts give known IoUs, a swapped x/y is caught."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.detections import Detections, group_coco_records
from harness.core.errors import HarnessError
from harness.measure.metrics.agreement import compare_records
from harness.core.policy import pair_policy
from harness.core.policy import PostprocessPolicy

SIZE = (768, 576)  # non-square: a swapped x/y only shows on such frames


def _records(n_frames: int = 20, seed: int = 0) -> list[dict]:
    """People-shaped boxes (taller than wide) spread over a 768x576 frame, as results-json rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_frames):
        n = int(rng.integers(2, 7))
        x = rng.uniform(0, 700, n)
        y = rng.uniform(0, 450, n)
        w = rng.uniform(20, 60, n)
        h = w * rng.uniform(1.8, 2.6, n)
        scores = rng.uniform(0.35, 0.99, n)
        dets = Detections.from_boxes(np.stack([x, y, x + w, y + h], 1), scores, np.ones(n), SIZE)
        rows.extend(dets.to_coco_records(k))
    return rows


def test_the_same_detections_agree_fully() -> None:
    recs = _records()
    r = compare_records(recs, [dict(x) for x in recs], range(20), score_threshold=0.3)
    assert r.frames == 20 and r.boxes_a == r.boxes_b == r.matched > 40
    assert r.matched_share_a == r.matched_share_b == 1.0
    assert r.mean_iou == pytest.approx(1.0) and r.min_iou == pytest.approx(1.0)
    assert r.score_delta_mean == 0.0 and r.score_delta_max == 0.0
    assert r.only_a == r.only_b == 0 and r.frames_disagreeing == 0 and r.worst_frames == ()


def test_boxes_shifted_by_a_known_amount_give_the_expected_iou() -> None:
    box = {"frame": 0, "bbox": [100.0, 100.0, 50.0, 100.0], "score": 0.9, "category_id": 1}
    shifted = {**box, "bbox": [110.0, 100.0, 50.0, 100.0], "score": 0.8}  # 10 px right: IoU 40/60
    r = compare_records([box], [shifted], [0], score_threshold=0.3)
    assert r.matched == 1 and r.mean_iou == pytest.approx(40 / 60) and r.min_iou == pytest.approx(40 / 60)
    assert r.score_delta_mean == pytest.approx(0.1) and r.score_delta_max == pytest.approx(0.1)
    far = {**box, "bbox": [130.0, 100.0, 50.0, 100.0]}  # IoU 20/80 = 0.25 < 0.5: two different objects
    r = compare_records([box], [far], [0], score_threshold=0.3)
    assert r.matched == 0 and r.only_a == 1 and r.only_b == 1 and np.isnan(r.mean_iou)
    assert [str(w) for w in r.worst_frames] == ["0:1+1"]


def test_shifting_every_box_lowers_the_mean_iou_by_the_expected_amount() -> None:
    recs = _records()
    moved = [{**r, "bbox": [r["bbox"][0], r["bbox"][1] + 0.1 * r["bbox"][3], *r["bbox"][2:]]} for r in recs]
    moved = [m for m, r in zip(moved, recs) if m["bbox"][1] + m["bbox"][3] <= SIZE[1]]  # stay inside the frame
    kept = {(m["frame"], m["bbox"][0]) for m in moved}
    base = [r for r in recs if (r["frame"], r["bbox"][0]) in kept]
    r = compare_records(base, moved, range(20), score_threshold=0.3)
    assert r.matched == len(base)
    assert r.mean_iou == pytest.approx(0.9 / 1.1, abs=1e-3)  # 10% of the height: IoU 0.9h / 1.1h


def test_a_swapped_x_y_on_a_non_square_frame_is_caught() -> None:
    recs = _records(seed=3)
    good = group_coco_records(recs, SIZE)
    swapped = []
    for k, fb in good.items():
        # the converter trap: normalized yxyx boxes read as xyxy (y scaled by the width, x by the height)
        norm_yxyx = fb.boxes[:, [1, 0, 3, 2]] / np.array([SIZE[1], SIZE[0], SIZE[1], SIZE[0]])
        wrong = Detections.from_boxes(norm_yxyx, fb.scores, fb.class_ids, SIZE, fmt="xyxy", normalized=True)
        swapped.extend(wrong.to_coco_records(k))
    r = compare_records(recs, swapped, range(20), score_threshold=0.3)
    assert r.matched_share_a < 0.2 and r.only_a > 0.8 * r.boxes_a
    assert r.frames_disagreeing >= 15 and len(r.worst_frames) == 10
    worst = r.worst_frames[0]
    assert worst.only_a + worst.only_b == max(w.only_a + w.only_b for w in r.worst_frames)


def test_classes_must_agree_and_a_borderline_score_is_reported_as_near() -> None:
    a = {"frame": 0, "bbox": [100.0, 100.0, 50.0, 100.0], "score": 0.9, "category_id": 1}
    other_class = {**a, "category_id": 18}
    r = compare_records([a], [other_class], [0], score_threshold=0.3)
    assert r.matched == 0 and r.only_a == 1 and r.only_b == 1
    borderline = {**a, "score": 0.29}  # b found it, just below the policy's threshold
    r = compare_records([a], [borderline], [0], score_threshold=0.3)
    assert r.matched == 0 and r.only_a == 1 and r.only_a_near == 1 and r.boxes_b == 0
    r = compare_records([a], [borderline], [0], score_threshold=0.25)
    assert r.matched == 1 and r.score_delta_max == pytest.approx(0.61)


def test_only_the_common_frames_are_compared() -> None:
    recs = _records()
    r = compare_records(recs, recs, [0, 1, 2], score_threshold=0.3)
    assert r.frames == 3 and r.boxes_a == sum(1 for x in recs if x["frame"] < 3)


def test_pair_policy_takes_the_stricter_setting_and_refuses_unsaved_scores() -> None:
    a = PostprocessPolicy(record_threshold=0.01, score_threshold=0.3, top_k=100, classes=(1, 2))
    b = PostprocessPolicy(record_threshold=0.05, score_threshold=0.5, top_k=50, classes=(1,))
    p = pair_policy(a, b, None)
    assert (p.record_threshold, p.score_threshold, p.top_k, p.classes) == (0.05, 0.5, 50, (1,))
    assert pair_policy(a, b, 0.4).score_threshold == 0.4
    with pytest.raises(HarnessError, match="never saved"):
        pair_policy(a, b, 0.02)
    assert PostprocessPolicy.from_dict(a.to_dict()) == a
    assert PostprocessPolicy.from_dict({"job_id": "x", "score_threshold": 0.4}).score_threshold == 0.4
