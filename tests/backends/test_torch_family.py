"""The pytorch-ssd family through the torch backend, against what the family's own code produced
(``models/pytorch-ssd-family/<arch>/reference*.npz`` and ``detections*.json``, ``ultraface-slim-320/reference.npz``)
and against UltraFace's shipped ONNX files through ONNX Runtime; bad checkpoints, archs, label files and input
sizes give one clear error each.

Per arch: the harness's native preprocessing of three real PETS frames equals the family's input, its priors
equal the family's within 1e-6, the network's raw outputs (softmaxed scores, decoded boxes) equal the family's
within 1e-4, and the per-class hard NMS gives the family Predictor's detections.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.errors import HarnessError, ModelError
from harness.core.registry import create_detector
from tests.conftest import requires_torch

pytestmark = requires_torch

FAMILY = {  # folder -> (checkpoint, reference, detections)
    "mb1-ssd": ("mb1-ssd-random-bncal-voc.pth", "reference-bncal.npz", "detections-bncal.json"),
    "mb1-ssd-lite": ("mb1-ssd-lite-random-bncal-voc.pth", "reference-bncal.npz", "detections-bncal.json"),
    "mb2-ssd-lite": ("mb2-ssd-lite-random-bncal-voc.pth", "reference-bncal.npz", "detections-bncal.json"),
    "mb3-large-ssd-lite": ("mb3-large-ssd-lite-random-bncal-voc.pth", "reference-bncal.npz", "detections-bncal.json"),
    "mb3-small-ssd-lite": ("mb3-small-ssd-lite-random-bncal-voc.pth", "reference-bncal.npz", "detections-bncal.json"),
    "sq-ssd-lite": ("sq-ssd-lite-random-voc.pth", "reference.npz", "detections.json"),
}
PETS_FRAMES = (0, 100, 400)


def _family_dir(assets_root: Path, arch: str) -> Path:
    return assets_root / "models" / "pytorch-ssd-family" / arch


def _detector(model: Path, **options):
    det = create_detector("torch", DetectorConfig(model=str(model), threads=1, options=options))
    det.load()
    return det


@pytest.fixture(scope="module")
def pets_frames(pets_video) -> dict[int, np.ndarray]:
    """PETS frames 0, 100 and 400 (BGR), the frames the references were made from."""
    from harness.data.video import open_source

    frames = {}
    for i, frame in enumerate(open_source(pets_video).frames(max(PETS_FRAMES) + 1)):
        if i in PETS_FRAMES:
            frames[i] = frame.image
    return frames


def _raw(det, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The infer stage on a given input tensor (the family's own preprocessed frame)."""
    torch = det._torch
    return det.infer(torch.from_numpy(x).to(det.device))


@pytest.mark.parametrize("arch", list(FAMILY))
def test_family_arch_equals_the_family_code(arch, assets_root, pets_frames):
    folder = _family_dir(assets_root, arch)
    checkpoint, reference, detections = FAMILY[arch]
    ref = np.load(folder / reference)
    det = _detector(folder / checkpoint)
    try:
        fam = det._family.model
        assert det.kind == f"family:{arch}" and fam.arch == arch
        assert det.input_size == (300, 300) and fam.labels[15] == "person" and len(fam.labels) == 21
        np.testing.assert_allclose(fam.priors, ref["priors"], rtol=0, atol=1e-6)
        expected = {d["frame"]: d for d in json.loads((folder / detections).read_text())}
        from backends.torch_family import predict

        for k in PETS_FRAMES:
            x = det.preprocess(pets_frames[k])
            np.testing.assert_allclose(x.cpu().numpy(), ref[f"input_{k}"], rtol=0, atol=1e-6)
            scores, boxes = _raw(det, ref[f"input_{k}"])
            np.testing.assert_allclose(scores, ref[f"scores_{k}"], rtol=0, atol=1e-4)
            np.testing.assert_allclose(boxes, ref[f"boxes_{k}"], rtol=0, atol=1e-4)
            # the Predictor's settings of the references: top_k 10, prob_threshold 0.01, candidate_size 200
            b, p, c = predict(scores[0], boxes[0], iou_threshold=fam.iou_threshold, top_k=10,
                              candidate_size=fam.candidate_size, prob_threshold=0.01)
            want = expected[k]
            assert c.tolist() == want["labels"]
            np.testing.assert_allclose(p, want["probs"], rtol=0, atol=1e-5)
            np.testing.assert_allclose(b * [768, 576, 768, 576], want["boxes"], rtol=0, atol=0.01)
        # the whole detect(): VOC classes mapped to COCO ids, boxes in the frame's pixels
        dets, _ = det.detect(pets_frames[0])
        assert dets.label_space == "coco" and len(dets) > 0
        assert set(np.unique(dets.class_ids)) <= set(det.label_map.names)
        assert 1 in det.label_map.names and det.label_map.apply(np.array([15]))[0] == 1  # VOC person -> COCO 1
    finally:
        det.close()


def test_ultraface_slim_raw_outputs_equal_the_reference(assets_root, pets_frames):
    folder = assets_root / "models" / "ultraface-slim-320"
    ref = np.load(folder / "reference.npz")
    det = _detector(folder / "version-slim-320.pth")  # legacy pickle, saved on CUDA
    try:
        assert det.kind == "family:ultraface-slim" and det.input_size == (320, 240)
        assert det.label_map.space == "face" and det.label_map.names == {1: "face"}
        np.testing.assert_allclose(det._family.model.priors, ref["priors"], rtol=0, atol=1e-6)
        for k in PETS_FRAMES:
            np.testing.assert_allclose(det.preprocess(pets_frames[k]).cpu().numpy(), ref[f"input_{k}"], atol=1e-6)
            scores, boxes = _raw(det, ref[f"input_{k}"])
            np.testing.assert_allclose(scores, ref[f"scores_{k}"], rtol=0, atol=1e-4)
            np.testing.assert_allclose(boxes, ref[f"boxes_{k}"], rtol=0, atol=1e-4)
    finally:
        det.close()


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.mark.parametrize("name,stem", [("ultraface-slim-320", "version-slim-320"),
                                       ("ultraface-rfb-320", "version-RFB-320")])
def test_ultraface_agrees_with_its_shipped_onnx(name, stem, assets_root, pets_frames):
    """Real weights: torch and the ONNX file UltraFace ships, through ONNX Runtime, on the same family input,
    then the same NMS (class scores above 0.1: hundreds of boxes, not only the few sure faces): >= 99 % of the
    boxes match at IoU >= 0.95 on coco128 images and PETS frames."""
    ort = pytest.importorskip("onnxruntime")
    import cv2

    from backends.torch_family import predict, preprocess_rgb

    folder = assets_root / "models" / name
    det = _detector(folder / f"{stem}.pth")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the opset-9 file lists its weights as inputs: one warning per weight
    session = ort.InferenceSession(str(folder / f"{stem}.onnx"), options, providers=["CPUExecutionProvider"])
    fam = det._family.model
    images = sorted((assets_root / "images" / "coco128" / "images").rglob("*.jpg"))[:12]
    rgbs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in images]
    rgbs += [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in pets_frames.values()]
    matched = total = 0
    worst = 0.0
    try:
        for rgb in rgbs:
            x = preprocess_rgb(rgb, fam.input_size, fam.mean, fam.std)
            t_scores, t_boxes = _raw(det, x)
            o_scores, o_boxes = session.run(["scores", "boxes"], {session.get_inputs()[0].name: x})
            worst = max(worst, float(np.abs(t_scores - o_scores).max()), float(np.abs(t_boxes - o_boxes).max()))
            tb, _, _ = predict(t_scores[0], t_boxes[0], iou_threshold=fam.iou_threshold, prob_threshold=0.1)
            ob, _, _ = predict(o_scores[0], o_boxes[0], iou_threshold=fam.iou_threshold, prob_threshold=0.1)
            total += max(len(tb), len(ob))
            if len(tb) and len(ob):
                matched += int((_iou(ob, tb).max(1) >= 0.95).sum())
    finally:
        det.close()
    assert total >= 100, f"too few boxes found to compare ({total})"
    assert matched / total >= 0.99, f"{matched}/{total} boxes agree at IoU 0.95 (raw max diff {worst:.2e})"
    assert worst < 1e-3


def test_vgg16_ssd_checkpoint_of_the_ports_shape(tmp_path, pets_frames):
    """No vgg16-ssd file in the assets: a seed-0 checkpoint of the port's own layout is told apart by its keys,
    gets the VGG config (mean 123,117,104, std 1, 8732 priors, 4/6 boxes a cell) and runs end to end."""
    import torch

    from backends.torch_family import nets
    from backends.torch_family.priors import VGG_SPECS, ssd_priors

    torch.manual_seed(0)
    net = nets.build_vgg16_ssd(3, ssd_priors(VGG_SPECS)).eval()
    (tmp_path / "labels.txt").write_text("BACKGROUND\nperson\ncar")
    torch.save(net.state_dict(), tmp_path / "vgg16-ssd-mine.pth")
    det = _detector(tmp_path / "vgg16-ssd-mine.pth")
    try:
        fam = det._family.model
        assert fam.arch == "vgg16-ssd" and fam.mean == (123.0, 117.0, 104.0) and fam.std == (1.0, 1.0, 1.0)
        assert fam.priors.shape == (8732, 4) and fam.labels == ["BACKGROUND", "person", "car"]
        assert det.label_map.space == "coco" and det.label_map.names == {1: "person", 3: "car"}
        x = det.preprocess(pets_frames[0])
        scores, boxes = det.infer(x)
        with torch.inference_mode():
            want_scores, want_boxes = net(x)
        np.testing.assert_allclose(scores, want_scores.numpy(), atol=1e-5)
        np.testing.assert_allclose(boxes, want_boxes.numpy(), atol=1e-5)
        assert scores.shape == (1, 8732, 3)
        dets = det.postprocess((scores, boxes), (768, 576))
        assert dets.label_space == "coco"
    finally:
        det.close()


def test_one_class_person_labels_are_scored_against_person_ground_truth(assets_root, tmp_path, pets_gt):
    """A two-class checkpoint (UltraFace's real weights) with a ``person`` label file: its class 1 is COCO's
    person, and a short run scores it against the PETS person ground truth (the accuracy row exists)."""
    import shutil

    src = assets_root / "models" / "ultraface-slim-320" / "version-slim-320.pth"
    shutil.copy(src, tmp_path / "person.pth")
    (tmp_path / "labels.txt").write_text("BACKGROUND\nperson\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "-b", "torch", "--model", str(tmp_path / "person.pth"),
         "--video", "pets09-s2l1", "--frames", "3", "--warmup", "0", "--threads", "1", "--out", str(out),
         "--no-report", "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = (out / "accuracy.csv").read_text().splitlines()
    person = [r for r in rows if ",person," in r]
    assert person, rows
    header = rows[0].split(",")
    row = dict(zip(header, person[0].split(",")))
    assert int(row["n_gt"]) > 0 and int(row["n_dets"]) > 0


def test_voc_names_map_to_coco_ids(assets_root):
    from backends.torch_family import label_map_for, read_labels

    names = read_labels(_family_dir(assets_root, "mb2-ssd-lite") / "voc-model-labels.txt")
    labels = label_map_for(names)
    assert labels.space == "coco" and len(labels.names) == 20
    ids = labels.apply(np.array([1, 15, 18, 20]))  # aeroplane, person, sofa, tvmonitor
    assert ids.tolist() == [5, 1, 63, 72]
    custom = label_map_for(["BACKGROUND", "helmet", "person"])  # not all COCO: own space, raw indices
    assert custom.space == "pytorch-ssd" and custom.apply(np.array([1, 2])).tolist() == [1, 2]


# bad input: one clear error each ------------------------------------------------------------------------------

def _expect_error(model: Path, match: str, **options) -> HarnessError:
    with pytest.raises(HarnessError, match=match) as info:
        _detector(model, **options)
    assert info.value.fix, "every error names a fix"
    return info.value


def test_corrupted_tensor_shape(assets_root, tmp_path):
    import torch

    state = torch.load(_family_dir(assets_root, "mb1-ssd-lite") / FAMILY["mb1-ssd-lite"][0], map_location="cpu",
                       weights_only=True)
    state["extras.1.2.2.weight"] = state["extras.1.2.2.weight"][:100]
    torch.save(state, tmp_path / "bad.pth")
    err = _expect_error(tmp_path / "bad.pth", "does not fit mb1-ssd-lite")
    assert isinstance(err, ModelError) and "extras.1.2.2.weight" in str(err)


def test_unknown_arch(assets_root):
    _expect_error(_family_dir(assets_root, "mb1-ssd") / FAMILY["mb1-ssd"][0], "unknown arch .mb9-ssd.",
                  arch="mb9-ssd")


def test_wrong_arch_forced(assets_root):
    _expect_error(_family_dir(assets_root, "mb1-ssd") / FAMILY["mb1-ssd"][0], "does not fit mb1-ssd-lite",
                  arch="mb1-ssd-lite")


def test_labels_file_with_the_wrong_class_count(assets_root, tmp_path):
    (tmp_path / "three.txt").write_text("BACKGROUND\nperson\ncar\n")
    _expect_error(_family_dir(assets_root, "mb1-ssd") / FAMILY["mb1-ssd"][0], "3 names.*21 classes",
                  labels=str(tmp_path / "three.txt"))


def test_input_size_giving_no_whole_feature_map(assets_root):
    model = _family_dir(assets_root, "mb1-ssd") / FAMILY["mb1-ssd"][0]
    _expect_error(model, "feature maps 20x20.*laid out for 19x19", input_size="320x320")
    _expect_error(model, "is not WIDTHxHEIGHT", input_size="320by240")


def test_ultraface_asset_name_runs_its_pth_in_torch(assets_root, pets_frames):
    """``-b torch --model ultraface-rfb-320``: the manifest's ``pth`` role (the primary file is the ONNX export),
    its ``labels`` role, the RFB net, face labels."""
    det = create_detector("torch", DetectorConfig(model="ultraface-rfb-320", threads=1))
    det.load()
    try:
        assert det.kind == "family:ultraface-rfb" and det.model_path.suffix == ".pth"
        assert det.label_map.space == "face" and det.label_map.names == {1: "face"}
        dets, _ = det.detect(pets_frames[0])
        assert dets.label_space == "face"
    finally:
        det.close()


def test_batches_give_the_single_frame_detections(assets_root, pets_frames):
    """``preprocess_batch`` / ``infer_batch`` / ``postprocess_batch`` (the offline scenario's path) give each
    frame what ``detect`` gives it alone."""
    det = _detector(_family_dir(assets_root, "mb1-ssd-lite") / FAMILY["mb1-ssd-lite"][0])
    try:
        frames = [pets_frames[k] for k in PETS_FRAMES]
        batch = det.postprocess_batch(det.infer_batch(det.preprocess_batch(frames)), [(768, 576)] * 3)
        for frame, got in zip(frames, batch):
            alone = det.postprocess(det.infer(det.preprocess(frame)), (768, 576))
            assert len(got) == len(alone) > 0
            np.testing.assert_allclose(got.boxes, alone.boxes, atol=1e-3)
            np.testing.assert_array_equal(got.class_ids, alone.class_ids)
    finally:
        det.close()


def test_mb2_width_multiplier_is_read_from_the_weights(tmp_path):
    """A MobileNetV2-SSD-Lite of width 0.75 (seed 0, the port's layout): the width comes from the weights,
    ``--opt width_mult`` may say it, and a wrong one is a clear error."""
    import torch

    from backends.torch_family import load_family, nets
    from backends.torch_family.priors import MOBILENET_SPECS, ssd_priors

    torch.manual_seed(0)
    net = nets.build_mb2_ssd_lite(21, ssd_priors(MOBILENET_SPECS), width_mult=0.75).eval()
    state = net.state_dict()
    model = load_family(state)
    assert model.arch == "mb2-ssd-lite" and model.width_mult == 0.75
    x = torch.rand(1, 3, 300, 300) * 2 - 1
    with torch.inference_mode():
        for got, want in zip(model.net(x), net(x)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    assert load_family(state, width_mult=0.75).width_mult == 0.75
    with pytest.raises(ModelError, match="does not fit mb2-ssd-lite") as info:
        load_family(state, width_mult=1.0)
    assert "width_mult" in info.value.fix


def test_bf16_is_reported_as_what_ran_after_the_flop_count(assets_root, pets_frames):
    """The runner counts FLOPs before timing; that pass runs under the job's autocast, so the precision read
    afterwards is the autocast dtype, not the counter's fp32 pass."""
    folder = assets_root / "models" / "ultraface-slim-320"
    det = create_detector("torch", DetectorConfig(model=str(folder / "version-slim-320.pth"), threads=1,
                                                  precision="bf16"))
    det.load()
    try:
        cost = det.model_cost()
        assert cost is not None and cost.macs > 0
        det.detect(pets_frames[0])
        assert det.precision_report().effective == "bf16"
        scores, boxes = det.infer(det.preprocess(pets_frames[0]))
        assert scores.dtype == np.float32 and boxes.dtype == np.float32  # decoding and NMS stay fp32
    finally:
        det.close()
