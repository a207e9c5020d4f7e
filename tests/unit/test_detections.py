"""Canonical detections and box conversions: hand-computed cases, round trips, non-square frames."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.detections import BOX_FORMATS, Detections, box_iou, convert_boxes, group_coco_records

FRAMES = [(768, 576), (576, 768), (1920, 1080)]


def test_yxyx_normalized_to_pixels_hand_computed_on_a_non_square_frame() -> None:
    # ymin, xmin, ymax, xmax normalized on a 768 wide x 576 high frame
    boxes = np.array([[0.25, 0.5, 0.75, 1.0]])
    out = convert_boxes(boxes, "yxyx", "xyxy", frame_size=(768, 576), src_normalized=True)
    # x scales by width (768), y by height (576)
    np.testing.assert_allclose(out, [[384.0, 144.0, 768.0, 432.0]])


def test_the_classic_axis_swap_bug_would_be_visible() -> None:
    boxes = np.array([[0.1, 0.2, 0.3, 0.4]])
    right = convert_boxes(boxes, "yxyx", "xyxy", frame_size=(768, 576), src_normalized=True)
    wrong = boxes[:, [1, 0, 3, 2]] * np.array([576, 768, 576, 768])  # y by width, x by height
    assert not np.allclose(right, wrong)
    np.testing.assert_allclose(right, [[0.2 * 768, 0.1 * 576, 0.4 * 768, 0.3 * 576]])


@pytest.mark.parametrize(
    ("fmt", "box"),
    [
        ("xyxy", [10, 20, 110, 70]),
        ("yxyx", [20, 10, 70, 110]),
        ("xywh", [10, 20, 100, 50]),
        ("cxcywh", [60, 45, 100, 50]),
    ],
)
def test_known_box_in_every_format(fmt: str, box: list[float]) -> None:
    xyxy = np.array([[10, 20, 110, 70]], dtype=float)
    np.testing.assert_allclose(convert_boxes(xyxy, "xyxy", fmt), [box])
    np.testing.assert_allclose(convert_boxes([box], fmt, "xyxy"), xyxy)


def test_normalized_xyxy_and_cxcywh_hand_computed() -> None:
    xyxy = np.array([[192.0, 144.0, 576.0, 432.0]])  # on 768x576
    np.testing.assert_allclose(
        convert_boxes(xyxy, "xyxy", "xyxy", frame_size=(768, 576), dst_normalized=True), [[0.25, 0.25, 0.75, 0.75]]
    )
    np.testing.assert_allclose(
        convert_boxes(xyxy, "xyxy", "cxcywh", frame_size=(768, 576), dst_normalized=True), [[0.5, 0.5, 0.5, 0.5]]
    )


def test_normalized_needs_frame_size() -> None:
    with pytest.raises(ValueError, match="frame_size"):
        convert_boxes([[0, 0, 1, 1]], "xyxy", "xyxy", src_normalized=True)


def test_bad_shapes_and_formats_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        convert_boxes(np.zeros((3, 5)), "xyxy", "xyxy")
    with pytest.raises(ValueError, match="unknown box format"):
        convert_boxes(np.zeros((1, 4)), "xyxy", "ltrb")  # type: ignore[arg-type]


def _boxes(frame: tuple[int, int]):
    w, h = frame

    def build(vals: list[tuple[float, float, float, float]]) -> np.ndarray:
        out = []
        for a, b, c, d in vals:
            x1, x2 = sorted((a * w, c * w))
            y1, y2 = sorted((b * h, d * h))
            out.append([x1, y1, x2 + 1.0, y2 + 1.0])
        return np.array(out, dtype=np.float64).reshape(-1, 4)

    unit = st.floats(0, 1, allow_nan=False, width=32)
    return st.lists(st.tuples(unit, unit, unit, unit), max_size=20).map(build)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), frame=st.sampled_from(FRAMES), src=st.sampled_from(BOX_FORMATS),
       dst=st.sampled_from(BOX_FORMATS), src_norm=st.booleans(), dst_norm=st.booleans())
def test_round_trip_between_any_two_formats(data, frame, src, dst, src_norm, dst_norm) -> None:
    xyxy = data.draw(_boxes(frame))
    a = convert_boxes(xyxy, "xyxy", src, frame_size=frame, dst_normalized=src_norm)
    b = convert_boxes(a, src, dst, frame_size=frame, src_normalized=src_norm, dst_normalized=dst_norm)
    back = convert_boxes(b, dst, "xyxy", frame_size=frame, src_normalized=dst_norm)
    np.testing.assert_allclose(back, xyxy, rtol=1e-9, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), frame=st.sampled_from(FRAMES))
def test_detections_from_normalized_yxyx_match_pixels_and_stay_in_frame(data, frame) -> None:
    xyxy = data.draw(_boxes(frame))
    w, h = frame
    yxyx_norm = convert_boxes(xyxy, "xyxy", "yxyx", frame_size=frame, dst_normalized=True)
    dets = Detections.from_boxes(yxyx_norm, np.ones(len(xyxy)), np.ones(len(xyxy)), frame, fmt="yxyx",
                                 normalized=True)
    assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (len(dets), 4)
    assert np.all(dets.boxes[:, [0, 2]] <= w) and np.all(dets.boxes[:, [1, 3]] <= h)
    assert np.all(dets.boxes >= 0)
    expected = xyxy.copy()
    expected[:, [0, 2]] = np.clip(expected[:, [0, 2]], 0, w)
    expected[:, [1, 3]] = np.clip(expected[:, [1, 3]], 0, h)
    # a box on the frame's edge has no area once clipped, and clip() drops it (float32 like the Detections)
    e32 = expected.astype(np.float32)
    expected = expected[(e32[:, 2] > e32[:, 0]) & (e32[:, 3] > e32[:, 1])]
    np.testing.assert_allclose(dets.boxes, expected, rtol=1e-5, atol=1e-2)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), frame=st.sampled_from(FRAMES), factor=st.floats(0.25, 4.0))
def test_rescaling_to_another_frame_scales_x_by_width_and_y_by_height(data, frame, factor) -> None:
    xyxy = data.draw(_boxes(frame))
    dets = Detections(xyxy, np.ones(len(xyxy)), np.ones(len(xyxy)), frame)
    target = (max(1, round(frame[0] * factor)), max(1, round(frame[1] / factor)))
    out = dets.rescaled(target)
    sx, sy = target[0] / frame[0], target[1] / frame[1]
    np.testing.assert_allclose(out.boxes, (xyxy * [sx, sy, sx, sy]).astype(np.float32), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out.to("xyxy", normalized=True), dets.to("xyxy", normalized=True), atol=1e-5)


def test_clip_drops_boxes_without_area_and_keeps_the_rest() -> None:
    dets = Detections(
        [[-10, -5, 50, 40], [800, 10, 900, 50], [700, 500, 800, 600]], [0.9, 0.8, 0.7], [1, 1, 3], (768, 576)
    ).clip()
    np.testing.assert_allclose(dets.boxes, [[0, 0, 50, 40], [700, 500, 768, 576]])
    np.testing.assert_array_equal(dets.class_ids, [1, 3])
    np.testing.assert_allclose(dets.scores, [0.9, 0.7])


def test_empty_detections_behave() -> None:
    dets = Detections.empty((768, 576))
    assert len(dets) == 0
    assert dets.to("xywh").shape == (0, 4)
    assert len(dets.clip()) == 0 and len(dets.filtered(min_score=0.5, top_k=3)) == 0
    assert dets.rescaled((100, 100)).frame_size == (100, 100)
    assert dets.to_coco_records(3) == []


def test_filter_policy_threshold_class_and_top_k() -> None:
    dets = Detections(np.tile([[0, 0, 10, 10]], (5, 1)), [0.1, 0.9, 0.5, 0.7, 0.3], [1, 1, 2, 1, 1], (64, 48))
    out = dets.filtered(min_score=0.3, top_k=2, classes=[1])
    np.testing.assert_allclose(out.scores, [0.9, 0.7])
    assert list(out.class_ids) == [1, 1]


def test_coco_records_are_xywh_pixels() -> None:
    dets = Detections([[10, 20, 110, 70]], [0.5], [1], (768, 576))
    assert dets.to_coco_records(7) == [{"frame": 7, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.5,
                                        "category_id": 1}]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), frame=st.sampled_from(FRAMES))
def test_coco_records_round_trip_to_detections_on_non_square_frames(data, frame) -> None:
    xyxy = data.draw(_boxes(frame))
    n = len(xyxy)
    dets = Detections(xyxy, np.linspace(0.1, 0.9, n), np.arange(n) % 3 + 1, frame)
    back = Detections.from_coco_records(dets.to_coco_records(4), frame)
    np.testing.assert_allclose(back.boxes, dets.boxes, atol=2e-3)  # records keep 3 decimals
    np.testing.assert_allclose(back.scores, dets.scores, atol=1e-5)
    np.testing.assert_array_equal(back.class_ids, dets.class_ids)
    assert back.frame_size == frame


def test_records_group_into_per_frame_detections() -> None:
    rows = [{"frame": 3, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.9, "category_id": 1},
            {"frame": 0, "bbox": [700.0, 500.0, 90.0, 70.0], "score": 0.4, "category_id": 18},
            {"frame": 3, "bbox": [5.0, 6.0, 7.0, 8.0], "score": 0.2, "category_id": 1}]
    grouped = group_coco_records(rows, (768, 576))
    assert list(grouped) == [0, 3]
    np.testing.assert_allclose(grouped[3].boxes, [[10, 20, 110, 70], [5, 6, 12, 14]])
    np.testing.assert_allclose(grouped[0].boxes, [[700, 500, 790, 570]])  # as saved: not clipped to the frame
    assert grouped[0].class_ids.tolist() == [18] and grouped[3].frame_size == (768, 576)
    # no recorded frame size: the boxes' extent stands in, nothing is lost
    assert group_coco_records(rows, None)[0].frame_size == (790, 570)
    assert group_coco_records([], (768, 576)) == {}


def test_mismatched_lengths_and_bad_frame_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Detections([[0, 0, 1, 1]], [0.5, 0.6], [1], (10, 10))
    with pytest.raises(ValueError, match="frame_size"):
        Detections.empty((0, 10))


def test_iou_known_values() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)
