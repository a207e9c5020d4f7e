"""The opencv backend on real models: the reference SSD (frozen graph + OpenCV text graph) agrees with TF1
on PETS frames; the OpenCV face SSD and the UltraFace ONNX find the faces on a real non-square photo; raw
box encodings decode with the model's anchors; the CUDA fallback is reported; wrong files give one clear
ModelError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.detections import box_iou
from harness.core.detector import DetectorConfig
from harness.core.errors import ModelError
from tests.helpers.agreement import agreement
from tests.conftest import requires_cv2, requires_tf

pytestmark = requires_cv2

FRAMES = 200
SCORE = 0.3
# coco128 000000000241.jpg, 480x640 (portrait): two clearly visible frontal faces, located by eye on the
# image (standing man at the top centre, seated man on the left), x1, y1, x2, y2 pixels.
FACE_IMAGE = "000000000241.jpg"
FACES = np.array([[182, 28, 234, 108], [39, 264, 81, 325]], dtype=np.float32)


def model_file(assets_root: Path, rel: str) -> Path:
    """A model file of the shared assets (through the asset resolver's root, never copied)."""
    path = assets_root / "models" / rel
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared assets")
    return path


@pytest.fixture(scope="module")
def face_image(assets_root: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(assets_root / "images" / "coco128" / "images" / FACE_IMAGE))
    assert image is not None and image.shape[:2] == (640, 480)
    return image


def loaded(model: str | Path | None = None, **kwargs) -> "object":
    from backends.opencv_dnn import OpenCVDetector

    det = OpenCVDetector(DetectorConfig(model=None if model is None else str(model), **kwargs))
    det.load()
    return det


def assert_finds_the_faces(dets) -> None:
    assert dets.label_space == "face" and set(dets.class_ids.tolist()) == {1}
    assert dets.frame_size == (480, 640)
    best = box_iou(FACES, dets.boxes).max(axis=1)
    assert (best >= 0.5).all(), f"faces not found: IoU {best}, detections {dets.boxes}"


# the reference model -------------------------------------------------------------------------------------

@requires_tf
def test_reference_agrees_with_tf1_in_shared_mode(pets_shared_frames, tf1_on_shared_frames) -> None:
    frames = pets_shared_frames[:FRAMES]
    tf1 = [d.filtered(min_score=SCORE) for d in tf1_on_shared_frames[:FRAMES]]
    det = loaded(threads=2)
    assert det.input_size == (300, 300)
    ocv = [det.detect(f)[0].filtered(min_score=SCORE) for f in frames]
    stats = agreement(tf1, ocv)
    print(f"opencv vs tf1, shared mode, {FRAMES} PETS frames, score>={SCORE}: {stats}")
    assert stats["ref_boxes"] > 500
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
    assert stats["max_dscore"] < 0.01


def test_reference_describes_blob_threads_and_versions(assets_root: Path) -> None:
    import cv2

    before = cv2.getNumThreads()
    det = loaded(threads=1)
    try:
        d = det.describe()
        assert d["blob"] == {"size": [300, 300], "mean": [0.0, 0.0, 0.0], "scale": 1.0, "swap_rb": True}
        assert d["decode"] == "detection_output" and d["outputs"] == ["detection_out"]
        assert d["threads"] == {"threads": 1} == {"threads": cv2.getNumThreads()}  # OpenCV's own count
        assert d["threads_configured"] == {}
        v = det.versions()
        assert v["opencv"] == cv2.__version__ and v["opencv_major"] == cv2.__version__.split(".")[0]
    finally:
        cv2.setNumThreads(before)


def test_gpu_request_reports_the_cpu_fallback_with_the_reason(assets_root: Path, face_image) -> None:
    from backends.opencv_dnn import cuda_status, import_cv2

    usable, _, why = cuda_status(import_cv2())
    if usable:
        pytest.skip("this OpenCV can run CUDA here: the fallback cannot be shown")
    det = loaded(device="gpu")
    det.detect(face_image)
    p = det.placement()
    assert p.requested == "gpu" and p.actual == "cpu" and p.fallback
    assert "requested backend=cuda target=cuda" in p.evidence and "FALLBACK to CPU" in p.evidence
    assert why in p.evidence
    assert p.shares == {"cpu": 1.0}  # every layer's preferableTarget is the CPU


@pytest.mark.gpu
def test_cuda_target_on_a_cuda_build(assets_root: Path, face_image) -> None:
    from backends.opencv_dnn import cuda_status, import_cv2

    if not cuda_status(import_cv2())[0]:
        pytest.skip("OpenCV here has no usable CUDA (pip wheels are CPU-only)")
    det = loaded(device="gpu")
    det.detect(face_image)
    assert det.placement().actual == "gpu:0"


def test_cpu_placement_evidence(assets_root: Path, face_image) -> None:
    det = loaded()
    assert det.placement().actual == "unknown"  # nothing ran yet: nothing is claimed
    det.detect(face_image)
    p = det.placement()
    assert p.actual == "cpu" and not p.fallback and "in effect backend=default target=cpu" in p.evidence


# the other real formats ----------------------------------------------------------------------------------

def test_face_ssd_tf_graph_with_text_graph(assets_root: Path, face_image) -> None:
    pb = model_file(assets_root, "opencv-face-ssd-res10/opencv_face_detector_uint8.pb")
    det = loaded(pb)  # the .pbtxt next to it is found; blob mean 104,117,123 from the known-model preset
    dets = det.detect(face_image)[0].filtered(min_score=0.5)
    assert_finds_the_faces(dets)
    assert len(dets) == 2


def test_ultraface_onnx_scores_and_boxes(assets_root: Path, face_image) -> None:
    onnx_path = model_file(assets_root, "ultraface-rfb-320/version-RFB-320.onnx")
    det = loaded(onnx_path)
    assert det.input_size == (320, 240)
    dets = det.detect(face_image)[0].filtered(min_score=0.7)
    assert_finds_the_faces(dets)
    # NMS ran: no two kept faces overlap much (raw output has ~17 boxes per face above 0.7)
    iou = box_iou(dets.boxes, dets.boxes)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.3 and len(dets) <= 4


def test_raw_encodings_decoded_with_the_model_anchors(assets_root: Path, face_image, tmp_path: Path) -> None:
    """UltraFace cut before its own box decoding (logits + raw encodings, no detection layer) decoded with
    its anchors gives the same faces as the full model."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    full = model_file(assets_root, "ultraface-rfb-320/version-RFB-320.onnx")
    model = onnx.load(str(full))
    raw_scores, raw_boxes = "459", "460"  # the Concat of the class heads (pre-softmax) and the box heads
    need, keep = {raw_scores, raw_boxes}, []
    for node in reversed(list(model.graph.node)):
        if need.intersection(node.output):
            keep.append(node)
            need.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(keep))
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(raw_scores, TensorProto.FLOAT, [1, 4420, 2]),
                               helper.make_tensor_value_info(raw_boxes, TensorProto.FLOAT, [1, 4420, 4])])
    cut = tmp_path / "version-RFB-320.onnx"  # same file name: same blob preset
    onnx.save(model, str(cut))

    ref = loaded(full).detect(face_image)[0].filtered(min_score=0.7)
    raw_det = loaded(cut, options={"decode": "raw", "anchors": "ultraface", "score_fn": "softmax"})
    got = raw_det.detect(face_image)[0].filtered(min_score=0.7)
    assert len(got) == len(ref) >= 2
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.05)  # pixels
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
    with pytest.raises(ModelError, match="anchors"):
        loaded(cut, options={"decode": "raw"})


def test_caffe_model(assets_root: Path, face_image) -> None:
    import cv2

    caffemodel = model_file(assets_root, "ultraface-rfb-320/RFB-320.caffemodel")
    if hasattr(cv2.dnn, "readNetFromCaffe"):  # OpenCV 4.x
        dets = loaded(caffemodel).detect(face_image)[0].filtered(min_score=0.7)
        assert_finds_the_faces(dets)
        return
    with pytest.raises(ModelError, match="no Caffe importer") as info:
        loaded(caffemodel)
    assert "ONNX" in info.value.fix and "opencv-python<5" in info.value.fix


# wrong inputs --------------------------------------------------------------------------------------------

def test_od_api_graph_without_text_graph(assets_root: Path) -> None:
    from harness.data.assets import resolve

    with pytest.raises(ModelError, match="without a text graph") as info:
        loaded(resolve("ssdlite-pedestrian"))  # a plain path: no manifest, no .pbtxt beside it
    assert "tf_text_graph_ssd.py" in info.value.fix


def test_text_graph_of_another_model(assets_root: Path) -> None:
    pb = model_file(assets_root, "opencv-face-ssd-res10/opencv_face_detector_uint8.pb")
    pbtxt = model_file(assets_root, "ssdlite-pedestrian-opencv/ssdlite_person.pbtxt")
    with pytest.raises(ModelError, match="cannot read") as info:
        loaded(pb, options={"config": str(pbtxt)})
    assert ".pbtxt belongs to this .pb" in info.value.fix


def test_text_file_as_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model\n")
    with pytest.raises(ModelError, match="cannot read model.onnx"):
        loaded(bad, options={"size": "300x300"})


def test_unknown_model_needs_its_blob_described(tmp_path: Path) -> None:
    other = tmp_path / "mystery.onnx"
    other.write_bytes(b"\x08\x07")
    with pytest.raises(ModelError, match="cannot be guessed") as info:
        loaded(other)
    assert "size=" in info.value.fix


def test_unknown_target_lists_the_known_ones(assets_root: Path) -> None:
    with pytest.raises(ModelError, match="unknown OpenCV DNN target") as info:
        loaded(options={"target": "tpu"})
    assert "cuda_fp16" in info.value.fix


def test_ultraface_priors_match_the_head_layout() -> None:
    from backends._ssd_decode import decode_boxes, ultraface_priors

    priors = ultraface_priors(320, 240)  # ymin, xmin, ymax, xmax
    assert priors.shape == (40 * 30 * 3 + 20 * 15 * 2 + 10 * 8 * 2 + 5 * 4 * 3, 4)
    # the first prior: cell (0, 0) of the 40x30 map, min box 10 px -> centre (0.5/40, 0.5/30), 10/320 x 10/240
    cx, cy, w, h = 0.5 / 40, 0.5 / 30, 10 / 320, 10 / 240
    np.testing.assert_allclose(priors[0], [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], atol=1e-6)
    # zero encodings decode (Caffe/pytorch-ssd order) to the anchors themselves, as x1, y1, x2, y2
    boxes = decode_boxes(np.zeros_like(priors), priors, order="xywh")
    np.testing.assert_allclose(boxes, priors[:, [1, 0, 3, 2]], atol=1e-6)
