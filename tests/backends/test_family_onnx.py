"""The pytorch-ssd family's ONNX exports (dusty-nv's Jetson ``onnx_export.py``: ``input_0`` -> ``scores``,
``boxes``; UltraFace's ``input``) in ONNX Runtime, OpenVINO and OpenCV: each runtime's preprocessing equals the
family's ``PredictionTransform`` input, its raw outputs equal the family's own torch outputs
(``reference*.npz``), the one numpy postprocess equals the family's ``Predictor`` detections, the three runtimes
agree box for box on PETS frames and coco128 images, and labels beside the file map VOC names to COCO ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.errors import ModelError
from harness.core.registry import create_detector
from harness.data.video import open_source
from tests.helpers.agreement import agreement

RUNTIMES = ("onnxruntime", "openvino", "opencv")
MB2 = "pytorch-ssd-family/mb2-ssd-lite"
FRAMES = (0, 100, 400)  # the reference files' PETS frames


def _need(name: str) -> None:
    pytest.importorskip({"onnxruntime": "onnxruntime", "openvino": "openvino", "opencv": "cv2"}[name])


def _models(assets_root: Path) -> Path:
    return assets_root / "models"


def _load(backend: str, model: str | Path, **options):
    _need(backend)
    det = create_detector(backend, DetectorConfig(model=str(model), threads=1, options=options))
    det.load()
    return det


def _scores_boxes(raw: list[np.ndarray], classes: int) -> dict[str, np.ndarray]:
    """A runtime's two outputs by their shapes ([1, N, C] scores, [1, N, 4] boxes), whatever order it lists."""
    arrays = [np.asarray(r) for r in raw]
    assert len(arrays) == 2
    scores = next(a for a in arrays if a.shape[-1] == classes)
    boxes = next(a for a in arrays if a is not scores)
    return {"scores": scores.reshape(1, -1, classes), "boxes": boxes.reshape(1, -1, 4)}


@pytest.fixture(scope="module")
def pets(pets_video) -> dict[int, np.ndarray]:
    frames = {}
    for i, frame in enumerate(open_source(pets_video).frames(max(FRAMES) + 1)):
        if i in FRAMES:
            frames[i] = frame.image
    return frames


def test_numpy_postprocess_equals_the_family_predictor(assets_root) -> None:
    from backends._family_decode import FamilySettings, family_postprocess

    folder = _models(assets_root) / MB2
    ref = np.load(folder / "reference-bncal.npz")
    settings = FamilySettings("mobilenet", (300, 300), (127.0,) * 3, (128.0,) * 3, top_k=10)  # run_ssd_example's
    for want in json.loads((folder / "detections-bncal.json").read_text()):
        k = want["frame"]
        boxes, probs, labels = family_postprocess(ref[f"scores_{k}"], ref[f"boxes_{k}"], settings)
        assert len(boxes) == len(want["boxes"]) == 200
        np.testing.assert_allclose(boxes * [768, 576, 768, 576], want["boxes"], atol=1e-3)
        np.testing.assert_allclose(probs, want["probs"], atol=1e-6)
        assert labels.tolist() == want["labels"]


@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("model,reference", [
    (f"{MB2}/mb2-ssd-lite-random-bncal-voc.onnx", f"{MB2}/reference-bncal.npz"),
    ("ultraface-slim-320/version-slim-320.onnx", "ultraface-slim-320/reference.npz"),
])
def test_users_export_runs_as_the_family_in_each_runtime(assets_root, pets, backend, model, reference) -> None:
    """The family's preprocessing, the runtime's raw outputs against the family's torch outputs, and (mb2) its
    detections against the Predictor's."""
    from backends._family_decode import family_postprocess
    from dataclasses import replace

    det = _load(backend, _models(assets_root) / model)
    ref = np.load(_models(assets_root) / reference)
    layout = getattr(det, "layout", None) or det.spec.decode
    assert layout == "family"
    for k in FRAMES:
        x = det.preprocess(pets[k])
        np.testing.assert_allclose(np.asarray(x).reshape(ref[f"input_{k}"].shape), ref[f"input_{k}"], atol=1e-6)
        get = _scores_boxes(det.infer(ref[f"input_{k}"].astype(np.float32)), ref[f"scores_{k}"].shape[-1])
        np.testing.assert_allclose(get["scores"], ref[f"scores_{k}"], atol=1e-4)
        np.testing.assert_allclose(get["boxes"], ref[f"boxes_{k}"], atol=1e-4)
    if "mb2" in model:
        assert det.input_size == (300, 300) and det.label_map.space == "coco"
        assert det.label_map.apply(np.array([15, 1, 18])).tolist() == [1, 5, 63]  # person, aeroplane, sofa
        folder = _models(assets_root) / MB2
        settings = replace(det._family, top_k=10)
        for want in json.loads((folder / "detections-bncal.json").read_text()):
            get = _scores_boxes(det.infer(det.preprocess(pets[want["frame"]])), 21)
            b, p, c = family_postprocess(get["scores"], get["boxes"], settings)
            assert c.tolist() == want["labels"]
            np.testing.assert_allclose(b * [768, 576, 768, 576], want["boxes"], atol=0.05)
            np.testing.assert_allclose(p, want["probs"], atol=1e-4)
    else:
        assert det.input_size == (320, 240) and det.label_map.space == "face"


@pytest.fixture(scope="module")
def coco_images(assets_root) -> list[np.ndarray]:
    import cv2

    from harness.data.assets import asset_folder

    folder = asset_folder("coco128", "images")
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))[:6]]


@pytest.mark.parametrize("model", [f"{MB2}/mb2-ssd-lite-random-bncal-voc.onnx",
                                   "ultraface-slim-320/version-slim-320.onnx",
                                   "ultraface-rfb-320/version-RFB-320.onnx"])
def test_the_three_runtimes_agree_box_for_box(assets_root, pets, coco_images, model) -> None:
    images = list(pets.values()) + coco_images
    runs = {}
    for b in RUNTIMES:  # one load per runtime for all the images (it was one load per image: 9 per runtime)
        det = _load(b, _models(assets_root) / model)
        runs[b] = [det.detect(f)[0].filtered(min_score=0.05) for f in images]
    for other in RUNTIMES[1:]:
        stats = agreement(runs["onnxruntime"], runs[other], iou=0.95)
        print(f"{Path(model).name}: onnxruntime vs {other} on {len(images)} images: {stats}")
        assert stats["ref_boxes"] > 0
        assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
        assert stats["max_dscore"] < 1e-3


def test_labels_file_with_the_wrong_class_count_is_one_error(assets_root, tmp_path) -> None:
    src = _models(assets_root) / MB2 / "mb2-ssd-lite-random-bncal-voc.onnx"
    (tmp_path / "model.onnx").symlink_to(src)
    (tmp_path / "labels.txt").write_text("BACKGROUND\nperson\n")
    with pytest.raises(ModelError, match="names 2 classes, the model has 21") as info:
        _load("onnxruntime", tmp_path / "model.onnx")
    assert "labels" in info.value.fix


def test_a_one_class_person_labels_file_maps_to_coco_person(tmp_path) -> None:
    from backends._family_decode import family_label_map

    person = family_label_map(["BACKGROUND", "person"])
    assert person.space == "coco" and person.apply(np.array([1])).tolist() == [1]
    faces = family_label_map(["BACKGROUND", "face"])
    assert faces.space == "face" and faces.apply(np.array([1])).tolist() == [1]


def test_vgg_export_is_told_by_its_prior_count() -> None:
    from backends._family_decode import family_settings

    vgg = family_settings("jetson", (300, 300), 8732, 21, lambda k, d: d)
    mb1 = family_settings("jetson", (300, 300), 3000, 21, lambda k, d: d)
    assert vgg.arch == "vgg16-ssd" and vgg.mean == (123.0, 117.0, 104.0) and vgg.std == (1.0, 1.0, 1.0)
    assert mb1.arch == "mobilenet" and mb1.mean == (127.0,) * 3 and mb1.std == (128.0,) * 3
    with pytest.raises(ModelError, match="unknown family_arch"):
        family_settings("jetson", (300, 300), 3000, 21, lambda k, d: "yolo" if k == "family_arch" else d)


# the harness's own Jetson export of a checkpoint, and the four frameworks on it -------------------------------

@pytest.fixture(scope="module")
def mb2_export(assets_root, tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from backends.onnxruntime_convert import ONNXRuntimeConverter
    from harness.data.cache import model_conversion

    source = _models(assets_root) / MB2 / "mb2-ssd-lite-random-bncal-voc.pth"
    root = tmp_path_factory.mktemp("artifacts")
    first = model_conversion(ONNXRuntimeConverter, source, "onnx", root=root)
    again = model_conversion(ONNXRuntimeConverter, source, "onnx", root=root)
    assert first.built and not again.built and again.path == first.path  # cached by content
    return first.path


def test_harness_export_has_dusty_nvs_names_shapes_and_outputs(assets_root, mb2_export) -> None:
    import onnxruntime as ort

    users = ort.InferenceSession(str(_models(assets_root) / MB2 / "mb2-ssd-lite-random-bncal-voc.onnx"))
    ours = ort.InferenceSession(str(mb2_export))

    def io(session):
        return ([(i.name, i.shape) for i in session.get_inputs()], [(o.name, o.shape) for o in session.get_outputs()])

    assert io(ours) == io(users) == ([("input_0", [1, 3, 300, 300])], [("scores", [1, 3000, 21]), ("boxes", [1, 3000, 4])])
    ref = np.load(_models(assets_root) / MB2 / "reference-bncal.npz")
    for k in FRAMES:
        x = {"input_0": ref[f"input_{k}"]}
        for got, want in zip(ours.run(None, x), users.run(None, x)):
            np.testing.assert_allclose(got, want, atol=1e-4)
    assert (mb2_export.parent / "labels.txt").read_text().splitlines()[15] == "person"


def test_convert_command_writes_the_jetson_export(assets_root, tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("torch")
    import argparse

    from harness.commands import convert

    source = _models(assets_root) / MB2 / "mb2-ssd-lite-random-bncal-voc.pth"
    args = argparse.Namespace(backend=["onnxruntime"], graph=None, cache_root=str(tmp_path / "artifacts"),
                              no_generated=True, precision=None, model=str(source), format=None)
    assert convert.run(args) == 0
    line = capsys.readouterr().out.strip()
    path = Path(line.split()[1])
    assert path.suffix == ".onnx" and path.is_file() and "made" in line


def test_one_checkpoint_in_four_frameworks_agrees(assets_root, pets, coco_images, tmp_path_factory, monkeypatch) -> None:
    """``-b torch -b onnxruntime -b openvino -b opencv --model mb2-ssd-lite.pth``: torch runs the checkpoint
    natively, the three runtimes its Jetson export (made once, from the cache); every runtime finds torch's
    boxes at IoU 0.95."""
    pytest.importorskip("torch")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    source = _models(assets_root) / MB2 / "mb2-ssd-lite-random-bncal-voc.pth"
    images = list(pets.values()) + coco_images
    runs = {}
    for backend in ("torch", *RUNTIMES):
        det = _load(backend, source) if backend != "torch" else create_detector(
            "torch", DetectorConfig(model=str(source), threads=1))
        if backend == "torch":
            det.load()
        assert det.label_map.space == "coco" and det.input_size == (300, 300)
        runs[backend] = [det.detect(f)[0].filtered(min_score=0.05) for f in images]
    for backend in RUNTIMES:
        stats = agreement(runs["torch"], runs[backend], iou=0.95)
        print(f"mb2-ssd-lite .pth: torch vs {backend} (Jetson export) on {len(images)} images: {stats}")
        assert stats["ref_boxes"] > 0
        assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
        assert stats["max_dscore"] < 1e-3


def test_vgg16_ssd_export_runs_with_vggs_mean_in_each_runtime(tmp_path, pets) -> None:
    """No vgg16-ssd file in the assets: a seed-0 checkpoint of the torch port's layout, exported the Jetson
    way; the runtimes take VGG's mean (123, 117, 104) / 1 from the export's facts and find torch's boxes."""
    torch = pytest.importorskip("torch")
    from backends.onnxruntime_convert import ONNXRuntimeConverter
    from backends.torch_family import nets
    from backends.torch_family.priors import VGG_SPECS, ssd_priors
    from harness.data.cache import model_conversion

    torch.manual_seed(0)
    (tmp_path / "labels.txt").write_text("BACKGROUND\nperson\ncar\n")
    source = tmp_path / "vgg16-ssd-mine.pth"
    torch.save(nets.build_vgg16_ssd(3, ssd_priors(VGG_SPECS)).eval().state_dict(), source)
    onnx_file = model_conversion(ONNXRuntimeConverter, source, "onnx", root=tmp_path / "artifacts").path
    frame = pets[0]
    eager = create_detector("torch", DetectorConfig(model=str(source), threads=1))
    eager.load()
    want = [eager.detect(frame)[0].filtered(min_score=0.05)]
    for backend in RUNTIMES:
        det = _load(backend, onnx_file)
        settings = det._family
        assert settings.arch == "vgg16-ssd" and settings.mean == (123.0, 117.0, 104.0) and settings.std == (1.0,) * 3
        assert det.label_map.space == "coco" and det.label_map.apply(np.array([1, 2])).tolist() == [1, 3]
        stats = agreement(want, [det.detect(frame)[0].filtered(min_score=0.05)], iou=0.95)
        print(f"vgg16-ssd: torch vs {backend}: {stats}")
        assert stats["ref_boxes"] > 0 and stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
