"""ONNX Runtime backend: the reference SSD converted with tf2onnx agrees with TF1; network-only SSDs decoded in
the harness (the reference graph cut before its Postprocessor, and UltraFace) give real detections."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from backends import _ssd_decode as ssd
from harness.core.detector import DetectorConfig
from harness.core.registry import create_detector
from harness.core.errors import ModelError
from harness.data.preprocess import shared_resize
from harness.data.video import open_source
from tests.helpers.agreement import agreement
from tests.conftest import has_module, requires_tf

pytestmark = pytest.mark.skipif(not has_module("onnxruntime"), reason="onnxruntime is not installed")

PETS_SIZE = (768, 576)


# unit: the numpy SSD head ----------------------------------------------------------------------------------

def test_box_coder_decodes_what_the_od_api_encoding_makes() -> None:
    anchors = np.array([[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 1.0]])
    boxes = np.array([[0.15, 0.1, 0.45, 0.5], [0.2, 0.3, 0.6, 0.9]])
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    yca, xca = anchors[:, 0] + ha / 2, anchors[:, 1] + wa / 2
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    yc, xc = boxes[:, 0] + h / 2, boxes[:, 1] + w / 2
    enc = np.stack([(yc - yca) / ha * 10, (xc - xca) / wa * 10, np.log(h / ha) * 5, np.log(w / wa) * 5], axis=1)
    np.testing.assert_allclose(ssd.decode_boxes(enc, anchors), boxes[:, [1, 0, 3, 2]], atol=1e-12)  # x1,y1,x2,y2
    # a leading batch axis passes through, each image decoded alike
    batch = ssd.decode_boxes(np.stack([enc, enc * 0.5]), anchors)
    assert batch.shape == (2, 2, 4)
    np.testing.assert_allclose(batch[0], ssd.decode_boxes(enc, anchors), atol=1e-12)
    # the Caffe SSD / pytorch-ssd coder is the same one with x, y, w, h encodings (variances 0.1, 0.2)
    xywh = enc[:, [1, 0, 3, 2]]
    np.testing.assert_allclose(ssd.decode_boxes(xywh, anchors, order="xywh"), boxes[:, [1, 0, 3, 2]], atol=1e-12)
    centers = np.stack([xca, yca, wa, ha], axis=1)
    variances = np.concatenate([centers[:, :2] + xywh[:, :2] * 0.1 * centers[:, 2:],
                                centers[:, 2:] * np.exp(xywh[:, 2:] * 0.2)], axis=1)  # the usual cx,cy,w,h decode
    np.testing.assert_allclose(ssd.decode_boxes(xywh, ssd.anchors_from_centers(centers), order="xywh"),
                               np.concatenate([variances[:, :2] - variances[:, 2:] / 2,
                                               variances[:, :2] + variances[:, 2:] / 2], axis=1), atol=1e-12)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.0, 0.6]])
    b, s, c = ssd.multiclass_nms(boxes, scores, score_threshold=0.05, iou_threshold=0.5)
    assert list(np.round(s, 3)) == [0.9, 0.7, 0.6]  # box 1 (IoU 0.68 with box 0) suppressed; class 1 kept apart
    assert list(c) == [0, 0, 1]
    assert list(ssd.nms(boxes[:2], scores[:2, 0], iou_threshold=0.7)) == [0, 1]  # IoU 0.68 <= 0.7: both kept


def test_feature_maps_of_the_mobilenet_ssd_extractors() -> None:
    assert ssd.default_feature_maps((300, 300), 6) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert ssd.default_feature_maps((320, 240), 3) == [(15, 20), (8, 10), (4, 5)]


def test_pipeline_config_is_read(assets_root: Path) -> None:
    from harness.data.assets import resolve

    cfg = ssd.decode_config_from_pipeline(resolve("ssdlite-pedestrian", "pipeline_config"))
    assert cfg.anchors.num_layers == 6 and cfg.anchors.reduce_boxes_in_lowest_layer
    assert cfg.anchors.aspect_ratios == (1.0, 2.0, 0.5, 3.0, 0.3333)
    assert cfg.box_scales == (10.0, 10.0, 5.0, 5.0)
    assert (cfg.score_converter, cfg.iou_threshold, cfg.max_total, cfg.input_size) == ("sigmoid", 0.6, 100, (300, 300))


@requires_tf
def test_anchors_match_the_ones_inside_the_reference_graph(assets_root: Path) -> None:
    """The numpy generator reproduces the graph's own anchor tensor, in the same order."""
    import tensorflow as tf

    from harness.data.assets import resolve

    cfg = ssd.decode_config_from_pipeline(resolve("ssdlite-pedestrian", "pipeline_config"))
    mine = ssd.ssd_anchors(cfg.anchors, ssd.default_feature_maps((300, 300), 6))
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(resolve("ssdlite-pedestrian").read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        theirs = sess.run("Concatenate/concat:0", {"image_tensor:0": np.zeros((1, 300, 300, 3), np.uint8)})
    assert mine.shape == theirs.shape == (1917, 4)
    assert np.abs(mine - theirs).max() < 1e-6


# the reference SSD --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pets_frames(pets_video: Path) -> list[np.ndarray]:
    return [f.image for f in open_source(pets_video).frames(200)]


@pytest.fixture(scope="module")
def tf1_shared(tf1_on_shared_frames):
    """TF1 detections on the shared-resized frames, boxes on the original frame (what the runner records)."""
    return [d.rescaled(PETS_SIZE) for d in tf1_on_shared_frames]


@pytest.fixture(scope="module")
def ort_reference():
    pytest.importorskip("tf2onnx")
    det = create_detector("onnxruntime", DetectorConfig(threads=2))
    det.load()
    yield det
    det.close()


def test_reference_is_converted_once_into_the_cache(ort_reference) -> None:
    assert ort_reference.layout == "od_api"
    assert ort_reference.input_size == (300, 300)
    assert ort_reference.label_map.names == {1: "person"}
    path = ort_reference.model_path
    assert path.name == "model.onnx"
    made = json.loads((path.parent / "artifact.json").read_text())
    assert made["converter"] == "onnxruntime-reference"  # the name `harness convert` uses too
    assert made["params"]["options"] == {"cut": "full", "opset": 13} and "tf2onnx" in made["params"]["versions"]
    assert ort_reference.describe()["onnx_path"] == str(path)


@requires_tf
def test_reference_agrees_with_tf1_on_200_pets_frames_in_shared_mode(ort_reference, pets_frames, tf1_shared) -> None:
    ms: list[float] = []
    ort_dets = []
    for img in pets_frames:
        x = ort_reference.preprocess(shared_resize(img, ort_reference.input_size))
        t0 = time.perf_counter_ns()
        raw = ort_reference.infer(x)
        ms.append((time.perf_counter_ns() - t0) / 1e6)
        ort_dets.append(ort_reference.postprocess(raw, ort_reference.input_size).rescaled(PETS_SIZE))
    stats = agreement(tf1_shared, ort_dets, min_score=0.3)
    print(f"onnxruntime(full) vs tf1, 200 PETS frames, shared, score>=0.3: {stats}; "
          f"median infer {statistics.median(ms[5:]):.1f} ms")
    assert stats["ref_boxes"] > 500
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
    assert stats["max_dscore"] < 0.01


@requires_tf
def test_network_only_cut_decoded_in_the_harness_agrees_with_tf1(pets_frames, tf1_shared) -> None:
    """Box coder, anchors, sigmoid and NMS done in numpy give TF's own detections back."""
    pytest.importorskip("tf2onnx")
    det = create_detector("onnxruntime", DetectorConfig(threads=2, options={"cut": "network"}))
    det.load()
    assert det.layout == "encoded" and len(det._anchors) == 1917
    frames = pets_frames[:60]
    dets = [det.detect(shared_resize(img, det.input_size))[0].rescaled(PETS_SIZE) for img in frames]
    stats = agreement(tf1_shared[:60], dets, min_score=0.3)
    print(f"onnxruntime(network cut, numpy head) vs tf1, 60 PETS frames: {stats}")
    assert stats["ref_boxes"] > 150
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99 and stats["max_dscore"] < 0.01


@requires_tf
def test_convert_reference_at_opset_17_and_run_it_by_path(tmp_path: Path, pets_frames, tf1_shared) -> None:
    pytest.importorskip("tf2onnx")
    import onnx

    from backends.onnxruntime_convert import ONNXRuntimeConverter
    from harness.data.assets import resolve

    out = ONNXRuntimeConverter.convert_reference(resolve("ssdlite-pedestrian"), tmp_path, opset=17)
    assert out == tmp_path / "model.onnx"
    model = onnx.load(str(out))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) == 17
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    det = create_detector("onnxruntime", DetectorConfig(model=str(out), options={"input_size": "300x300"}))
    det.load()
    dets = [det.detect(shared_resize(img, (300, 300)))[0].rescaled(PETS_SIZE) for img in pets_frames[:10]]
    stats = agreement(tf1_shared[:10], dets, min_score=0.3)
    assert stats["ref_boxes"] > 20 and stats["ref_matched"] >= 0.99 and stats["max_dscore"] < 0.01


def test_threads_and_placement_come_from_the_session(ort_reference) -> None:
    assert ort_reference._session.get_session_options().intra_op_num_threads == 2
    placement = ort_reference.placement()
    assert placement.actual == "cpu" and not placement.fallback
    assert "CPUExecutionProvider" in placement.evidence and "get_providers" in placement.evidence


def test_a_gpu_request_without_a_cuda_provider_is_a_reported_fallback(assets_root: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider: the fallback case can't be shown here")
    det = create_detector("onnxruntime", DetectorConfig(model="ultraface-rfb-320", device="gpu"))
    det.load()  # does not raise: the session ends on the CPU provider
    placement = det.placement()
    assert placement.requested == "gpu" and placement.actual == "cpu" and placement.fallback
    assert "['CPUExecutionProvider']" in placement.evidence  # what the session kept ...
    assert "no CUDAExecutionProvider" in placement.evidence and "onnxruntime-gpu" in placement.evidence  # ... and why
    assert det.describe()["providers_requested"][0] == "CUDAExecutionProvider"


# UltraFace: boxes decoded inside the network, threshold + NMS here ------------------------------------------

def test_ultraface_finds_faces_inside_the_annotated_people_of_coco128(assets_root: Path) -> None:
    import cv2

    from harness.data.assets import asset_folder
    from harness.data.groundtruth import load_ground_truth

    det = create_detector("onnxruntime", DetectorConfig(model="ultraface-rfb-320", threads=2))
    det.load()
    assert det.layout == "family" and det.input_size == (320, 240) and det.label_map.space == "face"
    gt = load_ground_truth("coco128")
    index = {name: k for k, name in gt.file_names.items()}
    folder = asset_folder("coco128", "images")
    found = 0
    for name in ("000000000110.jpg", "000000000165.jpg", "000000000308.jpg"):  # people facing the camera
        image = cv2.imread(str(folder / name))
        faces = det.detect(image)[0].filtered(min_score=0.9)
        truth = gt.frames[index[name]]
        people = truth.boxes[(truth.class_ids == 1) & ~truth.ignore]
        assert len(faces) >= 1, name
        assert set(faces.class_ids.tolist()) == {1}
        for box in faces.boxes:
            w, h = box[2] - box[0], box[3] - box[1]
            assert 0.4 < w / h < 2.0, (name, box)
            inside = (box[0] >= people[:, 0] - 5) & (box[1] >= people[:, 1] - 5) & (box[2] <= people[:, 2] + 5) & (
                box[3] <= people[:, 3] + 5)
            assert inside.any(), f"{name}: face {box} lies in no annotated person"
        found += len(faces)
    print(f"UltraFace faces at score >= 0.9 on 3 coco128 images: {found}")
    assert found >= 5


# errors ---------------------------------------------------------------------------------------------------------

def test_a_text_file_is_one_clear_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a model\n")
    det = create_detector("onnxruntime", DetectorConfig(model=str(bad)))
    with pytest.raises(ModelError) as err:
        det.load()
    assert "ONNX Runtime cannot load" in err.value.problem and str(bad) in err.value.problem
    assert err.value.fix


def test_an_onnx_whose_outputs_are_not_a_detector_is_one_clear_model_error(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT)], "not_a_detector",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 300, 300, 3])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 300, 300, 3])],
    )
    path = tmp_path / "cast.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    det = create_detector("onnxruntime", DetectorConfig(model=str(path)))
    with pytest.raises(ModelError) as err:
        det.load()
    assert "outputs don't fit an SSD" in err.value.problem and "pixels" in err.value.problem
    assert "layout" in err.value.fix


def test_anchors_that_do_not_fit_the_network_are_one_clear_model_error(ort_reference) -> None:
    det = create_detector("onnxruntime", DetectorConfig(options={"cut": "network", "feature_maps": "10x10,5x5,3x3,2x2,1x1,1x1"}))
    with pytest.raises(ModelError) as err:
        det.load()
    assert "anchors for 1917 box encodings" in err.value.problem
