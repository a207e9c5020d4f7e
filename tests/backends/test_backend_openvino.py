"""OpenVINO backend: the reference SSD from its ONNX conversion agrees with TF1; the precision is
the compiled model's, read back (bf16 asked on a CPU without bf16 compiles f32 and says so); the NNCF int8
IR; devices and placement; bad IR/ONNX files give one clear error; the doctor probe lists its devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.errors import ModelError
from harness.core.precision import cpu_flags, cpu_has_bf16
from harness.core.registry import available_backends, create_detector
from tests.helpers.agreement import agreement
from tests.conftest import has_module

pytestmark = pytest.mark.skipif(not (has_module("openvino") and has_module("onnxruntime")),
                                reason="openvino (and onnxruntime's conversion of the reference SSD) not installed")

#: the registered name once pyproject's entry points are installed; module:Class until then
OPENVINO = "openvino" if "openvino" in available_backends() else "backends.openvino_ov:OpenVINODetector"


def make(precision: str | None = None, **options) -> object:
    det = create_detector(OPENVINO, DetectorConfig(threads=2, precision=precision, options=options))
    det.load()
    return det


@pytest.fixture(scope="module")
def fp32(assets_root: Path):
    det = make()
    yield det
    det.close()


def test_agrees_with_tf1_on_200_shared_pets_frames(fp32, pets_shared_frames, tf1_on_shared_frames) -> None:
    """fp32 (not asked = f32 hint): IoU >= 0.95 on >= 99 % of the boxes both ways, scores within 1e-4."""
    dets = [fp32.detect(f)[0] for f in pets_shared_frames]
    every = agreement(tf1_on_shared_frames, dets)
    shown = agreement(tf1_on_shared_frames, dets, min_score=0.3)
    print(f"openvino vs tf1, 200 shared PETS frames: all boxes {every}; score >= 0.3 {shown}")
    assert every["ref_boxes"] >= 10_000 and shown["ref_boxes"] > 500
    for stats in (every, shown):
        assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
        assert stats["max_dscore"] < 1e-4


def test_not_asked_and_fp32_compile_f32_and_read_it_back(fp32) -> None:
    report = fp32.precision_report()
    assert report.requested is None and report.effective == "fp32" and not report.fallback
    assert "compiled INFERENCE_PRECISION_HINT=fp32 (set: f32)" in report.evidence
    assert fp32.describe()["compile_config"]["INFERENCE_PRECISION_HINT"] == "f32"
    forced = make("fp32")
    assert forced.precision_report().effective == "fp32" and not forced.precision_report().fallback


def test_openvino_default_is_bf16_on_a_bf16_cpu(assets_root: Path) -> None:
    """``--precision auto`` leaves OpenVINO's own default: bf16 where the CPU has AVX-512 BF16 or AMX."""
    if not cpu_has_bf16():
        pytest.skip(f"this CPU has no AVX-512 BF16 or AMX-BF16 (precision flags: {sorted(cpu_flags())}): "
                    "OpenVINO's default is f32 here")
    report = make("auto").precision_report()
    assert report.effective == "bf16" and not report.fallback


def test_bf16_asked_is_read_back_as_what_compiled(assets_root: Path) -> None:
    """On a CPU without bf16 the plugin compiles f32: a precision fallback with the compiled hint as evidence;
    on a bf16 CPU the request is honoured."""
    report = make("bf16").precision_report()
    if cpu_has_bf16():
        assert report.effective == "bf16" and not report.fallback
    else:
        assert report.effective == "fp32" and report.fallback
        assert "INFERENCE_PRECISION_HINT=fp32 (set: bf16)" in report.evidence
        assert "fp32 100 % of 88 compute layers" in report.evidence


def test_the_int8_variant_is_nncf_on_the_body_cut(fp32, pets_shared_frames) -> None:
    det = make("int8")
    report = det.precision_report()
    assert report.effective == "int8" and not report.fallback and report.shares["int8"] > 0.5
    info = det.describe()
    assert info["cut"] == "body" and info["model_file"].endswith("model.xml")
    assert info["calibration"]["describe"] == "coco128 frames 0-99"
    assert det.conversions and det.conversions[0].converter == "openvino-reference"
    frames = pets_shared_frames[:60]
    stats = agreement([fp32.detect(f)[0] for f in frames], [det.detect(f)[0] for f in frames], iou=0.5,
                      min_score=0.3)
    print(f"openvino int8 vs fp32, 60 PETS frames, IoU 0.5, score >= 0.3: {stats}")
    assert stats["ref_matched"] >= 0.9 and stats["other_matched"] >= 0.9


def test_placement_threads_and_versions_come_from_the_compiled_model(fp32) -> None:
    placement = fp32.placement()
    assert placement.actual == "cpu" and not placement.fallback
    assert "EXECUTION_DEVICES') = ['CPU']" in placement.evidence
    assert fp32.thread_settings().in_effect["inference_threads"] == 2
    assert fp32.versions()["openvino"].startswith("2") and "CPU" in fp32.versions()["openvino_devices"]


def test_a_gpu_request_without_an_openvino_gpu_is_a_reported_fallback(assets_root: Path) -> None:
    import openvino as ov

    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        pytest.skip("OpenVINO sees a GPU here: the fallback case can't be shown")
    det = create_detector(OPENVINO, DetectorConfig(device="gpu", options={"cut": "body"}))
    det.load()
    det.detect(np.zeros((300, 300, 3), np.uint8))
    placement = det.placement()
    assert placement.requested == "gpu" and placement.actual == "cpu" and placement.fallback
    assert "not GPU" in placement.evidence and "NVIDIA GPUs are not among them" in placement.evidence


# bad files ----------------------------------------------------------------------------------------------------

def _load_error(path: Path, **options) -> ModelError:
    det = create_detector(OPENVINO, DetectorConfig(model=str(path), options=options))
    with pytest.raises(ModelError) as err:
        det.load()
    assert err.value.fix and str(path.name) in err.value.problem
    return err.value


def test_corrupt_and_mismatched_ir_and_onnx_files_are_one_clear_error(tmp_path: Path, fp32) -> None:
    import openvino as ov

    text_xml = tmp_path / "text.xml"
    text_xml.write_text("not an IR\n")
    text_xml.with_suffix(".bin").write_bytes(b"\0" * 16)
    assert "OpenVINO cannot read" in _load_error(text_xml).problem

    lonely = tmp_path / "lonely.xml"
    lonely.write_text("<net/>")
    assert "no weights file lonely.bin" in _load_error(lonely).problem

    # a real IR whose .bin is another size (the weights of another model, or a cut download)
    good = tmp_path / "good.xml"
    ov.save_model(fp32._model, str(good))
    short = tmp_path / "short.xml"
    short.write_text(good.read_text())
    short.with_suffix(".bin").write_bytes(good.with_suffix(".bin").read_bytes()[:1000])
    assert "OpenVINO cannot read" in _load_error(short).problem

    text_onnx = tmp_path / "model.onnx"
    text_onnx.write_text("this is not a model\n")
    assert "OpenVINO cannot read" in _load_error(text_onnx).problem

    frozen = tmp_path / "graph.pb"
    frozen.write_bytes(b"\0")
    assert "IR (.xml + .bin) and ONNX" in _load_error(frozen).problem


def test_an_onnx_that_is_not_a_detector_is_one_clear_error(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT)], "not_a_detector",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 300, 300, 3])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 300, 300, 3])],
    )
    path = tmp_path / "cast.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    err = _load_error(path)
    assert "outputs don't fit an SSD" in err.problem and "pixels" in err.problem


def test_the_ir_saved_from_the_reference_runs_by_path(tmp_path: Path, fp32, pets_shared_frames) -> None:
    """An IR given as --model (the model facts say what was loaded)."""
    import openvino as ov

    path = tmp_path / "ssd.xml"
    ov.save_model(fp32._model, str(path))
    det = create_detector(OPENVINO, DetectorConfig(model=str(path), options={"labels": "person"}))
    det.load()
    assert det.layout == "od_api" and det.input_size == (300, 300)
    stats = agreement([fp32.detect(f)[0] for f in pets_shared_frames[:10]],
                      [det.detect(f)[0] for f in pets_shared_frames[:10]], min_score=0.3)
    assert stats["ref_boxes"] > 20 and stats["ref_matched"] == 1.0
    assert det.model_cost().macs == 616_952_240


# doctor ---------------------------------------------------------------------------------------------------

def test_the_doctor_probe_lists_openvinos_devices() -> None:
    from harness.doctor.facts import DriverFacts, SystemFacts
    from harness.doctor.probes import run_probe
    from harness.doctor.verdicts import judge

    facts = run_probe("backends.probes:probe_openvino", timeout=120)
    assert facts.installed and facts.error is None and "CPU" in facts.providers
    assert "FP32" in facts.details["cpu_capabilities"]
    verdict = judge("openvino", facts, SystemFacts(DriverFacts(True, "580.65.06", "13.0", gpu_count=1), None, 1))
    if facts.gpus:
        assert verdict.status == "gpu-ready"
    else:  # an NVIDIA machine: OpenVINO still has no GPU, and the verdict says why instead of blaming CUDA
        assert verdict.status == "cpu-only" and "Intel GPUs" in verdict.reason
        assert "NVIDIA GPU(s) here are not among them" in verdict.reason and "NVIDIA" in verdict.fix
