"""The tf2 backend on the real reference model: the SavedModel converted from the frozen graph agrees with
the TF1 graph on PETS frames, a TF Hub handle to a local folder works, placement is measured, and wrong
inputs give one clear ModelError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.errors import ModelError
from tests.helpers.agreement import agreement
from tests.conftest import requires_tf

pytestmark = requires_tf

FRAMES = 200
SCORE = 0.3


@pytest.fixture(scope="module")
def shared_frames(pets_shared_frames: list[np.ndarray]) -> list[np.ndarray]:
    return pets_shared_frames[:FRAMES]


@pytest.fixture(scope="module")
def tf1_shared(tf1_on_shared_frames: list) -> list:
    return [d.filtered(min_score=SCORE) for d in tf1_on_shared_frames[:FRAMES]]


@pytest.fixture(scope="module")
def tf2(assets_root: Path):
    from backends.tf2 import TF2Detector

    det = TF2Detector(DetectorConfig(device="cpu"))
    det.load()
    yield det
    det.close()


def test_reference_savedmodel_agrees_with_tf1_in_shared_mode(tf2, shared_frames, tf1_shared) -> None:
    assert tf2.input_size == (300, 300)
    dets = [tf2.detect(f)[0].filtered(min_score=SCORE) for f in shared_frames]
    stats = agreement(tf1_shared, dets)
    print(f"tf2 vs tf1, shared mode, {FRAMES} PETS frames, score>={SCORE}: {stats}")
    assert stats["ref_boxes"] > 500  # people in every frame: the comparison is not vacuous
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
    assert stats["max_dscore"] < 0.01


def test_describe_reports_the_fixed_signature(tf2) -> None:
    d = tf2.describe()
    assert d["input"] == {"name": "input_tensor", "dtype": "uint8", "shape": [1, None, None, 3]}
    assert d["outputs"]["num"] == "num_detections"
    assert "ConcreteFunction" in d["retracing"]
    assert "saved_model" in d["source"]


def test_native_frame_non_square_boxes_in_original_pixels(tf2, pets_video: Path) -> None:
    """On the 768x576 frame the boxes come back in its pixels, matching the TF1 graph exactly."""
    from backends.tf1 import TF1Detector
    from harness.measure.metrics.matching import match_detections
    from harness.data.video import open_source

    frame = next(iter(open_source(pets_video).frames(limit=1))).image
    ref = TF1Detector(DetectorConfig())
    ref.load()
    a = ref.detect(frame)[0].filtered(min_score=SCORE)
    ref.close()
    b = tf2.detect(frame)[0].filtered(min_score=SCORE)
    assert b.frame_size == (768, 576) and len(a) >= 2
    m = match_detections(a, b, iou_threshold=0.99)
    assert m.matched == len(a) == len(b)
    assert b.boxes[:, [0, 2]].max() > 300  # x spans the width, not the height


def test_placement_is_measured_from_executed_ops(tf2, shared_frames) -> None:
    tf2.detect(shared_frames[0])
    p = tf2.placement()
    assert p.actual == "cpu" and not p.fallback
    assert "ops of one executed inference" in p.evidence and p.shares.get("CPU:0", 0) > 0.9


def test_gpu_request_without_gpu_is_a_reported_fallback(assets_root: Path, shared_frames) -> None:
    import tensorflow as tf

    from backends.tf2 import TF2Detector

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: the fallback path cannot be shown here")
    det = TF2Detector(DetectorConfig(device="gpu"))
    det.load()
    det.detect(shared_frames[0])
    p = det.placement()
    assert p.requested == "gpu" and p.actual == "cpu" and p.fallback
    assert "TensorFlow sees no GPU" in p.evidence


@pytest.mark.gpu
def test_gpu_placement_on_gpu(assets_root: Path, shared_frames) -> None:
    import tensorflow as tf

    from backends.tf2 import TF2Detector

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees no GPU on this machine")
    det = TF2Detector(DetectorConfig(device="gpu"))
    det.load()
    det.detect(shared_frames[0])
    p = det.placement()
    assert p.actual.startswith("gpu") and not p.fallback, p.evidence


def test_tf_hub_handle_to_a_local_folder(tf2, shared_frames) -> None:
    """hub.load of the converted SavedModel folder gives the same detections as tf.saved_model.load."""
    from backends.tf2 import TF2Detector
    from backends.tf2_convert import TF2Converter
    from harness.data.cache import reference_artifact

    hub_det = TF2Detector(DetectorConfig(model=f"hub:{reference_artifact(TF2Converter)}", options={"labels": "person"}))
    hub_det.load()
    assert hub_det.describe()["source"].startswith("TF Hub hub:")
    for frame in shared_frames[:5]:
        a = tf2.detect(frame)[0].filtered(min_score=SCORE)
        b = hub_det.detect(frame)[0].filtered(min_score=SCORE)
        assert len(a) == len(b) >= 1
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        assert set(b.class_ids.tolist()) == {1}


def test_hub_handle_to_a_missing_folder(assets_root: Path, tmp_path: Path) -> None:
    from backends.tf2 import TF2Detector

    with pytest.raises(ModelError, match="neither a URL nor an existing folder"):
        TF2Detector(DetectorConfig(model=f"hub:{tmp_path / 'nope'}")).load()


@pytest.mark.parametrize("case", ["text_file", "garbage_folder", "frozen_graph"])
def test_wrong_model_gives_one_clear_model_error(case: str, tmp_path: Path, assets_root: Path) -> None:
    from backends.tf2 import TF2Detector
    from harness.data.assets import resolve

    if case == "text_file":
        model = tmp_path / "model.txt"
        model.write_text("this is not a SavedModel\n")
        expect = "is a file, not a SavedModel folder"
    elif case == "garbage_folder":
        model = tmp_path / "sm"
        model.mkdir()
        (model / "saved_model.pb").write_text("not a protobuf at all")
        expect = "cannot be loaded as a SavedModel"
    else:
        model = resolve("ssdlite-pedestrian")
        expect = "is a file, not a SavedModel folder"
    with pytest.raises(ModelError, match=expect) as info:
        TF2Detector(DetectorConfig(model=str(model))).load()
    assert info.value.fix  # every ModelError says what to do
    if case == "frozen_graph":
        assert "tf1" in info.value.fix


def test_unknown_output_names_are_listed(assets_root: Path) -> None:
    from backends.tf2 import TF2Detector
    from backends.tf2_convert import TF2Converter
    from harness.data.cache import reference_artifact

    with pytest.raises(ModelError, match="no output") as info:
        TF2Detector(DetectorConfig(model=str(reference_artifact(TF2Converter)), options={"boxes": "boxes_xyz"})).load()
    assert "detection_boxes" in info.value.fix
