"""TensorFlow Lite: a ``.tflite`` SSD whose graph ends in ``TFLite_Detection_PostProcess``.

The interpreter is LiteRT's (``ai_edge_litert``) when installed, else ``tf.lite.Interpreter``, which
TensorFlow 2.21 still ships but marks deprecated: its warning is caught and kept in the model description
instead of being printed on every job.

The four outputs (boxes ``[1,N,4]`` ymin,xmin,ymax,xmax normalized; classes ``[1,N]`` 0-based; scores
``[1,N]``; count ``[1]``) come in different orders from different converters (TF1's
``export_tflite_ssd_graph`` names them ``TFLite_Detection_PostProcess:0..3``; TF2 exports emit
``StatefulPartitionedCall:0..3`` as scores, boxes, count, classes). They are told apart by name where the
name says it, else by shape (boxes and count), and classes from scores by their values on the first frame
(class ids are whole numbers, scores are not).

Speed: one interpreter per job with ``num_threads`` from ``--threads`` (TF's build applies XNNPACK on the
CPU), uint8-quantized models fed the RGB pixels as they are (their input quantization, scale 1/128 and zero
point 128, is the usual (x-128)/128 normalization), only the four small outputs copied out.

Precision: a job that asks for a precision and names no model runs the reference SSD converted
to TFLite at that precision (fp32, fp16 weights, or int8 calibrated on the never-scored split; cached by
content), from the frozen graph's network after its preprocessor: the OD API postprocessor's NMS loops
have no TFLite builtin form, so the two raw outputs (box encodings, class logits) are decoded in the harness
like ONNX Runtime's network cut. With no precision, a job without ``--model`` runs the hosted COCO model as
before. The effective precision is read from the interpreter's tensors: the input type of each convolution
(an fp16 model's weights pass through DEQUANTIZE to fp32 convolutions: fp32 compute, fp16 storage).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends.tflite_convert import DEFAULT_TFLITE_MODEL, TFLiteConverter
from harness.data.cache import use_reference_conversion
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings
from harness.core.errors import BackendUnavailable, ModelError
from harness.core.labels import label_map_from_file
from harness.data.models import ModelRef, label_map_option, resolve_model
from harness.data.preprocess import rgb_batch, shared_resize

ROLES = ("boxes", "classes", "scores", "count")
_NAME_HINTS = (("boxes", ("box",)), ("classes", ("class",)), ("scores", ("score",)), ("count", ("num", "count")))


def load_interpreter(model_path: Path, threads: int | None) -> tuple[Any, str, list[str]]:
    """The interpreter, which implementation it is, and the warnings its import/creation raised."""
    kwargs: dict[str, Any] = {"model_path": str(model_path)}
    if threads:
        kwargs["num_threads"] = int(threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

            impl = "ai_edge_litert"
        except ImportError:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            try:
                from backends._tf_common import import_tensorflow

                tf = import_tensorflow()
            except ImportError as exc:
                raise BackendUnavailable(f"neither ai_edge_litert nor tensorflow is installed ({exc})",
                                         "pip install ai-edge-litert (or tensorflow)") from exc
            Interpreter = tf.lite.Interpreter
            impl = "tf.lite.Interpreter"
        try:
            interpreter = Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"{model_path} is not a TFLite model the interpreter can load: {str(exc).strip()[:300]}",
                "give a .tflite flatbuffer (a frozen graph goes to --backend tf1, an .onnx to --backend onnxruntime)",
            ) from exc
    notes = [" ".join(str(w.message).split()) for w in caught]
    return interpreter, impl, notes


def identify_outputs(details: Sequence[dict], values: Sequence[np.ndarray] | None = None) -> dict[str, int] | None:
    """Map boxes/classes/scores/count to positions in ``details``; None when only values can tell.

    By name first (``detection_boxes``..., or ``TFLite_Detection_PostProcess:k``), then by shape (boxes are
    the only ``[1,N,4]``, count the only one-element tensor), then, given ``values`` of one inference,
    classes are the ``[1,N]`` tensor holding whole numbers and scores the other.
    """
    if len(details) != 4:
        raise ModelError(f"the model has {len(details)} outputs, not the 4 of TFLite_Detection_PostProcess",
                         "give an SSD exported with its TFLite detection post-processing op")
    names = [str(d["name"]) for d in details]
    by_name: dict[str, int] = {}
    for role, hints in _NAME_HINTS:
        hits = [i for i, n in enumerate(names) if any(h in n.lower().rsplit("/", 1)[-1] for h in hints)]
        if len(hits) == 1:
            by_name[role] = hits[0]
    if len(by_name) == 4 and len(set(by_name.values())) == 4:
        return by_name
    post = [re.fullmatch(r".*TFLite_Detection_PostProcess(?::(\d))?", n) for n in names]
    if all(post):
        order = [int(m.group(1) or 0) for m in post]  # type: ignore[union-attr]
        if sorted(order) == [0, 1, 2, 3]:
            return {ROLES[k]: i for i, k in enumerate(order)}
    shapes = [tuple(int(v) for v in d["shape"]) for d in details]
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[-1] == 4]
    count = [i for i, s in enumerate(shapes) if int(np.prod(s)) == 1]
    rest = [i for i in range(4) if i not in boxes + count]
    if len(boxes) != 1 or len(count) != 1 or len(rest) != 2:
        raise ModelError(f"the outputs don't fit TFLite_Detection_PostProcess: {dict(zip(names, shapes))}",
                         "expected boxes [1,N,4], classes [1,N], scores [1,N] and count [1]")
    if values is None:
        return None
    whole = [i for i in rest if np.all(np.asarray(values[i]) == np.round(np.asarray(values[i])))]
    classes = whole[0] if len(whole) == 1 else rest[0]  # both whole (all-zero rows): either works
    scores = rest[1] if classes == rest[0] else rest[0]
    return {"boxes": boxes[0], "classes": classes, "scores": scores, "count": count[0]}


class TFLiteDetector(Detector):
    name = "tflite"
    distributions = ("ai-edge-litert", "tensorflow")
    converter = TFLiteConverter  # the reference SSD's precision variants; the default model is its choice
    known_options = {
        "labels": "label file (one name per line), or coco | person (default: labelmap.txt beside the model)",
        "mean": "float models: input mean (default: manifest, else 127.5)",
        "std": "float models: input std (default: manifest, else 127.5)",
        "calibration": "int8 reference variant: calibration frames' source, asset or path (default coco128; "
                       "never scored)",
        "calibration_frames": "int8 reference variant: how many frames of it calibrate (default 100)",
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self._it: Any = None
        self.impl = ""
        self.notes: list[str] = []
        self._roles: dict[str, int] | None = None
        self._ran = False
        self._decode: Any = None  # precision: SsdDecodeConfig of a network-only reference variant
        self._anchors: np.ndarray | None = None
        self._calibration: dict[str, Any] | None = None

    def load(self) -> None:
        labels = label_map_option(self.config.option("labels"))
        if self.config.model is None and self.config.precision is not None:
            self._reference_variant(labels)
        else:
            self.model_ref = resolve_model(self.config.model or DEFAULT_TFLITE_MODEL, label_map=labels)
        path = self.model_ref.path
        if not path.is_file():
            raise ModelError(f"{path} is not a file", "give a .tflite file")
        if labels is None and self.model_ref.manifest is None:
            beside = path.parent / "labelmap.txt"  # TFLite convention: line 0 '???', raw id c is line c+1
            if beside.is_file():
                self.model_ref = ModelRef(path, self.model_ref.name, label_map_from_file(beside, offset=1),
                                          self.model_ref.input_size)
        self._it, self.impl, self.notes = load_interpreter(path, self.config.threads)
        inp = self._it.get_input_details()
        if len(inp) != 1 or len(inp[0]["shape"]) != 4:
            raise ModelError(f"{path}: expected one image input [1,H,W,3], got {[tuple(d['shape']) for d in inp]}",
                             "give an SSD detection model")
        self._input = inp[0]
        _, h, w, _ = (int(v) for v in self._input["shape"])
        self.input_size = (w, h)
        self._dtype = np.dtype(self._input["dtype"])
        meta = self.model_ref.manifest.meta if self.model_ref.manifest else {}
        self._mean = float(self.config.option("mean", meta.get("mean", 127.5)))
        self._std = float(self.config.option("std", meta.get("std", 127.5)))
        self._outputs = self._it.get_output_details()
        self.label_map = self.model_ref.label_map
        if self._encoded_outputs():  # precision: the reference's network, decoded here
            return
        self._roles = identify_outputs(self._outputs)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A C-contiguous ``[1, H, W, 3]`` array of exactly the input tensor's dtype (``set_tensor`` copies it
        into the interpreter as it is)."""
        rgb = rgb_batch(shared_resize(frame_bgr, self.input_size))  # no-op resize when the runner did it
        if self._dtype == np.uint8:
            return rgb
        if self._dtype == np.int8:
            return (rgb.astype(np.int16) - 128).astype(np.int8)
        return ((rgb.astype(np.float32) - self._mean) / self._std).astype(self._dtype)

    def infer(self, inputs: np.ndarray) -> list[np.ndarray]:
        self._it.set_tensor(self._input["index"], inputs)
        self._it.invoke()
        self._ran = True
        return [self._it.get_tensor(d["index"]) for d in self._outputs]

    def _dequantized(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for d, v in zip(self._outputs, raw):
            scale, zero = d.get("quantization", (0.0, 0))
            out.append((v.astype(np.float32) - zero) * scale if scale and v.dtype != np.float32 else v)
        return out

    def postprocess(self, raw: list[np.ndarray], frame_size: tuple[int, int]) -> Detections:
        raw = self._dequantized(raw)
        if self._decode is not None:
            return self._decode_network(raw, frame_size)
        if self._roles is None:
            self._roles = identify_outputs(self._outputs, raw)
        assert self._roles is not None
        get = {role: np.asarray(raw[i]) for role, i in self._roles.items()}
        boxes = get["boxes"].reshape(-1, 4)
        n = min(int(get["count"].reshape(-1)[0]), len(boxes))
        return Detections.from_boxes(
            boxes[:n], get["scores"].reshape(-1)[:n], self.label_map.apply(get["classes"].reshape(-1)[:n]), frame_size,
            fmt="yxyx", normalized=True, label_space=self.label_map.space,
        )

    # batches ---------------------------------------------------------------------
    def batch_unsupported(self, size: int) -> str | None:
        """TFLite models have a fixed ``[1, H, W, 3]`` input. Resizing it is tried (and undone): where the
        interpreter refuses, its own words are the reason; where it accepts, the harness still has no batched
        path for TFLite (none of the models here could take one, so none could be tested)."""
        if size == 1:
            return None
        index = self._input["index"]
        shape = [int(v) for v in self._input["shape"]]
        try:
            self._it.resize_tensor_input(index, [size, *shape[1:]])
            self._it.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - RuntimeError / ValueError from the interpreter
            reason = f"the interpreter cannot resize the input to [{size}, {', '.join(map(str, shape[1:]))}]: " \
                     f"{str(exc).strip().splitlines()[0][:200]}"
        else:
            reason = (f"the interpreter accepts a [{size}, ...] input, but the harness has no batched TFLite path "
                      "(no model available to test one)")
        finally:
            self._it.resize_tensor_input(index, shape)
            self._it.allocate_tensors()
        return reason

    def placement(self) -> Placement:
        evidence = f"{self.impl} runs on the CPU ({self.config.threads or 'default'} threads; no delegate applied)"
        if self.config.device.is_accelerator:
            evidence += "; fallback: the harness applies no GPU delegate to TFLite, so the model ran on the CPU"
        if not self._ran:
            evidence += " (before any inference)"
        return Placement(self.config.device, "cpu", evidence)

    def close(self) -> None:
        self._it = None

    def thread_settings(self) -> ThreadSettings:
        """The interpreter has no getter for its thread count: the ``num_threads`` it was made with
        (-1 = the interpreter's own default)."""
        return ThreadSettings(configured={"num_threads": int(self.config.threads or -1)})

    def model_details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"interpreter": self.impl}
        if self.notes:
            d["interpreter_warnings"] = self.notes
        if self._roles:
            d["outputs"] = {role: str(self._outputs[i]["name"]) for role, i in self._roles.items()}
        d["input_dtype"] = str(self._dtype) if hasattr(self, "_dtype") else None
        if self._decode is not None:
            d["layout"] = "encoded"
        if self._calibration is not None:
            d["calibration"] = self._calibration
        return d

    # precision ---------------------------------------------------------------------------------
    def _reference_variant(self, labels: Any) -> Path:
        """The reference SSD converted to TFLite at the job's precision (from the conversion cache)."""
        from harness.data.models import DEFAULT_MODEL

        ref = resolve_model(DEFAULT_MODEL, role="graph", label_map=labels)
        options = {**self.config.options, "precision": self.config.precision}
        if TFLiteConverter.conversion_options(options)["precision"] == "int8":
            from harness.data.calibration import CalibrationSplit

            self._calibration = CalibrationSplit.from_options(options).record()
        path = use_reference_conversion(self, ref.path, options)
        self.model_ref = ModelRef(path, ref.name, ref.label_map, (300, 300), ref.manifest)
        return path

    def _encoded_outputs(self) -> bool:
        """Two outputs, box encodings ``[1,N,1,4]`` and logits ``[1,N,C]``: the reference SSD's network, whose
        anchors, box coder and NMS come from its pipeline.config (as ONNX Runtime's network cut)."""
        from backends import _ssd_decode as ssd

        shapes = [tuple(int(v) for v in d["shape"]) for d in self._outputs]
        if len(shapes) != 2 or shapes[0][-1] != 4 or len(shapes[1]) != 3:
            return False
        if self.model_ref is None or self.model_ref.manifest is None:
            raise ModelError(f"{self.model_ref.path if self.model_ref else '?'}: a network-only TFLite SSD (box "
                             "encodings and logits) needs its anchors", "give an SSD with TFLite_Detection_PostProcess")
        self._decode = ssd.decode_config_from_pipeline(self.model_ref.file("pipeline_config"))
        maps = ssd.default_feature_maps(self.input_size, self._decode.anchors.num_layers)  # type: ignore[arg-type]
        self._anchors = ssd.ssd_anchors(self._decode.anchors, maps)
        if len(self._anchors) != shapes[0][1]:
            raise ModelError(f"{len(self._anchors)} anchors for {shapes[0][1]} box encodings",
                             "the model is not the reference SSD's network")
        return True

    def _decode_network(self, raw: list[np.ndarray], frame_size: tuple[int, int]) -> Detections:
        from backends import _ssd_decode as ssd

        cfg = self._decode
        boxes = np.clip(ssd.decode_boxes(np.asarray(raw[0], np.float32).reshape(-1, 4), self._anchors,
                                         cfg.box_scales), 0.0, 1.0)
        scores = ssd.convert_scores(np.asarray(raw[1], np.float32).reshape(len(boxes), -1), cfg.score_converter,
                                    cfg.logit_scale)
        b, s, c = ssd.multiclass_nms(boxes, scores[:, 1:], score_threshold=cfg.score_threshold,
                                     iou_threshold=cfg.iou_threshold, max_per_class=cfg.max_per_class,
                                     max_total=cfg.max_total)
        return Detections.from_boxes(b, s, self.label_map.apply(c + 1), frame_size, fmt="xyxy", normalized=True,
                                     label_space=self.label_map.space)

    def precision_report(self) -> Any:
        """The interpreter's tensors: each convolution's input type (int8/uint8 = int8 compute); float
        convolutions whose weights come out of DEQUANTIZE from float16 compute fp32 from fp16 storage."""
        from backends.tflite_convert import tflite_precision

        effective, shares, evidence, weights = tflite_precision(self._it)
        from harness.core.precision import PrecisionReport

        return PrecisionReport(self.config.precision, effective, evidence, shares, weights)

    def model_cost(self) -> Any:
        from backends.tflite_convert import tflite_cost

        return tflite_cost(self._it, self.model_ref.path.name if self.model_ref else "?")
