"""OpenVINO's converter, and what it reads from a model without running it.

The reference SSD's fp32 form for OpenVINO is ONNX Runtime's ONNX file (the same cached artifact: OpenVINO reads
ONNX directly), so the only artifact made here is the int8 IR: NNCF's post-training quantization of the ``body``
cut (NNCF cannot follow the full graph's NMS loop), calibrated on the never-scored split. :func:`model_cost`
counts parameters and MACs from an ``ov.Model``. Importing this module imports neither OpenVINO nor NNCF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from backends._onnx_export import CUTS, DEFAULT_OPSET
from harness.data.calibration import CalibrationSplit
from harness.core.converter import Converter
from harness.core.errors import ModelError
from harness.core.model_facts import ModelCost


class OpenVINOConverter(Converter):
    backend = "openvino"
    distributions: ClassVar[tuple[str, ...]] = ("openvino", "nncf", "tf2onnx", "tensorflow", "onnx")
    #: the artifacts were keyed by the runtime class before the converter was split out of it
    cache_identity = "backends.openvino_ov.OpenVINODetector"
    precisions: ClassVar[tuple[str, ...]] = ("int8",)

    @classmethod
    def convert_reference(cls, graph: Path, out_dir: Path, *, cut: str = "full", opset: int = DEFAULT_OPSET,
                          precision: str = "fp32", calibration: Mapping[str, Any] | None = None,
                          quantizer: str | None = None) -> Path:
        """The reference SSD for OpenVINO: its ONNX form needs no conversion of its own (it is ONNX Runtime's,
        from the same cache), so the only artifact made here is the int8 IR (NNCF on the ONNX cut)."""
        if precision != "int8":
            raise NotImplementedError("OpenVINO reads the reference ONNX file directly (onnxruntime's conversion)")
        from backends._quantize import REFERENCE_SIZE, frames_for, nncf_int8
        from backends.onnxruntime_convert import ONNXRuntimeConverter
        from harness.data.cache import reference_conversion

        onnx = reference_conversion(ONNXRuntimeConverter, graph, options={"cut": cut, "opset": opset}).path
        frames = frames_for(CalibrationSplit.from_key(calibration or {}), REFERENCE_SIZE)
        return nncf_int8(onnx, Path(out_dir) / "model.xml", frames, cut)

    @classmethod
    def conversion_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The int8 IR's cache key: the cut (default ``body``), opset, calibration split, NNCF's version."""
        int8 = options.get("precision") in cls.precisions
        cut = str(options.get("cut", "body" if int8 else "full"))
        if cut not in CUTS:
            raise ModelError(f"unknown cut {cut!r}", f"--opt cut={' or cut='.join(CUTS)}")
        chosen: dict[str, Any] = {"cut": cut, "opset": int(options.get("opset", DEFAULT_OPSET))}
        if int8:
            from backends._quantize import quantizer_version

            chosen.update(precision="int8", quantizer=quantizer_version("nncf"),
                          calibration=CalibrationSplit.from_options(options).key())
        return chosen


def model_cost(model: Any, name: str) -> ModelCost:
    """Parameters and MACs of an ``ov.Model`` reshaped to one static frame: Convolution/GroupConvolution/MatMul
    output elements times their kernels' reduced size; float constants count as parameters."""
    macs = params = 0
    counted = 0
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "Constant" and op.get_element_type().get_type_name() not in ("i32", "i64", "boolean"):
            shape = op.get_output_partial_shape(0)
            if shape.is_static and shape.rank.get_length() >= 1:
                params += int(np.prod([d.get_length() for d in shape]))
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        out, weight = op.get_output_partial_shape(0), op.get_input_partial_shape(1)
        # the full graph's preprocessor Loop leaves the batch open: one frame is one batch item
        dims = [d.get_length() if d.is_static else (1 if i == 0 else None) for i, d in enumerate(out)]
        if None in dims or not weight.is_static:
            continue
        out_n = int(np.prod(dims))
        w = [d.get_length() for d in weight]
        per = int(np.prod(w[1:])) if kind == "Convolution" else (
            int(np.prod(w[2:])) if kind == "GroupConvolution" else w[-2])
        macs += out_n * per
        counted += 1
    return ModelCost(params, macs, f"{name}: {counted} Convolution/GroupConvolution/MatMul ops of OpenVINO's "
                     "model (constants as parameters)")
