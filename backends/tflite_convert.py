"""The tflite backend's converter (the reference SSD as TFLite at fp32, fp16 or int8), and what a loaded
interpreter computes at and costs.

The conversion takes the frozen graph's network after its preprocessor (``Preprocessor/sub:0``, a float
``[1,300,300,3]`` at x*2/255-1, to the raw box encodings ``concat:0`` and logits ``concat_1:0``) with
TensorFlow's TF1 converter: the OD API postprocessor's NMS loops have no TFLite builtin form (the TF1
``export_tflite_ssd_graph`` tool cuts at the same two tensors). fp16 stores the weights as float16 (the
interpreter dequantizes them to fp32 on CPUs); int8 is full-integer quantization (int8 kernels, float input
and output) calibrated on the never-scored split. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from backends._tf_common import import_tensorflow
from harness.core.converter import Converter
from harness.core.errors import BackendUnavailable, ModelError
from harness.core.model_facts import ModelCost
from harness.core.precision import dominant, precision_of_type

INPUT = "Preprocessor/sub"
OUTPUTS = ("concat", "concat_1")
SIZE = (300, 300)
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
#: the hosted COCO model a job without --model (and without a precision) runs
DEFAULT_TFLITE_MODEL = "tflite-coco-ssd-mobilenet-v1-quant"


class TFLiteConverter(Converter):
    backend = "tflite"
    distributions: ClassVar[tuple[str, ...]] = ("tensorflow",)
    #: the artifacts were keyed by the runtime class before the converter was split out of it
    cache_identity = "backends.tflite.TFLiteDetector"
    # precision: the reference SSD's TFLite forms, made by `harness convert` / on first use
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    default_model = DEFAULT_TFLITE_MODEL  # what a job without --model runs (read by the assets preflight)

    @classmethod
    def default_model_for(cls, precision: str | None) -> str:
        """The asset a job without --model runs: the hosted COCO model, or with a precision asked the
        reference SSD (its TFLite variant is converted from the reference graph)."""
        from harness.data.models import DEFAULT_MODEL

        return DEFAULT_TFLITE_MODEL if precision is None else DEFAULT_MODEL

    @classmethod
    def convert_reference(cls, graph: Path, out_dir: Path, *, precision: str = "fp32",
                          calibration: dict | None = None) -> Path:
        """The reference SSD's network (after its preprocessor) as a .tflite at ``precision``."""
        return convert_reference_tflite(Path(graph), Path(out_dir) / "model.tflite", precision, calibration)

    @classmethod
    def conversion_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The variant's precision (fp32 for ``auto``/none), and the calibration split of the int8 one."""
        precision = options.get("precision") or "fp32"
        precision = "fp32" if precision not in cls.precisions else precision
        chosen: dict[str, Any] = {"precision": precision}
        if precision == "int8":
            from harness.data.calibration import CalibrationSplit

            chosen["calibration"] = CalibrationSplit.from_options(options).key()
        return chosen


def convert_reference_tflite(graph: Path, out: Path, precision: str, calibration: dict | None) -> Path:
    """Write the reference network as ``out`` (.tflite) at ``precision`` (fp32 | fp16 | int8)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tf = import_tensorflow()
    except ImportError as exc:
        raise BackendUnavailable(f"converting to TFLite needs TensorFlow ({exc})", "pip install -e '.[tf]'") from exc
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(graph), [INPUT], list(OUTPUTS), {INPUT: [1, SIZE[1], SIZE[0], 3]})
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        from backends._quantize import cut_input, frames_for
        from harness.data.calibration import CalibrationSplit

        frames = frames_for(CalibrationSplit.from_key(calibration or {}), SIZE)
        to_input = cut_input("body")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([to_input(f)] for f in frames)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif precision != "fp32":
        raise ModelError(f"no TFLite {precision} variant of the reference SSD", "use fp32, fp16 or int8")
    try:
        out.write_bytes(converter.convert())
    except Exception as exc:
        raise ModelError(f"the TFLite converter failed on {graph.name} at {precision}: {type(exc).__name__}: "
                         f"{str(exc)[:300]}", "run another precision, or convert by hand with tf.lite") from exc
    return out


def _tensors(interpreter: Any) -> tuple[list[dict], dict[int, dict]]:
    ops = interpreter._get_ops_details()  # the model's ops (delegated ones too), with their tensor indices
    return ops, {t["index"]: t for t in interpreter.get_tensor_details()}


def tflite_precision(interpreter: Any) -> tuple[str, dict[str, float], str, str | None]:
    """(effective precision, shares, evidence, weights' storage precision when it differs) of a loaded
    interpreter, from each compute op's input and weight tensor types."""
    ops, tensors = _tensors(interpreter)
    made_by = {out: op for op in ops for out in op["outputs"]}
    counts: Counter = Counter()
    stored: Counter = Counter()
    for op in ops:
        if op["op_name"] not in COMPUTE_OPS or len(op["inputs"]) < 2:
            continue
        counts[precision_of_type(np.dtype(tensors[op["inputs"][0]]["dtype"]).name) or "fp32"] += 1
        weight = op["inputs"][1]
        producer = made_by.get(weight)
        if producer is not None and producer["op_name"] == "DEQUANTIZE":
            weight = producer["inputs"][0]
        stored[precision_of_type(np.dtype(tensors[weight]["dtype"]).name) or "?"] += 1
    effective, shares = dominant(counts)
    weights, _ = dominant(stored)
    evidence = (f"TFLite tensors: {sum(counts.values())} convolutions take "
                + ", ".join(f"{n} {p}" for p, n in counts.most_common()) + " inputs; weights stored "
                + ", ".join(f"{n} {p}" for p, n in stored.most_common()))
    if weights != effective:
        evidence += f" (dequantized to {effective} before computing)"
    return effective, shares, evidence, (weights if weights != effective else None)


def tflite_cost(interpreter: Any, name: str) -> ModelCost:
    """Parameters (the compute ops' weights and biases) and MACs (output elements x kernel size)."""
    ops, tensors = _tensors(interpreter)
    made_by = {out: op for op in ops for out in op["outputs"]}
    params = macs = 0
    counted = 0
    for op in ops:
        if op["op_name"] not in COMPUTE_OPS or len(op["inputs"]) < 2:
            continue
        shapes = []
        for index in op["inputs"][1:]:
            if index < 0:
                continue
            producer = made_by.get(index)
            source = producer["inputs"][0] if producer is not None and producer["op_name"] == "DEQUANTIZE" else index
            shapes.append([int(v) for v in tensors[source]["shape"]])
        params += sum(int(np.prod(s)) for s in shapes)
        out = int(np.prod(tensors[op["outputs"][0]]["shape"]))
        weight = shapes[0]
        per = {"CONV_2D": int(np.prod(weight[1:])), "DEPTHWISE_CONV_2D": int(np.prod(weight[1:3])),
               "FULLY_CONNECTED": weight[-1], "TRANSPOSE_CONV": int(np.prod(weight[1:]))}[op["op_name"]]
        macs += out * per
        counted += 1
    return ModelCost(params, macs, f"{name}: {counted} TFLite convolution/fully-connected ops")
