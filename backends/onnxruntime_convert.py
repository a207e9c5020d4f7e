"""ONNX Runtime's converter: the reference frozen graph as ONNX (tf2onnx, cut and opset as asked), its int8
QDQ variant (ONNX Runtime's static quantization, calibrated on the never-scored split), and a pytorch-ssd family
checkpoint as dusty-nv's Jetson ONNX export.

These files are the ONNX forms of the project: OpenVINO and OpenCV (where it has no TensorFlow importer) read the
same cached artifacts. Importing this module imports no framework: tf2onnx, the quantizer and PyTorch are
imported by the conversion that needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from backends._onnx_export import CUTS, DEFAULT_OPSET, export_frozen_graph
from harness.data.calibration import CalibrationSplit
from harness.core.converter import Converter
from harness.core.errors import ModelError


class ONNXRuntimeConverter(Converter):
    backend = "onnxruntime"
    distributions: ClassVar[tuple[str, ...]] = ("tf2onnx", "tensorflow", "onnx")
    #: the artifacts were keyed by the runtime class before the converter was split out of it
    cache_identity = "backends.onnxruntime_ort.ONNXRuntimeDetector"
    precisions: ClassVar[tuple[str, ...]] = ("int8",)
    #: ``harness convert --backend onnxruntime --model X.pth``: the Jetson export of a family checkpoint
    model_formats: ClassVar[tuple[str, ...]] = ("onnx",)

    @classmethod
    def convert_reference(cls, graph: Path, out_dir: Path, *, cut: str = "full", opset: int = DEFAULT_OPSET,
                          precision: str = "fp32", calibration: Mapping[str, Any] | None = None,
                          quantizer: str | None = None, reduce_range: bool = False) -> Path:
        """tf2onnx the reference frozen graph into ``out_dir/model.onnx`` (``cut="network"``: head removed);
        ``precision="int8"``: that fp32 file (from the cache) quantized statically, calibrated on the split."""
        out = Path(out_dir) / "model.onnx"
        if precision != "int8":
            return export_frozen_graph(Path(graph), out, cut=cut, opset=opset)
        from backends._quantize import int8_onnx_variant

        return int8_onnx_variant(cls, Path(graph), out, cut, opset, calibration or {}, reduce_range=reduce_range)

    @classmethod
    def convert_model(cls, source: Path, out_dir: Path, *, fmt: str = "onnx",
                      options: Mapping[str, Any] | None = None) -> Path:
        """A pytorch-ssd family checkpoint written as dusty-nv's ``onnx_export.py`` does (needs PyTorch)."""
        from backends import torch_formats
        from backends._torch_common import import_torch

        if fmt != "onnx":
            raise ModelError(f"the onnxruntime backend writes no {fmt!r} files", "use --format onnx")
        return torch_formats.export_jetson_onnx(import_torch(), Path(source), Path(out_dir), options)

    @classmethod
    def conversion_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``cut`` and ``opset`` decide the ONNX file: part of its cache key, defaults filled in; an int8
        variant adds its calibration split and the quantizer's version (fp32 keys stay as they were)."""
        cut = str(options.get("cut", "full"))
        if cut not in CUTS:
            raise ModelError(f"unknown cut {cut!r}", f"--opt cut={' or cut='.join(CUTS)}")
        chosen: dict[str, Any] = {"cut": cut, "opset": int(options.get("opset", DEFAULT_OPSET))}
        if options.get("precision") in cls.precisions:
            from backends._quantize import quantizer_version
            from harness.core.precision import cpu_has_int8_dot

            reduce_range = options.get("reduce_range", not cpu_has_int8_dot())
            chosen.update(precision=options["precision"], quantizer=quantizer_version("onnxruntime"),
                          calibration=CalibrationSplit.from_options(options).key(),
                          reduce_range=str(reduce_range).lower() in ("1", "true", "yes"))
        return chosen
