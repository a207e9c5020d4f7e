"""The torch backend on real data: the SSDLite port of the reference graph agrees with TF1 on 200 shared PETS
frames; its TF-specific pieces (SAME padding, legacy bilinear resize, anchors) match TensorFlow's own ops;
torchvision SSD state dicts and TorchScript files load and give canonical detections on a real non-square
frame; a GPU request without CUDA is a recorded fallback; wrong files give one clear ModelError.

The torchvision tests use randomly initialized models (there is no internet to fetch pretrained weights):
they test loading and output conventions, not accuracy.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from harness.core.detections import Detections
from harness.core.detector import DetectorConfig
from harness.core.registry import create_detector
from harness.core.errors import ModelError
from harness.measure.metrics.matching import match_detections
from harness.data.preprocess import shared_resize
from harness.data.video import open_source
from tests.helpers.agreement import agreement
from tests.conftest import requires_tf, requires_torch

pytestmark = requires_torch

FRAMES = 200
SCORE = 0.3


def _torch():
    # torchvision before TensorFlow in this process (see torch_ssdlite.avoid_triton_after_tensorflow)
    from backends import torch_ssdlite

    return torch_ssdlite.torch


@pytest.fixture(scope="module")
def torch_ref(assets_root):
    _torch()
    det = create_detector("torch", DetectorConfig(threads=1))
    det.load()
    yield det
    det.close()


@pytest.fixture(scope="module")
def pets_frames(pets_video) -> list[np.ndarray]:
    return [f.image for f in open_source(pets_video).frames(FRAMES)]


def _run(det, frames: list[np.ndarray]) -> list[Detections]:
    return [det.detect(f)[0].filtered(min_score=SCORE) for f in frames]


# the TF-specific pieces against TensorFlow's own ops (small arrays) ------------------------------------------

@requires_tf
@pytest.mark.parametrize("size", [8, 9, 19, 300])
def test_same_padding_of_strided_convs_matches_tensorflow(size: int) -> None:
    torch = _torch()
    from backends.torch_ssdlite import TFSameConv2d

    import tensorflow as tf

    rng = np.random.default_rng(size)
    x = rng.standard_normal((1, size, size, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    want = tf.nn.conv2d(x, w, strides=2, padding="SAME").numpy()
    conv = TFSameConv2d(4, 5, 3, 2, bias=False)
    conv.weight.data = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    got = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)
    symmetric = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), conv.weight, stride=2, padding=1)
    if size % 2 == 0:  # the trap this class exists for: PyTorch's symmetric padding shifts even inputs
        assert not np.allclose(symmetric.permute(0, 2, 3, 1).detach().numpy(), want, atol=1e-3)


@requires_tf
@pytest.mark.parametrize("src,dst", [((576, 768), (300, 300)), ((480, 640), (300, 300)), ((17, 23), (40, 9))])
def test_resize_matches_tf1_resize_bilinear(src, dst) -> None:
    torch = _torch()
    from backends.torch_ssdlite import tf_resize_bilinear

    import tensorflow as tf

    x = np.random.default_rng(0).integers(0, 256, (1, *src, 3)).astype(np.float32)
    want = tf.compat.v1.image.resize_bilinear(x, dst, align_corners=False, half_pixel_centers=False).numpy()
    got = tf_resize_bilinear(torch.from_numpy(x).permute(0, 3, 1, 2), dst).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_generated_anchors_equal_the_graphs_own(torch_ref) -> None:
    from backends.torch_ssdlite import anchors_for

    payload = _torch().load(torch_ref.model_path, weights_only=True)
    from_graph = payload["state_dict"]["anchors"].numpy()
    assert from_graph.shape == (1917, 4)  # 19x19x3 + (10x10 + 5x5 + 3x3 + 2x2 + 1x1) x 6
    np.testing.assert_allclose(anchors_for(payload["config"]), from_graph, atol=1e-6)


def test_the_torch_box_decoder_equals_the_numpy_one() -> None:
    """The port decodes on its device with a torch twin of backends._ssd_decode.decode_boxes: same numbers,
    batch axis included."""
    torch = _torch()
    from backends import _ssd_decode as ssd
    from backends.torch_ssdlite import anchors_for, decode_boxes

    anchors = anchors_for()
    codes = np.random.default_rng(0).normal(0, 2, (2, len(anchors), 4)).astype(np.float32)
    scales = (10.0, 10.0, 5.0, 5.0)
    got = decode_boxes(torch.from_numpy(codes), torch.from_numpy(anchors), torch.tensor(scales)).numpy()
    want = ssd.decode_boxes(codes, anchors, scales)
    assert got.shape == want.shape == (2, 1917, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# the reference SSD ported -------------------------------------------------------------------------------------

def test_reference_is_converted_once_and_loads_weights_only(torch_ref) -> None:
    torch = _torch()
    assert torch_ref.kind == "ssdlite-port"
    assert torch_ref.input_size == (300, 300)
    assert torch_ref.label_map.names == {1: "person"}
    payload = torch.load(torch_ref.model_path, weights_only=True)  # a plain dict: no pickled code
    assert payload["format"] == "harness-ssdlite-mobilenet-v2"
    assert payload["source_sha256"] == "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
    assert payload["config"]["num_classes"] == 1 and payload["config"]["nms_iou_threshold"] == 0.6
    again = create_detector("torch", DetectorConfig(threads=1))
    again.load()
    assert again.model_path == torch_ref.model_path  # the cached conversion, not a second one
    assert torch.get_num_threads() == 1


@requires_tf
def test_torch_agrees_with_tf1_on_200_shared_pets_frames(torch_ref, pets_shared_frames, tf1_on_shared_frames) -> None:
    ours = _run(torch_ref, pets_shared_frames[:FRAMES])
    ref = [d.filtered(min_score=SCORE) for d in tf1_on_shared_frames[:FRAMES]]
    stats = agreement(ref, ours)
    print(f"torch vs tf1, shared 300x300, {FRAMES} PETS frames, score >= {SCORE}: {stats}")
    assert stats["ref_boxes"] > 500
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
    assert stats["max_dscore"] < 0.01
    assert stats["min_iou"] >= 0.95


def test_shared_mode_frame_is_not_resized_again(torch_ref, pets_frames) -> None:
    frame = shared_resize(pets_frames[0], (300, 300))
    x = torch_ref.preprocess(frame)
    want = frame[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) * (2.0 / 255.0) - 1.0
    np.testing.assert_allclose(x[0].cpu().numpy(), want, atol=1e-6)


def test_native_mode_boxes_land_on_the_original_non_square_frame(torch_ref, pets_frames) -> None:
    frame = pets_frames[100]
    native, times = torch_ref.detect(frame)
    assert times.pre_ns > 0 and times.infer_ns > 0
    assert native.frame_size == (768, 576)
    shared = torch_ref.detect(shared_resize(frame, (300, 300)))[0].rescaled((768, 576))
    a, b = native.filtered(min_score=SCORE), shared.filtered(min_score=SCORE)
    assert len(a) >= 3
    m = match_detections(a, b, iou_threshold=0.5)  # the same people, whichever resize ran
    assert m.matched >= 0.8 * max(len(a), len(b))
    tall = (a.boxes[:, 3] - a.boxes[:, 1]) > (a.boxes[:, 2] - a.boxes[:, 0])
    assert tall.mean() > 0.8  # pedestrians are taller than wide: x and y were not swapped


def test_placement_is_measured_from_parameters_and_outputs(torch_ref) -> None:
    p = torch_ref.placement()
    assert p.actual == "cpu" and not p.fallback
    assert "parameters+buffers: cpu" in p.evidence and "last output on cpu" in p.evidence
    assert torch_ref.peak_gpu_memory_mb() is None
    assert torch_ref.versions()["torch"]


def test_gpu_request_without_cuda_falls_back_to_cpu_with_the_reason(assets_root, pets_frames) -> None:
    torch = _torch()
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback path is not taken (see the gpu test)")
    det = create_detector("torch", DetectorConfig(device="gpu", threads=1))
    det.load()
    det.detect(pets_frames[0])
    p = det.placement()
    assert p.requested == "gpu" and p.actual == "cpu" and p.fallback
    assert "torch.cuda.is_available() is False" in p.evidence
    assert str(torch.version.cuda) in p.evidence or "CPU-only" in p.evidence


@pytest.mark.gpu
def test_gpu_runs_on_the_gpu_and_agrees_with_cpu(torch_ref, pets_frames) -> None:
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch (torch.cuda.is_available() is False)")
    det = create_detector("torch", DetectorConfig(device="gpu"))
    det.load()
    frames = [shared_resize(f, (300, 300)) for f in pets_frames[:50]]
    gpu = _run(det, frames)
    p = det.placement()
    assert p.actual == "gpu:0" and not p.fallback and "cuda:0" in p.evidence
    assert det.peak_gpu_memory_mb() > 0
    stats = agreement(_run(torch_ref, frames), gpu)
    print(f"torch gpu vs cpu, 50 shared frames: {stats}")
    assert stats["ref_matched"] >= 0.99 and stats["max_dscore"] < 0.01


# TorchScript ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["script", "trace"])
def test_torchscript_export_of_the_port_loads_back_and_gives_the_same_boxes(torch_ref, pets_frames, tmp_path,
                                                                           method) -> None:
    torch = _torch()
    from backends.torch_ssdlite import export_torchscript, model_from_checkpoint

    model = model_from_checkpoint(torch.load(torch_ref.model_path, weights_only=True), "test")
    path = export_torchscript(model, tmp_path / f"ssdlite_{method}.pt", method=method)
    det = create_detector("torch", DetectorConfig(model=str(path), threads=1))
    det.load()
    assert det.kind == "torchscript:ssdlite" and det.input_size == (300, 300)
    for frame in pets_frames[:5]:
        want = torch_ref.detect(frame)[0].filtered(min_score=SCORE)
        got = det.detect(frame)[0].filtered(min_score=SCORE)
        assert len(got) == len(want) > 0
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05)  # pixels; BN folded only on the eager side
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
        assert set(got.class_ids.tolist()) == {1}


def test_torchscript_torchvision_detector_is_recognized(pets_frames, tmp_path) -> None:
    torch = _torch()
    from torchvision.models import detection

    torch.manual_seed(0)
    model = detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    path = tmp_path / "ssdlite320_scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    det = create_detector("torch", DetectorConfig(model=str(path), threads=1))
    det.load()
    assert det.kind == "torchscript:torchvision" and det.input_size == (320, 320)
    _assert_canonical(det.detect(pets_frames[0])[0], (768, 576))


# torchvision state dicts (random init: loading and conventions, not accuracy) ----------------------------------

def _assert_canonical(dets: Detections, size: tuple[int, int]) -> None:
    assert dets.frame_size == size and dets.label_space == "coco"
    assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (len(dets), 4)
    assert len(dets) > 0  # random heads give many low-score boxes above torchvision's 0.01 threshold
    w, h = size
    assert (dets.boxes[:, 0] >= 0).all() and (dets.boxes[:, 2] <= w).all()
    assert (dets.boxes[:, 1] >= 0).all() and (dets.boxes[:, 3] <= h).all()
    assert (dets.boxes[:, 2] > dets.boxes[:, 0]).all() and (dets.boxes[:, 3] > dets.boxes[:, 1]).all()
    assert ((dets.scores >= 0) & (dets.scores <= 1)).all()
    assert ((dets.class_ids >= 1) & (dets.class_ids <= 90)).all()  # COCO-91 indexing = COCO category ids


@functools.cache
def _saved_state_dict(arch: str, folder: str) -> Path:
    torch = _torch()
    from torchvision.models import detection

    torch.manual_seed(0)
    model = getattr(detection, arch)(weights=None, weights_backbone=None)
    path = Path(folder) / f"{arch}.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def state_dict_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("torchvision_state_dicts"))


@pytest.mark.parametrize("arch,size", [("ssdlite320_mobilenet_v3_large", (320, 320)), ("ssd300_vgg16", (300, 300))])
def test_torchvision_state_dict_loads_with_arch_inferred(arch, size, state_dict_dir, pets_frames) -> None:
    path = _saved_state_dict(arch, state_dict_dir)
    det = create_detector("torch", DetectorConfig(model=str(path), threads=1))
    det.load()
    assert det.kind == f"torchvision:{arch}" and det.input_size == size
    frame = pets_frames[0]
    assert frame.shape == (576, 768, 3)
    _assert_canonical(det.detect(frame)[0], (768, 576))
    assert det.placement().actual == "cpu"


def test_state_dict_given_the_wrong_arch_is_one_model_error(state_dict_dir) -> None:
    path = _saved_state_dict("ssdlite320_mobilenet_v3_large", state_dict_dir)
    det = create_detector("torch", DetectorConfig(model=str(path), options={"arch": "ssd300_vgg16"}))
    with pytest.raises(ModelError, match="does not fit torchvision ssd300_vgg16") as info:
        det.load()
    assert "arch" in info.value.fix


# wrong files --------------------------------------------------------------------------------------------------

def test_text_file_is_one_model_error(tmp_path) -> None:
    path = tmp_path / "model.pt"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match="not a PyTorch weights file") as info:
        create_detector("torch", DetectorConfig(model=str(path))).load()
    assert "state_dict" in info.value.fix


def test_state_dict_of_another_architecture_is_one_model_error(tmp_path) -> None:
    torch = _torch()
    from torchvision.models import resnet18

    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="matches no supported detector") as info:
        create_detector("torch", DetectorConfig(model=str(path))).load()
    assert "ssd300_vgg16" in info.value.fix


def test_pickled_module_is_refused_with_the_fix(tmp_path) -> None:
    torch = _torch()
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: weights_only loading refuses to unpickle code
    with pytest.raises(ModelError) as info:
        create_detector("torch", DetectorConfig(model=str(path))).load()
    assert "state_dict" in info.value.fix


def test_missing_file_is_one_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        create_detector("torch", DetectorConfig(model=str(tmp_path / "nope.pt"))).load()
