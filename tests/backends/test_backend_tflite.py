"""TFLite backend on TensorFlow's hosted COCO SSD MobileNet v1 (uint8): people on PETS, COCO objects on
non-square coco128 images, outputs identified whatever their order, and clear errors for wrong files."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from backends.tflite import identify_outputs
from harness.core.detector import DetectorConfig
from harness.core.registry import create_detector
from harness.core.errors import ModelError
from harness.measure.metrics.matching import match_boxes
from harness.data.video import open_source
from tests.conftest import has_module

pytestmark = pytest.mark.skipif(not (has_module("ai_edge_litert") or has_module("tensorflow")),
                                reason="neither ai_edge_litert nor tensorflow is installed")

MODEL = "tflite-coco-ssd-mobilenet-v1-quant"


@pytest.fixture(scope="module")
def tflite(assets_root):
    det = create_detector("tflite", DetectorConfig(model=MODEL, threads=2))
    det.load()
    yield det
    det.close()


def test_model_facts_and_label_map(tflite) -> None:
    assert tflite.input_size == (300, 300)
    info = tflite.describe()
    assert info["input_dtype"] == "uint8"
    assert info["outputs"] == {"boxes": "TFLite_Detection_PostProcess", "classes": "TFLite_Detection_PostProcess:1",
                               "scores": "TFLite_Detection_PostProcess:2", "count": "TFLite_Detection_PostProcess:3"}
    # raw class c is COCO id c+1 (labelmap.txt line c+1; the gaps of COCO's ids are '???' lines)
    assert list(tflite.label_map.apply(np.array([0, 1, 2, 89]))) == [1, 2, 3, 90]
    assert tflite.label_map.name(1) == "person" and tflite.label_map.name(90) == "toothbrush"
    if info["interpreter"] == "tf.lite.Interpreter":  # TF 2.21 still ships it, deprecated: recorded, not printed
        assert any("deprecated" in note for note in info["interpreter_warnings"])


def test_finds_the_people_of_pets(tflite, pets_video: Path) -> None:
    from harness.data.groundtruth import load_ground_truth

    gt = load_ground_truth("pets09-s2l1")
    matched = total = 0
    ms: list[float] = []
    for frame in open_source(pets_video).frames(100):
        x = tflite.preprocess(frame.image)
        t0 = time.perf_counter_ns()
        raw = tflite.infer(x)
        ms.append((time.perf_counter_ns() - t0) / 1e6)
        dets = tflite.postprocess(raw, (768, 576))
        assert len(dets) <= 10  # the op's fixed maximum
        people = dets.filtered(min_score=0.3, classes=[1])
        truth = gt.frames[frame.index]
        matched += match_boxes(truth.boxes[~truth.ignore], people.boxes, iou_threshold=0.5).matched
        total += int((~truth.ignore).sum())
    recall = matched / total
    print(f"tflite person recall, 100 PETS frames, IoU 0.5, score 0.3: {recall:.3f} ({matched}/{total}); "
          f"median infer {statistics.median(ms[5:]):.1f} ms")
    assert total > 500
    assert recall >= 0.55  # measured 0.727 (380/523); the op keeps at most 10 boxes a frame


def test_valid_canonical_detections_on_non_square_coco_images(tflite) -> None:
    import cv2

    from harness.data.assets import asset_folder
    from harness.data.groundtruth import load_ground_truth
    from harness.core.labels import COCO_NAMES

    gt = load_ground_truth("coco128")
    index = {name: k for k, name in gt.file_names.items()}
    folder = asset_folder("coco128", "images")
    found = {}
    for name in ("000000000036.jpg", "000000000009.jpg"):  # 481x640 portrait, 640x480 landscape
        image = cv2.imread(str(folder / name))
        height, width = image.shape[:2]
        assert width != height
        dets = tflite.detect(image)[0]
        assert dets.frame_size == (width, height) and dets.label_space == "coco"
        assert dets.boxes.dtype == np.float32 and dets.class_ids.dtype == np.int64
        assert np.all(dets.boxes[:, 2] > dets.boxes[:, 0]) and np.all(dets.boxes[:, 3] > dets.boxes[:, 1])
        assert np.all(dets.boxes >= 0) and np.all(dets.boxes[:, [0, 2]] <= width) and np.all(dets.boxes[:, [1, 3]] <= height)
        assert set(dets.class_ids.tolist()) <= set(COCO_NAMES)
        assert np.all(np.diff(dets.scores) <= 0)
        kept = dets.filtered(min_score=0.5)
        truth = gt.frames[index[name]]
        found[name] = match_boxes(truth.boxes, kept.boxes, iou_threshold=0.5,
                                  classes_a=truth.class_ids, classes_b=kept.class_ids).matched
    print(f"tflite boxes matching coco128 gt (same class, IoU 0.5, score 0.5): {found}")
    assert found["000000000036.jpg"] >= 2  # both annotated objects (measured 2 of 2)
    assert found["000000000009.jpg"] >= 3  # measured 4 of 8


def test_outputs_are_identified_in_any_order(tflite, pets_video: Path) -> None:
    """A TF2-style export lists the same tensors as anonymous StatefulPartitionedCall:k, scores first."""
    frame = next(open_source(pets_video).frames(1)).image
    raw = tflite.infer(tflite.preprocess(frame))
    details = tflite._it.get_output_details()
    roles = identify_outputs(details)
    order = [roles["scores"], roles["boxes"], roles["count"], roles["classes"]]
    shuffled = [dict(details[i], name=f"StatefulPartitionedCall:{k}") for k, i in enumerate(order)]
    values = [raw[i] for i in order]
    assert identify_outputs(shuffled) is None  # names and shapes alone can't tell classes from scores ...
    assert identify_outputs(shuffled, values) == {"scores": 0, "boxes": 1, "count": 2, "classes": 3}  # ... values can
    named = [dict(details[i], name=n) for i, n in zip(order, ("detection_scores", "detection_boxes",
                                                               "num_detections", "detection_classes"))]
    assert identify_outputs(named) == {"scores": 0, "boxes": 1, "count": 2, "classes": 3}


def test_placement_is_cpu_and_a_gpu_request_is_a_fallback(assets_root) -> None:
    det = create_detector("tflite", DetectorConfig(model=MODEL, device="gpu", threads=1))
    det.load()
    det.detect(np.zeros((240, 320, 3), np.uint8))
    placement = det.placement()
    assert placement.actual == "cpu" and placement.fallback
    assert "no GPU delegate" in placement.evidence and "1 threads" in placement.evidence


def test_a_text_file_is_one_clear_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "detect.tflite"
    bad.write_text("not a flatbuffer\n")
    with pytest.raises(ModelError) as err:
        create_detector("tflite", DetectorConfig(model=str(bad))).load()
    assert "not a TFLite model" in err.value.problem and err.value.fix


def test_a_tflite_model_that_is_not_a_detector_is_one_clear_model_error(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
    def brightness(x):
        return tf.reduce_mean(x, axis=[1, 2])

    model = tf.lite.TFLiteConverter.from_concrete_functions([brightness.get_concrete_function()], brightness).convert()
    path = tmp_path / "brightness.tflite"
    path.write_bytes(model)
    with pytest.raises(ModelError) as err:
        create_detector("tflite", DetectorConfig(model=str(path))).load()
    assert "1 outputs, not the 4 of TFLite_Detection_PostProcess" in err.value.problem
