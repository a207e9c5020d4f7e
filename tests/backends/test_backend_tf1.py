"""The TF1 frozen-graph backend on the real reference SSD and the real PETS video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.registry import create_detector
from harness.core.errors import HarnessError, ModelError, SourceError
from harness.measure.metrics.matching import match_boxes
from harness.data.video import open_source
from tests.conftest import requires_tf

pytestmark = requires_tf


@pytest.fixture(scope="module")
def tf1():
    det = create_detector("tf1", DetectorConfig())
    det.load()
    yield det
    det.close()


def _gt_by_frame(gt_file: Path) -> dict[int, np.ndarray]:
    rows = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    out: dict[int, list] = {}
    for frame, _id, x, y, w, h, flag, *_ in rows:
        if flag == 1:
            out.setdefault(int(frame) - 1, []).append([x, y, x + w, y + h])  # gt frame k+1 = decoded index k
    return {k: np.clip(np.array(v), 0, [768, 576, 768, 576]) for k, v in out.items()}


def test_reference_model_loads_with_its_label_map_and_input_size(tf1) -> None:
    assert tf1.input_size == (300, 300)
    assert tf1.label_map.space == "coco" and tf1.label_map.names == {1: "person"}
    info = tf1.describe()
    assert info["model_sha256"] == "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
    assert tf1.versions()["tensorflow"]


def test_tf1_finds_the_walking_people_in_the_first_200_frames(tf1, pets_video, pets_gt) -> None:
    gt = _gt_by_frame(pets_gt)
    matched = total = 0
    for frame in open_source(pets_video).frames(200):
        dets, times = tf1.detect(frame.image)
        assert times.infer_ns > 0
        dets = dets.filtered(min_score=0.3)
        truth = gt.get(frame.index, np.zeros((0, 4)))
        total += len(truth)
        matched += match_boxes(truth, dets.boxes, iou_threshold=0.5).matched
    recall = matched / total
    print(f"tf1 recall on 200 frames of PETS at IoU 0.5, score 0.3: {recall:.3f} ({matched}/{total})")
    assert total > 1000
    assert recall >= 0.60


def test_detections_follow_the_people_when_the_frame_is_resized(tf1, pets_video) -> None:
    import cv2

    frames = [f.image for f in open_source(pets_video).frames(201) if f.index in (0, 100, 200)]  # 768x576
    found = expected_total = 0
    for frame in frames:
        base = tf1.detect(frame)[0].filtered(min_score=0.5)
        for size in [(576, 768), (1920, 1080), (384, 288)]:  # aspect swapped, larger, smaller
            resized = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            dets = tf1.detect(resized)[0].filtered(min_score=0.3)
            assert dets.frame_size == size
            m = match_boxes(base.rescaled(size).boxes, dets.boxes, iou_threshold=0.5)
            found += m.matched
            expected_total += len(base)
            if m.matched:
                assert m.ious.mean() > 0.7, f"{size}: boxes moved (mean IoU {m.ious.mean():.2f})"
    assert expected_total >= 15
    assert found / expected_total >= 0.85, f"only {found} of {expected_total} people found again after resizing"


def test_postprocess_honours_num_detections_and_maps_labels(tf1) -> None:
    boxes = np.zeros((1, 100, 4), np.float32)
    boxes[0, :3] = [[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.3, 0.3]]
    scores = np.zeros((1, 100), np.float32)
    scores[0, :3] = [0.9, 0.8, 0.7]
    classes = np.ones((1, 100), np.float32)
    dets = tf1.postprocess([boxes, scores, classes, np.array([2.0])], (768, 576))
    assert len(dets) == 2  # the third row is past num_detections
    np.testing.assert_allclose(dets.boxes[0], [0.2 * 768, 0.1 * 576, 0.4 * 768, 0.5 * 576], rtol=1e-6)
    assert list(dets.class_ids) == [1, 1]


def test_missing_model_file_is_one_clear_error(tmp_path) -> None:
    det = create_detector("tf1", DetectorConfig(model=str(tmp_path / "nope.pb")))
    with pytest.raises(ModelError, match="model not found"):
        det.load()


def test_a_file_that_is_not_a_frozen_graph_is_named(tmp_path) -> None:
    bad = tmp_path / "model.pb"
    bad.write_text("this is not a protobuf\n" * 50)
    det = create_detector("tf1", DetectorConfig(model=str(bad)))
    with pytest.raises(ModelError, match="not a TensorFlow frozen graph") as err:
        det.load()
    assert "frozen_inference_graph.pb" in (err.value.fix or "")


def test_tensor_names_not_in_the_graph_are_named_with_the_fix() -> None:
    det = create_detector("tf1", DetectorConfig(options={"boxes": "no_such_tensor:0"}))
    with pytest.raises(ModelError, match="no_such_tensor") as err:
        det.load()
    assert "image_tensor" in (err.value.fix or "")  # lists the graph's placeholders


def test_missing_and_unreadable_videos_are_named(tmp_path) -> None:
    with pytest.raises(SourceError, match="video not found"):
        open_source(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="cannot open|no decodable frames"):
        open_source(junk)


def test_unknown_backend_suggests_close_names() -> None:
    with pytest.raises(HarnessError, match="unknown backend 'tf11'.*Did you mean 'tf1'"):
        create_detector("tf11", DetectorConfig())


def test_tensorflow_is_imported_without_keras_and_tf_keras_still_loads_on_use() -> None:
    """TensorFlow's import loads all of Keras (with scikit-learn and pyplot) that no TF adapter uses; the
    adapters' import leaves it out, and ``tf.keras`` (or a model that needs it) still gets it on first use."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from backends._tf_common import import_tf\n"
        "tf = import_tf()\n"
        "seen = {m: m in sys.modules for m in ('keras', 'sklearn', 'matplotlib.pyplot')}\n"
        "g = tf.Graph()\n"
        "with g.as_default():\n"
        "    two = tf.add(1.0, 1.0)\n"
        "graph_ok = float(tf.compat.v1.Session(graph=g).run(two)) == 2.0\n"
        "layer = tf.keras.layers.Dense(3)\n"
        "print(json.dumps({'at_import': seen, 'graph_ok': graph_ok, 'dense': type(layer).__module__,\n"
        "                  'keras_after': 'keras' in sys.modules, 'finders': [type(f).__name__ for f in sys.meta_path]}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["at_import"] == {"keras": False, "sklearn": False, "matplotlib.pyplot": False}
    assert out["graph_ok"]
    assert out["dense"].startswith("keras.") and out["keras_after"]  # tf.keras loaded on use
    assert "_KerasDeferred" not in out["finders"]  # nothing left behind on the import path
