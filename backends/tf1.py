"""TF1 frozen GraphDef through ``tf.compat.v1``: its own Graph and Session, Object Detection API tensors.

Fast path: one Session for the job, only the four output tensors fetched, the frame fed as uint8 RGB (no
float copy: the graph's own preprocessor converts and resizes). Preprocessing hands ``Session.run`` an array
it can use as it is: C-contiguous RGB with a batch axis, aligned for Eigen. A reversed-channel *view* would
make TensorFlow copy it inside ``Session.run``, charging that copy to inference (measured: 5-7 % of
``Session.run`` on 768x576 frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends._tf_common import (
    configure_gpu_memory_growth,
    import_tf,
    placement_from_step_stats,
    tf_device_string,
    tf_versions,
    visible_gpu_note,
)
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings, split_batch
from harness.core.errors import ModelError
from harness.data.models import DEFAULT_MODEL, resolve_model
from harness.data.preprocess import rgb_batch, rgb_stack

OD_API_NAMES = {
    "input": "image_tensor:0",
    "boxes": "detection_boxes:0",
    "scores": "detection_scores:0",
    "classes": "detection_classes:0",
    "num": "num_detections:0",
}


def read_graph_def(tf: Any, path: Path) -> Any:
    """Parse a frozen GraphDef, with an error that says what the file is if it is not one."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}", "check the path, or omit --model to use the reference SSD")
    data = path.read_bytes()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise ModelError(
            f"{path} is not a TensorFlow frozen graph (GraphDef protobuf): {exc}",
            "give the frozen_inference_graph.pb exported by the Object Detection API; a SavedModel folder "
            "goes to --backend tf2, a .tflite to --backend tflite, an .onnx to --backend onnxruntime or opencv",
        ) from exc
    if not graph_def.node:
        raise ModelError(f"{path} parsed as a GraphDef with no nodes (truncated or not a graph)", "re-export the graph")
    return graph_def


def graph_input_size(graph_def: Any) -> tuple[int, int] | None:
    """The fixed-shape resizer's (width, height) of an OD API graph, if it has one."""
    for node in graph_def.node:
        if node.name.endswith("ResizeImage/size") and node.op == "Const":
            vals = np.frombuffer(node.attr["value"].tensor.tensor_content, dtype=np.int32)
            if vals.size == 2:
                return int(vals[1]), int(vals[0])
    return None


class TF1Detector(Detector):
    name = "tf1"
    distributions = ("tensorflow",)
    modules = ("tensorflow",)
    known_options = {
        "input": f"input tensor name (default {OD_API_NAMES['input']})",
        "boxes": f"boxes tensor name (default {OD_API_NAMES['boxes']})",
        "scores": f"scores tensor name (default {OD_API_NAMES['scores']})",
        "classes": f"classes tensor name (default {OD_API_NAMES['classes']})",
        "num": f"detection count tensor name (default {OD_API_NAMES['num']})",
        "inter_op_threads": "the session's inter_op_parallelism_threads (0 = TensorFlow's choice)",
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self._names = {k: config.option(k, v) for k, v in OD_API_NAMES.items()}
        self._sess: Any = None
        self._fetches: list[Any] = []
        self._input: Any = None
        self._last_inputs: Any = None

    def load(self) -> None:
        tf = import_tf()
        self._tf = tf
        configure_gpu_memory_growth(tf)
        self.model_ref = resolve_model(self.config.model or DEFAULT_MODEL, role="graph")
        graph_def = read_graph_def(tf, self.model_ref.path)
        graph = tf.Graph()
        with graph.as_default():
            with tf.device(tf_device_string(self.config.device)):
                try:
                    tf.compat.v1.import_graph_def(graph_def, name="")
                except (ValueError, tf.errors.InvalidArgumentError) as exc:
                    raise ModelError(f"{self.model_ref.path} cannot be imported as a graph: {exc}",
                                     "is it a frozen graph for this TensorFlow version?") from exc
        try:
            self._input = graph.get_tensor_by_name(self._names["input"])
            self._fetches = [graph.get_tensor_by_name(self._names[k]) for k in ("boxes", "scores", "classes", "num")]
        except KeyError as exc:
            ops = [op.name for op in graph.get_operations() if op.type == "Placeholder"]
            raise ModelError(
                f"{self.model_ref.path}: tensor not in the graph: {exc}",
                f"set the names with --opt input=... boxes=... scores=... classes=... num=...; "
                f"the graph's placeholders: {', '.join(ops) or 'none'}",
            ) from exc
        threads = self.config.threads or 0
        session_config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads,
            inter_op_parallelism_threads=int(self.config.option("inter_op_threads", 0)),
            allow_soft_placement=True,
        )
        session_config.gpu_options.allow_growth = True
        if not self.config.device.is_accelerator:
            session_config.device_count["GPU"] = 0
        self._sess = tf.compat.v1.Session(graph=graph, config=session_config)
        self.label_map = self.model_ref.label_map
        self.input_size = self.model_ref.input_size or graph_input_size(graph_def)

    def close(self) -> None:
        if self._sess is not None:
            self._sess.close()
            self._sess = None

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        return rgb_batch(frame_bgr)  # the array Session.run feeds without a copy of its own

    def infer(self, inputs: np.ndarray) -> list[np.ndarray]:
        self._last_inputs = inputs
        return self._sess.run(self._fetches, feed_dict={self._input: inputs})

    def postprocess(self, raw: list[np.ndarray], frame_size: tuple[int, int]) -> Detections:
        boxes, scores, classes, num = (np.asarray(a) for a in raw)
        n_rows = scores.size
        if (boxes.shape[-1:] != (4,) or boxes.size != 4 * n_rows or classes.size != n_rows or num.size != 1
                or not 0 <= float(num.reshape(-1)[0]) <= n_rows or float(num.reshape(-1)[0]) % 1):
            raise ModelError(
                f"the model's outputs don't fit the Object Detection API layout: boxes {boxes.shape}, scores "
                f"{scores.shape}, classes {classes.shape}, num {num.shape} (tensors {self._names})",
                "expected boxes [1,N,4] ymin,xmin,ymax,xmax normalized, scores [1,N], classes [1,N], num [1]; "
                "point --opt boxes=/scores=/classes=/num= at those tensors",
            )
        n = int(num.reshape(-1)[0])
        boxes = boxes.reshape(-1, 4)[:n]
        return Detections.from_boxes(
            boxes,
            np.asarray(scores).reshape(-1)[:n],
            self.label_map.apply(np.asarray(classes).reshape(-1)[:n]),
            frame_size,
            fmt="yxyx",
            normalized=True,
            label_space=self.label_map.space,
        )

    # batches: the OD API graph takes [N, H, W, 3] when the frames share a size --------
    def batch_unsupported(self, size: int) -> str | None:
        dims = self._input.shape.as_list() if self._input is not None and self._input.shape.rank else None
        if size == 1 or not dims or dims[0] in (None, size):
            return None
        return f"the graph's input {self._names['input']} has a fixed batch of {dims[0]}"

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        return rgb_stack(frames_bgr)  # one contiguous, aligned [N, H, W, 3] array: no copy in Session.run

    def postprocess_batch(self, raw: list[np.ndarray], frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        return [self.postprocess(one, size) for one, size in zip(split_batch(raw, len(frame_sizes)), frame_sizes)]

    def placement(self) -> Placement:
        tf = self._tf
        if self._last_inputs is None:
            return Placement(self.config.device, "unknown", "no inference ran yet")
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        meta = tf.compat.v1.RunMetadata()
        self._sess.run(self._fetches, feed_dict={self._input: self._last_inputs}, options=options, run_metadata=meta)
        placement = placement_from_step_stats(meta.step_stats, self.config.device)
        if placement.fallback:
            placement.evidence += f"; {visible_gpu_note(tf)}"
        return placement

    def runtime_versions(self) -> dict[str, str]:
        return tf_versions(self._tf) if getattr(self, "_tf", None) else {}

    def thread_settings(self) -> ThreadSettings:
        """A TF1 Session cannot report its thread pools: what it was created with (0 = TensorFlow's choice)."""
        return ThreadSettings(configured={"intra_op": int(self.config.threads or 0),
                                          "inter_op": int(self.config.option("inter_op_threads", 0))})

    def model_details(self) -> dict[str, Any]:
        return {"tensors": dict(self._names)}

    # precision ---------------------------------------------------------------------------------
    def precision_report(self) -> Any:
        """The types the imported graph's convolutions and matmuls were built with (TF runs them as built)."""
        from backends._tf_common import graph_def_precision

        return graph_def_precision(self._sess.graph.as_graph_def(), self.config.precision)

    def model_cost(self) -> Any:
        """Float constants of the graph as parameters; MACs from the output shapes of one traced run of a
        scratch session with Grappler off (the job's session fuses Conv2D away, and the graph's preprocessor
        loop leaves static shapes open)."""
        from backends._tf_common import graph_def_params, traced_macs
        from harness.core.model_facts import ModelCost

        tf = self._tf
        graph = self._sess.graph
        if self.input_size is None:
            return None
        w, h = self.input_size
        config = tf.compat.v1.ConfigProto(device_count={"GPU": 0})
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        meta = tf.compat.v1.RunMetadata()
        with tf.compat.v1.Session(graph=graph, config=config) as scratch:
            scratch.run(self._fetches, feed_dict={self._input: self.preprocess(np.zeros((h, w, 3), np.uint8))},
                        options=options, run_metadata=meta)
        graph_def = graph.as_graph_def()
        macs, counted = traced_macs(meta.step_stats, graph_def)
        return ModelCost(graph_def_params(graph_def), macs,
                         f"{self.model_ref.path.name if self.model_ref else '?'}: {counted} Conv2D/Depthwise/MatMul "
                         f"ops of one traced run at {w}x{h}; parameters = the graph's float constants")
