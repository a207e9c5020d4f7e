"""What the TF1 and TF2 adapters share: importing TensorFlow quietly, thread and GPU-memory settings, and
reading device placement out of a RunMetadata / step-stats trace."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections import Counter
from typing import Any

import numpy as np

from harness.core.detector import Placement
from harness.core.device import Device
from harness.core.errors import BackendUnavailable

#: the Object Detection API's TF2 export, read by the tf2 runtime and written by its converter: the output keys
#: of its ``serving_default`` signature (override with ``--opt boxes=...``), the signature, the input's name
OD_API_OUTPUTS = {
    "boxes": "detection_boxes",
    "scores": "detection_scores",
    "classes": "detection_classes",
    "num": "num_detections",
}
SIGNATURE = "serving_default"
REFERENCE_INPUT = "input_tensor"  # the OD API's TF2 export name


class _KerasDeferred(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """While TensorFlow imports, in the importing thread: ``keras`` is found (TensorFlow asks where it lives to
    set up ``tf.keras``) but refuses to load, so TensorFlow's eager ``import keras.src.optimizers`` fails and is
    skipped, as TensorFlow allows (it catches the ImportError)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "keras" or threading.get_ident() != self.thread:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        raise ImportError("keras is loaded on first use of tf.keras, not while TensorFlow imports")

    def exec_module(self, module: Any) -> None:  # never reached: create_module refuses
        raise ImportError("keras is loaded on first use of tf.keras")


def import_tensorflow() -> Any:
    """``import tensorflow``, without the Keras that TensorFlow imports eagerly.

    TensorFlow's import loads all of Keras (and through it scikit-learn and matplotlib.pyplot) "so that
    registrations happen at load time": about half of the import's time (measured: 5.0 -> 2.6 CPU-s on this
    project's 2-core machines), paid by every job's worker though no adapter here uses Keras: frozen graphs,
    SavedModel signatures and TFLite need none of it. ``tf.keras`` still works: it loads Keras on first use,
    and so does ``tensorflow_hub``. Where Keras is already imported (or TensorFlow is), nothing changes.
    Raises ImportError when TensorFlow is not installed."""
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        import tensorflow as tf

        return tf
    finder = _KerasDeferred()
    sys.meta_path.insert(0, finder)
    try:
        import tensorflow as tf
    finally:
        sys.meta_path.remove(finder)
    return tf


def import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tf = import_tensorflow()
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorFlow is not installed ({exc})", "pip install -e '.[tf]'  (or pip install tensorflow)"
        ) from exc
    return tf


def tf_versions(tf: Any) -> dict[str, str]:
    info = dict(tf.sysconfig.get_build_info())
    out = {"tensorflow": tf.__version__}
    for key in ("cuda_version", "cudnn_version"):
        if info.get(key):
            out[f"tensorflow_built_for_{key}"] = str(info[key])
    return out


def placement_from_step_stats(step_stats: Any, requested: str) -> Placement:
    """Count the ops of one traced run per device: ``GPU:0 94% of ops, CPU 6%``."""
    counts: Counter[str] = Counter()
    for dev in step_stats.dev_stats:
        name = dev.device  # e.g. /job:localhost/replica:0/task:0/device:GPU:0 (and .../stream:all copies)
        if "stream:" in name or "memcpy" in name:
            continue
        short = name.rsplit("device:", 1)[-1]
        counts[short] += len(dev.node_stats)
    total = sum(counts.values())
    if total == 0:
        return Placement(requested, "unknown", "the trace recorded no ops")
    shares = {dev: n / total for dev, n in counts.most_common()}
    gpu_share = sum(v for k, v in shares.items() if k.upper().startswith("GPU"))
    if gpu_share >= 0.5:
        gpu_dev = max((k for k in shares if k.upper().startswith("GPU")), key=lambda k: shares[k])
        actual = "gpu:" + gpu_dev.rsplit(":", 1)[-1]
    else:
        actual = "cpu"
    evidence = "ops of one traced inference: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    return Placement(requested, actual, evidence, shares)


def visible_gpu_note(tf: Any) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"TensorFlow sees {len(gpus)} GPU(s)"
    built = tf.test.is_built_with_cuda()
    return "TensorFlow sees no GPU (" + ("CUDA build: see `harness doctor` for why" if built else "CPU-only build") + ")"


def configure_gpu_memory_growth(tf: Any) -> None:
    """Don't let TF take all GPU memory: other jobs and frameworks share the card."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialized in this process


def tf_device_string(device: str) -> str:
    device = Device(device)
    return f"/GPU:{device.index}" if device.is_accelerator else "/CPU:0"


def apply_tf2_threads(tf: Any, intra: int | None, inter: int | None = None) -> dict[str, int]:
    """Set TF2's process-wide thread pools (only possible before TF runs anything in this process: true in
    the worker process each job gets). Returns the values in effect (0 = TF's own choice)."""
    for value, setter in ((intra, tf.config.threading.set_intra_op_parallelism_threads),
                          (inter, tf.config.threading.set_inter_op_parallelism_threads)):
        if value:
            try:
                setter(int(value))
            except RuntimeError:  # TF already initialized (inline executor): keep what is in effect
                pass
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


# precision -------------------------------------------------------------------------------------

#: TF op types that do the network's arithmetic, and their quantized forms (int8 compute)
TF_COMPUTE_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "_FusedConv2D", "_FusedMatMul",
                  "Conv3D", "Conv2DBackpropInput")
TF_QUANTIZED_OPS = ("QuantizedConv2D", "QuantizedDepthwiseConv2D", "QuantizedMatMul", "_QuantizedConv2D",
                    "QuantizedConv2DWithBiasAndRelu", "_QuantizedMatMul")
#: DataType enum values (tensorflow/core/framework/types.proto) -> precision
_TF_DTYPES = {1: "fp32", 19: "fp16", 14: "bf16", 2: "fp64"}


def _all_nodes(graph_def: Any) -> list[Any]:
    """The graph's nodes and those of every function in its library (a SavedModel's signature calls them)."""
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return nodes


def graph_def_precision(graph_def: Any, requested: str | None) -> Any:
    """What a TF graph computes at: the ``T`` attribute of its convolutions and matmuls (quantized ops are
    int8). TensorFlow runs a graph at the types it was built with: no flag changes them at load."""
    from harness.core.precision import PrecisionReport, dominant, shares_text

    counts: Counter = Counter()
    for node in _all_nodes(graph_def):
        if node.op in TF_QUANTIZED_OPS:
            counts["int8"] += 1
        elif node.op in TF_COMPUTE_OPS and "T" in node.attr:
            counts[_TF_DTYPES.get(int(node.attr["T"].type), f"dtype {node.attr['T'].type}")] += 1
    effective, shares = dominant(counts)
    evidence = "the graph's op types: " + shares_text(shares, f"of {sum(counts.values())} convolution/matmul ops")
    if requested not in (None, "auto", effective):
        evidence += (f"; TensorFlow runs a graph at the types it was built with, and the harness makes no "
                     f"{requested} variant for it (ONNX Runtime, OpenVINO, TFLite and torch have some)")
    return PrecisionReport(requested, effective, evidence, shares)


def graph_def_params(graph_def: Any) -> int:
    """Elements of the float constants stored in a (frozen) graph: its weights, and its anchors."""
    total = 0
    for node in _all_nodes(graph_def):
        if node.op == "Const" and int(node.attr["dtype"].type) in _TF_DTYPES:
            dims = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
            total += int(np.prod(dims)) if dims else 1
    return total


def traced_macs(step_stats: Any, graph_def: Any) -> tuple[int, int]:
    """MACs of one traced run: each convolution/matmul's output shape (from the trace) times its kernel's
    reduced size (from the graph's constant weights); returns (MACs, ops counted)."""
    consts = {n.name: [d.size for d in n.attr["value"].tensor.tensor_shape.dim] for n in graph_def.node
              if n.op == "Const"}
    nodes = {n.name: n for n in graph_def.node}

    def weight_dims(node: Any) -> list[int] | None:
        name = node.input[1].split(":")[0].lstrip("^")
        while name in nodes and nodes[name].op == "Identity":  # weights/read
            name = nodes[name].input[0].split(":")[0]
        return consts.get(name)

    macs = counted = 0
    for dev in step_stats.dev_stats:
        for stat in dev.node_stats:
            node = nodes.get(stat.node_name)
            if node is None or node.op not in ("Conv2D", "DepthwiseConv2dNative", "MatMul") or not stat.output:
                continue
            dims = weight_dims(node)
            shape = [d.size for d in stat.output[0].tensor_description.shape.dim]
            if not dims or not shape or min(shape) < 0:
                continue
            per = {"Conv2D": int(np.prod(dims[:3])), "DepthwiseConv2dNative": int(np.prod(dims[:2])),
                   "MatMul": dims[0]}[node.op]
            macs += int(np.prod(shape)) * per
            counted += 1
    return macs, counted
