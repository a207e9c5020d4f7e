"""Post-training int8 quantization of the reference SSD's ONNX forms.

Two maintained quantizers, each calibrated on frames of the calibration split (:mod:`harness.data.calibration`,
never scored):

* ONNX Runtime's static quantization, QDQ format (``QuantizeLinear``/``DequantizeLinear`` around each
  convolution, which ORT's CPU provider fuses into ``QLinearConv``): uint8 activations and per-channel int8
  weights (the x86 kernels' u8s8 form), convolutions only, MinMax ranges;
* NNCF's post-training quantization for OpenVINO (``nncf.quantize`` on the ``ov.Model``, fast bias
  correction on), saved as IR. NNCF cannot walk the full graph's NMS loop (``Could not find a node
  Postprocessor/BatchMultiClassNonMaxSuppression/...``), so it quantizes the ``network`` or ``body`` cut.

The calibration input is what the cut takes: the RGB pixels (``full``, ``network``) or x*2/255-1 (``body``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.core.errors import BackendUnavailable, ModelError


def cut_input(cut: str) -> Callable[[np.ndarray], np.ndarray]:
    """The network input one RGB uint8 frame becomes for a cut of the reference graph (batch of one)."""
    if cut == "body":
        scale = np.float32(2.0 / 255.0)
        return lambda rgb: (rgb[None].astype(np.float32) * scale - np.float32(1.0))
    return lambda rgb: np.ascontiguousarray(rgb[None])


def ort_static_int8(fp32: Path, out: Path, frames: Sequence[np.ndarray], cut: str, *,
                    reduce_range: bool = False) -> Path:
    """ONNX Runtime static QDQ quantization of ``fp32`` into ``out`` (uint8 activations, per-channel int8
    weights, Conv only), calibrated on ``frames`` (RGB uint8 at the network's size).

    ``reduce_range``: 7-bit weights. ORT's u8s8 kernels on x86 CPUs without VNNI multiply through
    ``vpmaddubsw``, whose 16-bit sums saturate with full-range weights (ORT's quantization guide); measured on
    this project's AVX2 machine: the reference SSD's AP50 on 60 PETS frames fell to 0.28 (fp32: 0.63) without
    it, 0.60 with it."""
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise BackendUnavailable(f"ONNX Runtime's quantization tools cannot be imported ({exc})",
                                 "pip install -e '.[onnx]' (onnxruntime and onnx)") from exc
    to_input = cut_input(cut)

    class Frames(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._it = iter([{name: to_input(f)} for f in frames])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="harness-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:  # shape inference + folding first, as ORT's quantization guide asks
            quant_pre_process(str(fp32), str(prepared))
        except Exception:  # noqa: BLE001 - a graph the pre-processor can't take is quantized as it is
            prepared = Path(fp32)
        name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        try:
            quantize_static(str(prepared), str(out), Frames(name), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax,
                            reduce_range=reduce_range)
        except Exception as exc:
            raise ModelError(f"ONNX Runtime's static quantization failed on {fp32.name}: {type(exc).__name__}: "
                             f"{str(exc)[:300]}", "run fp32, or quantize another cut (--opt cut=body)") from exc
    return out


def nncf_int8(source: Path, out_xml: Path, frames: Sequence[np.ndarray], cut: str) -> Path:
    """NNCF post-training quantization of an ONNX (or IR) model for OpenVINO, saved as IR ``out_xml``."""
    from backends._telemetry import frameworks_telemetry_off

    try:
        with frameworks_telemetry_off():
            import nncf
            import openvino as ov
    except ImportError as exc:
        raise BackendUnavailable(f"NNCF or OpenVINO cannot be imported ({exc})",
                                 "pip install -e '.[openvino]' (openvino and nncf)") from exc
    if cut == "full":
        raise ModelError("NNCF cannot quantize the full reference graph (it does not follow the NMS loop: "
                         "'Could not find a node Postprocessor/BatchMultiClassNonMaxSuppression/...')",
                         "use --opt cut=body (the default for int8) or cut=network: the harness decodes the boxes")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    to_input = cut_input(cut)
    model = ov.Core().read_model(str(source))
    try:
        quantized = nncf.quantize(model, nncf.Dataset(list(frames), to_input), subset_size=len(frames))
    except Exception as exc:
        raise ModelError(f"NNCF failed to quantize {source.name}: {type(exc).__name__}: {str(exc)[:300]}",
                         "run fp32/bf16, or give an int8 IR made with NNCF or OpenVINO's tools") from exc
    ov.save_model(quantized, str(out_xml))
    return out_xml


def quantizer_version(name: str) -> str:
    """``onnxruntime 1.32.0``: part of a variant's cache key (a new quantizer rebuilds it)."""
    from harness.core.versions import distribution_version

    return f"{name} {distribution_version(name) or '?'}"


def frames_for(split: Any, size: tuple[int, int]) -> list[np.ndarray]:
    """The calibration split's frames at the network's input size (RGB uint8)."""
    from harness.data.calibration import calibration_frames

    return calibration_frames(split, size)


#: the reference SSD's input size (its fixed-shape resizer)
REFERENCE_SIZE = (300, 300)


def int8_onnx_variant(converter: Any, graph: Path, out: Path, cut: str, opset: int,
                      calibration: dict[str, Any], *, reduce_range: bool = False) -> Path:
    """The reference SSD's fp32 ONNX of this cut (``converter``'s, from the one conversion cache) quantized by
    ONNX Runtime into ``out``, calibrated on the split the key names."""
    from harness.data.cache import reference_conversion
    from harness.data.calibration import CalibrationSplit

    fp32 = reference_conversion(converter, graph, options={"cut": cut, "opset": opset}).path
    frames = frames_for(CalibrationSplit.from_key(calibration), REFERENCE_SIZE)
    return ort_static_int8(fp32, out, frames, cut, reduce_range=reduce_range)
