"""OpenCV DNN (``cv2.dnn``) for TF frozen graphs + text graphs, ONNX models, and Caffe on OpenCV 4.x.

Three output conventions are turned into canonical detections:

* ``detection_output``: SSD ``DetectionOutput`` ``[1, 1, N, 7]`` rows (image id, label, score, x1, y1, x2, y2
  normalized, not clipped) from TF graphs read with their OpenCV text graph, or Caffe SSDs;
* ``scores_boxes``: two outputs, softmaxed scores ``[1, N, C]`` and decoded x1, y1, x2, y2 normalized boxes
  ``[1, N, 4]`` (UltraFace and other qfgaohao pytorch-ssd exports): score filter + ``cv2.dnn.NMSBoxesBatched``;
* ``family``: the same two outputs from the pytorch-ssd family's export (dusty-nv's Jetson ``onnx_export.py``,
  UltraFace): the family's mean/std, labels file beside the model and per-class hard NMS, shared with the other
  runtimes (:mod:`backends._family_decode`); an unknown ``.onnx`` with outputs ``scores``/``boxes`` is one;
* ``raw``: box encodings ``[1, N, 4]`` (dcx, dcy, dw, dh) and class logits/scores ``[1, N, C]`` of a model
  without a detection layer, decoded with the model's anchors (``--opt anchors=file.npy`` or ``ultraface``).

Speed: one ``blobFromImage`` per frame (it resizes, swaps channels, subtracts the mean and scales in one pass
into the NCHW blob), ``forward`` of only the output layers, vectorized numpy decoding.

Importers: OpenCV 5.1 has no TensorFlow (and no Caffe) importer (``readNetFromONNX``, ``readNetFromTFLite`` and
``readNetFromModelOptimizer`` remain). There the reference SSD runs through its ONNX conversion, the one
``harness convert`` makes for ONNX Runtime (tf2onnx, NMS inside: OpenCV 5.1's own engine runs it, outputs
``detection_boxes/scores/classes/num``, decoded as the ``od_api`` layout); a user's ``.pb`` or Caffe model is
one error naming the OpenCV version and both fixes (ONNX, or ``opencv-python<5.1`` in an environment).

Placement: the backend/target OpenCV really ends on. A CUDA request on a build without CUDA (the pip wheels)
or without a visible device would make OpenCV print a warning and quietly run on the CPU; the adapter checks
``cv2.getBuildInformation()`` and ``cv2.cuda.getCudaEnabledDeviceCount()`` first, runs on the CPU itself, and
reports the fallback with the reason. OpenCV 5's new engine runs CPU only, so a non-CPU backend selects the
classic engine.
"""

from __future__ import annotations

from collections import Counter

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends import _family_decode as family
from backends import _ssd_decode as ssd
from harness.data.cache import use_reference_conversion
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings, split_batch
from harness.core.errors import BackendUnavailable, ModelError
from harness.core.labels import LabelMap
from harness.data.models import DEFAULT_MODEL, ModelRef, label_map_option, resolve_model

FACE = LabelMap("face", {1: "face"})

BACKENDS = {
    "default": "DNN_BACKEND_DEFAULT", "opencv": "DNN_BACKEND_OPENCV", "cuda": "DNN_BACKEND_CUDA",
    "inference_engine": "DNN_BACKEND_INFERENCE_ENGINE", "openvino": "DNN_BACKEND_INFERENCE_ENGINE",
    "vkcom": "DNN_BACKEND_VKCOM", "vulkan": "DNN_BACKEND_VKCOM", "webnn": "DNN_BACKEND_WEBNN",
    "timvx": "DNN_BACKEND_TIMVX", "cann": "DNN_BACKEND_CANN",
}
TARGETS = {
    "cpu": "DNN_TARGET_CPU", "cpu_fp16": "DNN_TARGET_CPU_FP16", "opencl": "DNN_TARGET_OPENCL",
    "opencl_fp16": "DNN_TARGET_OPENCL_FP16", "cuda": "DNN_TARGET_CUDA", "cuda_fp16": "DNN_TARGET_CUDA_FP16",
    "vulkan": "DNN_TARGET_VULKAN", "myriad": "DNN_TARGET_MYRIAD", "npu": "DNN_TARGET_NPU",
}
#: OpenCV 5.0: auto | classic | new; 5.1: auto | opencv | ort (its classic engine is gone)
ENGINES = {"auto": "ENGINE_AUTO", "classic": "ENGINE_CLASSIC", "new": "ENGINE_NEW", "opencv": "ENGINE_OPENCV",
           "ort": "ENGINE_ORT"}
#: the readNetFrom* importers a cv2.dnn may have, by the format each reads
IMPORTERS = {"Tensorflow": "TensorFlow .pb", "Caffe": "Caffe", "ONNX": "ONNX", "TFLite": "TFLite",
             "ModelOptimizer": "OpenVINO IR", "Darknet": "Darknet", "Torch": "Torch7"}
#: the conversion options of the reference's ONNX form (ONNX Runtime's converter makes it; OpenCV reads it where
#: it has no TF importer): the full graph, NMS inside
REFERENCE_ONNX_OPTIONS = {"cut": "full"}
#: --opt score_fn= for decode=raw -> the score converter of backends._ssd_decode
SCORE_FNS = {"softmax": "softmax", "sigmoid": "sigmoid", "none": "identity"}


@dataclass(frozen=True)
class BlobSpec:
    """How a model wants its input blob and what its outputs mean (per known model; options override)."""

    size: tuple[int, int]  # (width, height)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    swap_rb: bool = False
    decode: str = "detection_output"
    label_map: LabelMap | None = None
    anchors: str | None = None
    score_fn: str = "softmax"  # for decode="raw": softmax | sigmoid | none (the model already normalized them)


#: Known models by asset name and by file name; a new model is described with --opt size= mean= ...
PRESETS: dict[str, BlobSpec] = {
    # the graph keeps its own x*2/255-1 (assets README): RGB, no mean, no scale
    "ssdlite-pedestrian": BlobSpec((300, 300), swap_rb=True),
    "frozen_inference_graph.pb": BlobSpec((300, 300), swap_rb=True),
    "opencv-face-ssd-res10": BlobSpec((300, 300), mean=(104.0, 117.0, 123.0), label_map=FACE),
    "opencv_face_detector_uint8.pb": BlobSpec((300, 300), mean=(104.0, 117.0, 123.0), label_map=FACE),
    "ultraface-rfb-320": BlobSpec((320, 240), (127.0, 127.0, 127.0), 1 / 128, True, "family", FACE),
    "version-RFB-320.onnx": BlobSpec((320, 240), (127.0, 127.0, 127.0), 1 / 128, True, "family", FACE),
    # the Caffe export ends before UltraFace's box decoding: raw encodings + softmaxed scores
    "RFB-320.caffemodel": BlobSpec((320, 240), (127.0, 127.0, 127.0), 1 / 128, True, "raw", FACE,
                                   anchors="ultraface", score_fn="none"),
}
#: companion text-graph roles a manifest may name for a TF graph
PBTXT_ROLES = ("opencv_pbtxt", "pbtxt", "config")


def _onnx_io(path: Path) -> tuple[str, list[Any], dict[str, list[Any]]] | None:
    """(input name, input shape, {output name: shape}) of an ONNX file, read with the ``onnx`` package (graph
    only, no weights); None where it is not installed or the file does not parse."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - OpenCV's own reader reports a bad file
        return None

    def dims(value: Any) -> list[Any]:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    weights = {t.name for t in graph.initializer}  # old exports list their weights as inputs too
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        return None
    return inputs[0].name, dims(inputs[0]), {o.name: dims(o) for o in graph.output}


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise BackendUnavailable(f"OpenCV is not installed ({exc})", "pip install -e '.[opencv]'") from exc
    if not hasattr(cv2, "dnn"):
        raise BackendUnavailable("this OpenCV build has no dnn module", "pip install opencv-python")
    return cv2


def importers(cv2: Any) -> list[str]:
    """The model formats this OpenCV's DNN module can read (``readNetFrom<Name>`` present), by name."""
    return [name for name in IMPORTERS if hasattr(cv2.dnn, f"readNetFrom{name}")]


def no_importer_error(cv2: Any, path: Path, fmt: str) -> ModelError:
    """The error for a model whose format this OpenCV cannot import, naming the version and both fixes."""
    have = ", ".join(IMPORTERS[n] for n in importers(cv2))
    return ModelError(
        f"{path.name} is a {fmt} model, and OpenCV {cv2.__version__} has no {fmt} importer (OpenCV 5.1 removed the "
        f"TensorFlow and Caffe importers; this one reads: {have})",
        "convert the model to ONNX (a TF graph: python -m tf2onnx.convert --graphdef model.pb --inputs ... "
        "--outputs ... --output model.onnx) and give the .onnx, or run it with an OpenCV that still reads it, in an "
        "environment: harness env create ocv50 'opencv-python<5.1', then --env ocv50",
    )


def cuda_status(cv2: Any) -> tuple[bool, int, str]:
    """(usable, device count, reason) for OpenCV's CUDA backend, from the build flags and the driver."""
    built = bool(re.search(r"NVIDIA CUDA:\s*YES", cv2.getBuildInformation()))
    try:
        count = int(cv2.cuda.getCudaEnabledDeviceCount())
    except (AttributeError, cv2.error):
        count = 0
    if not built:
        return False, count, ("this OpenCV build has no CUDA (getBuildInformation: no 'NVIDIA CUDA: YES'; the "
                              "pip wheels never have it): build OpenCV with -DWITH_CUDA=ON -DOPENCV_DNN_CUDA=ON")
    if count == 0:
        return False, 0, "OpenCV is built with CUDA but cv2.cuda.getCudaEnabledDeviceCount() is 0 (driver/GPU)"
    return True, count, f"CUDA build, {count} device(s)"


def _floats(value: Any, n: int, what: str) -> tuple[float, ...]:
    parts = [float(v) for v in re.split(r"[,x ]+", str(value).strip()) if v] if not isinstance(value, (list, tuple)) \
        else [float(v) for v in value]
    if len(parts) == 1 and n > 1:
        parts = parts * n
    if len(parts) != n:
        raise ModelError(f"option {what}={value!r}: expected {n} numbers", f"e.g. {what}=" + ",".join(["1"] * n))
    return tuple(parts)


class OpenCVDetector(Detector):
    name = "opencv"
    distributions = ("opencv-python", "opencv-python-headless", "opencv-contrib-python")
    known_options = {
        "backend": f"DNN backend: {' | '.join(BACKENDS)} (default from --device)",
        "target": f"DNN target: {' | '.join(TARGETS)} (default from --device)",
        "engine": f"OpenCV 5 engine: {' | '.join(ENGINES)}",
        "config": "the model's companion file: OpenCV text graph (.pbtxt) of a TF graph, or Caffe .prototxt",
        "pbtxt": "the OpenCV text graph of a TF graph (same as config=)",
        "size": "blob size WxH (needed for a model the harness does not know)",
        "mean": "blob mean per channel, e.g. 104,117,123",
        "scale": "blob scale factor, e.g. 0.0078125",
        "swap_rb": "true: swap BGR to RGB in the blob",
        "decode": "outputs: detection_output | scores_boxes | family | raw",
        "outputs": "output layer names, comma-separated (default: the unconnected outputs)",
        "anchors": "decode=raw: anchors .npy [N,4] cx,cy,w,h normalized, or ultraface",
        "score_fn": f"decode=raw: {' | '.join(SCORE_FNS)} applied to the class outputs",
        "candidate_score": "scores_boxes/raw: score threshold before NMS (default 0.05)",
        "nms_iou": "scores_boxes/raw: NMS IoU threshold (default 0.3)",
        "top_k": "scores_boxes/raw: boxes kept after NMS (default 200)",
        "labels": "label file (one name per line), or coco | person",
        **family.FAMILY_OPTIONS,
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self._net: Any = None
        self._out_names: list[str] = []
        self._ran = False
        self._in_effect: dict[str, str] = {}
        self._fallback_reason = ""
        self._family: family.FamilySettings | None = None
        self._importer = ""  # which readNetFrom* read the model (and why, for the ONNX route)

    # loading --------------------------------------------------------------------------------------------
    def load(self) -> None:
        cv2 = import_cv2()
        self._cv2 = cv2
        if self.config.threads:
            cv2.setNumThreads(int(self.config.threads))
        model = self.config.model or DEFAULT_MODEL
        self.model_ref = resolve_model(model)
        path = self.model_ref.path
        from backends.onnxruntime_convert import ONNXRuntimeConverter
        from backends.torch_formats import family_onnx, is_checkpoint

        if is_checkpoint(path):  # a pytorch-ssd family .pth: its Jetson export, cached
            path = family_onnx(ONNXRuntimeConverter, path, self.config.options)
            self.model_ref = ModelRef(path, self.model_ref.name, self.model_ref.label_map, self.model_ref.input_size)
            model = path.name
        if path.suffix.lower() in (".caffemodel", ".prototxt") and not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise ModelError(
                f"{path.name} is a Caffe model, and OpenCV {cv2.__version__} has no Caffe importer "
                "(OpenCV 5 removed it)",
                "use the model's ONNX export (UltraFace ships version-RFB-320.onnx), or run it on an "
                "OpenCV 4.x install: pip install 'opencv-python<5'",
            )
        if path.suffix.lower() == ".pb" and not hasattr(cv2.dnn, "readNetFromTensorflow"):
            if not self._is_reference(model):
                raise no_importer_error(cv2, path, "TensorFlow")
            path = self._reference_onnx()  # the reference SSD: its ONNX conversion, NMS inside
        self.spec = self._blob_spec(model, path)
        engine = self._choose_backend_target()
        self._net = self._read(path, engine)
        if (self._in_effect["backend"], self._in_effect["target"]) != ("default", "cpu"):
            # the defaults need no call (OpenCV 5's new engine warns on any setPreferableTarget)
            self._net.setPreferableBackend(getattr(cv2.dnn, BACKENDS[self._in_effect["backend"]]))
            self._net.setPreferableTarget(getattr(cv2.dnn, TARGETS[self._in_effect["target"]]))
        self._out_names = list(self._net.getUnconnectedOutLayersNames())
        named = self.config.option("outputs")
        if named:
            self._out_names = [s.strip() for s in str(named).split(",") if s.strip()]
        if self.spec.decode == "raw":
            self._anchors = self._load_anchors()
        self.label_map = label_map_option(self.config.option("labels")) or self.spec.label_map or \
            self.model_ref.label_map
        if self.spec.decode == "family":
            self._setup_family(path)
        self.input_size = self.spec.size

    def _setup_family(self, path: Path) -> None:
        """The family's NMS settings (and labels file beside the model) for ``decode=family``."""
        io = _onnx_io(path) if path.suffix.lower() == ".onnx" else None
        kind = family.recognise_export(*io) if io else None
        shape = io[2].get("scores") if io else None
        rows = shape[1] if shape and isinstance(shape[1], int) else None
        classes = shape[2] if shape and isinstance(shape[2], int) else None
        mean = tuple(self.spec.mean)
        option = self.config.option
        self._family = family.family_settings(
            kind or ("ultraface" if self.spec.label_map is FACE else "jetson"), self.spec.size, rows, classes,
            lambda key, default: option(key, {"mean": mean, "std": 1 / self.spec.scale}.get(key, default)), path)
        assert self.model_ref is not None
        if option("labels") is None and self.spec.label_map is None and self.model_ref.manifest is None:
            beside = family.labels_beside(path)
            if beside is not None:
                self.label_map = family.family_label_map(family.read_label_file(beside, classes), beside.stem)

    def _family_spec(self, path: Path) -> BlobSpec | None:
        """A pytorch-ssd family ``.onnx`` (``scores``/``boxes`` outputs) the presets don't name: its blob from
        the file's input shape and the family's mean/std (one scale: blobFromImage takes a scalar)."""
        io = _onnx_io(path) if path.suffix.lower() == ".onnx" else None
        kind = family.recognise_export(*io) if io else None
        if kind is None or io is None:
            return None
        shape = list(io[1])
        if not all(isinstance(v, int) for v in shape[2:]):
            return None
        settings = family.family_settings(kind, (int(shape[3]), int(shape[2])), io[2]["scores"][1], None,
                                          lambda key, default: self.config.option(key, default), path)
        if len(set(settings.std)) != 1:
            raise ModelError(f"{path.name}: per-channel std {settings.std} (OpenCV's blob takes one scale)",
                             "pass --opt scale=1/std (one number) and mean=R,G,B")
        return BlobSpec(settings.input_size, settings.mean, 1 / settings.std[0], True, "family")
    def _is_reference(self, model: str) -> bool:
        """Whether the job runs the reference SSD (by its asset name or its graph's path)."""
        if model == DEFAULT_MODEL:
            return True
        try:
            return resolve_model(DEFAULT_MODEL, role="graph").path.resolve() == self.model_ref.path.resolve()
        except Exception:  # noqa: BLE001 - no reference installed: then this is not it
            return False

    def _reference_onnx(self) -> Path:
        """The reference graph as ONNX for an OpenCV without a TensorFlow importer: ONNX Runtime's conversion
        from the one cache (made by ``harness convert`` in an environment with TensorFlow, read here as it is;
        an environment without tf2onnx cannot make it and says so). Recorded like any conversion."""
        from backends.onnxruntime_convert import ONNXRuntimeConverter

        path = use_reference_conversion(self, self.model_ref.path, REFERENCE_ONNX_OPTIONS,
                                             converter=ONNXRuntimeConverter)
        self._importer = (f"ONNX (the reference's ONNX conversion: OpenCV {self._cv2.__version__} has no TensorFlow "
                          "importer)")
        return path

    def _blob_spec(self, model: str, path: Path) -> BlobSpec:
        if path.suffix.lower() == ".onnx" and self._importer.startswith("ONNX (the reference"):
            # tf2onnx's graph: uint8 NHWC RGB of any size (it resizes itself), OD API outputs
            return BlobSpec((300, 300), swap_rb=True, decode="od_api", label_map=self.model_ref.label_map)
        spec = PRESETS.get(model) or PRESETS.get(path.name)
        opt = self.config.option
        if spec is None and opt("size") is None:
            spec = self._family_spec(path)
        if spec is None:
            if opt("size") is None:
                raise ModelError(f"{path.name}: unknown model, the input blob cannot be guessed",
                                 "describe it: --opt size=300x300 mean=104,117,123 scale=1 swap_rb=true "
                                 "decode=detection_output|scores_boxes|raw")
            spec = BlobSpec((300, 300))
        if self.model_ref and self.model_ref.manifest and self.model_ref.input_size:
            spec = replace(spec, size=tuple(self.model_ref.input_size))  # type: ignore[arg-type]
        if opt("size") is not None:
            w, h = _floats(opt("size"), 2, "size")
            spec = replace(spec, size=(int(w), int(h)))
        if opt("mean") is not None:
            spec = replace(spec, mean=_floats(opt("mean"), 3, "mean"))  # type: ignore[arg-type]
        if opt("scale") is not None:
            spec = replace(spec, scale=float(opt("scale")))
        if opt("swap_rb") is not None:
            spec = replace(spec, swap_rb=str(opt("swap_rb")).lower() in {"1", "true", "yes"})
        if opt("decode") is not None:
            if opt("decode") not in ("detection_output", "scores_boxes", "family", "raw"):
                raise ModelError(f"unknown decode={opt('decode')!r}",
                                 "decode=detection_output|scores_boxes|family|raw")
            spec = replace(spec, decode=str(opt("decode")))
        if opt("anchors") is not None:
            spec = replace(spec, anchors=str(opt("anchors")))
        return spec

    def _choose_backend_target(self) -> int | None:
        """Pick backend/target/engine from the device and options; fall back to CPU where CUDA can't run."""
        cv2 = self._cv2
        device = self.config.device
        backend = str(self.config.option("backend", "")).lower()
        target = str(self.config.option("target", "")).lower()
        if not backend and not target:
            if device.is_cuda_gpu:
                backend, target = "cuda", "cuda_fp16" if "fp16" in device else "cuda"
            elif device.startswith("opencl"):
                backend, target = "opencv", "opencl_fp16" if "fp16" in device else "opencl"
            else:
                backend, target = "default", "cpu"
        backend = backend or ("cuda" if target.startswith("cuda") else "default")
        target = target or ("cuda" if backend == "cuda" else "cpu")
        if self.config.precision == "fp16" and not self.config.option("target"):
            target = {"cpu": "cpu_fp16", "cuda": "cuda_fp16", "opencl": "opencl_fp16"}.get(target, target)
        for value, table, what in ((backend, BACKENDS, "backend"), (target, TARGETS, "target")):
            if value not in table or not hasattr(cv2.dnn, table[value]):
                known = [k for k, v in table.items() if hasattr(cv2.dnn, v)]
                raise ModelError(f"unknown OpenCV DNN {what} {value!r}", f"choose one of: {', '.join(known)}")
        self._requested = {"backend": backend, "target": target}
        reason = ""
        if backend == "cuda" or target.startswith("cuda"):
            ok, _, why = cuda_status(cv2)
            if not ok:
                reason = why
        elif target.startswith("opencl") and not cv2.ocl.haveOpenCL():
            reason = "OpenCL requested but cv2.ocl.haveOpenCL() is False (no OpenCL runtime/device)"
        if reason:
            self._fallback_reason = reason
            backend, target = "opencv", "cpu"
        self._in_effect = {"backend": backend, "target": target}
        engine_opt = self.config.option("engine")
        if not hasattr(cv2.dnn, "ENGINE_AUTO"):  # OpenCV 4.x: one engine
            if engine_opt:
                raise ModelError(f"engine={engine_opt} needs OpenCV 5 (found {cv2.__version__})", "drop the option")
            self._in_effect["engine"] = "classic (OpenCV 4)"
            return None
        here = [k for k, v in ENGINES.items() if hasattr(cv2.dnn, v)]
        if engine_opt:
            name = str(engine_opt).lower()
            if name not in here:
                raise ModelError(f"unknown engine {engine_opt!r} for OpenCV {cv2.__version__}",
                                 f"engine={'|'.join(here)}")
        else:  # 5.0's new engine is CPU only: any other backend/target needs its classic one (5.1 has none)
            cpu = backend in ("default", "opencv") and target == "cpu"
            name = "auto" if cpu or "classic" not in here else "classic"
        self._in_effect["engine"] = name
        return int(getattr(cv2.dnn, ENGINES[name]))

    def _read(self, path: Path, engine: int | None) -> Any:
        cv2 = self._cv2
        extra = () if engine is None else (engine,)
        suffix = path.suffix.lower()
        if suffix in (".caffemodel", ".prototxt"):  # OpenCV 4.x only (checked in load)
            proto = Path(self.config.option("config") or path.with_suffix(".prototxt"))
            weights = path if suffix == ".caffemodel" else path.with_suffix(".caffemodel")
            self._importer = "Caffe"
            return self._guarded(lambda: cv2.dnn.readNetFromCaffe(str(proto), str(weights)), path)
        if suffix == ".onnx":
            self._importer = self._importer or "ONNX"
            return self._guarded(lambda: cv2.dnn.readNetFromONNX(str(path), *extra), path)
        if suffix == ".pb":
            self._importer = "TensorFlow"
            pbtxt = self._text_graph()
            if pbtxt is None:
                return self._guarded(lambda: cv2.dnn.readNetFromTensorflow(str(path), "", *extra), path,
                                     no_pbtxt=True)
            return self._guarded(lambda: cv2.dnn.readNetFromTensorflow(str(path), str(pbtxt), *extra), path)
        raise ModelError(f"{path.name}: OpenCV DNN reads .pb (+ .pbtxt), .onnx, or Caffe on OpenCV 4",
                         "a SavedModel goes to --backend tf2, a .tflite to --backend tflite")

    def _text_graph(self) -> Path | None:
        given = self.config.option("config") or self.config.option("pbtxt")
        if given:
            p = Path(str(given))
            if not p.is_file():
                raise ModelError(f"text graph not found: {p}", "give the .pbtxt made for this graph")
            return p
        assert self.model_ref is not None
        if self.model_ref.manifest is not None:
            for role in PBTXT_ROLES:
                if role in self.model_ref.manifest.files:
                    return self.model_ref.file(role)
        sibling = sorted(self.model_ref.path.parent.glob("*.pbtxt"))
        return sibling[0] if len(sibling) == 1 else None

    def _guarded(self, read: Any, path: Path, no_pbtxt: bool = False) -> Any:
        cv2 = self._cv2
        try:
            net = read()
        except cv2.error as exc:
            msg = str(exc).strip().splitlines()
            detail = next((ln for ln in msg if "error:" in ln), msg[-1] if msg else "")
            if no_pbtxt:
                raise ModelError(
                    f"OpenCV cannot import {path.name} without a text graph: {detail[:200]}",
                    "an Object Detection API graph needs its OpenCV text graph (without it OpenCV fails in the "
                    "graph's anchor generator, MultipleGridAnchorGenerator): "
                    "make it with OpenCV's samples/dnn/tf_text_graph_ssd.py --input graph.pb "
                    "--config pipeline.config --output graph.pbtxt and pass --opt config=graph.pbtxt",
                ) from exc
            raise ModelError(f"OpenCV {cv2.__version__} cannot read {path.name}: {detail[:300]}",
                             "check that the file is complete and of the format its suffix says "
                             "(and that a .pbtxt belongs to this .pb)") from exc
        if net.empty():
            raise ModelError(f"OpenCV read {path.name} as an empty network", "check the file")
        return net

    def _load_anchors(self) -> np.ndarray:
        """The raw decoder's anchors as ymin, xmin, ymax, xmax (an ``.npy`` holds the cx, cy, w, h priors of
        Caffe SSD / pytorch-ssd exports, the convention of the models this decode mode is for)."""
        src = self.spec.anchors
        if src == "ultraface":
            return ssd.ultraface_priors(*self.spec.size)
        if src and Path(src).is_file():
            return ssd.anchors_from_centers(np.load(src)).astype(np.float32)
        raise ModelError("decode=raw needs the model's anchors",
                         "--opt anchors=anchors.npy ([N,4] cx,cy,w,h normalized) or anchors=ultraface")

    # the three stages -----------------------------------------------------------------------------------
    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        s = self.spec
        if s.decode == "od_api":  # the converted graph's input: uint8 NHWC RGB, resized as blobFromImage does
            return self._rgb_uint8([frame_bgr])
        return self._cv2.dnn.blobFromImage(frame_bgr, s.scale, s.size, s.mean, s.swap_rb, False)

    def _rgb_uint8(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        cv2 = self._cv2
        size = self.spec.size
        return np.ascontiguousarray(np.stack([
            cv2.cvtColor(f if (f.shape[1], f.shape[0]) == size else cv2.resize(f, size), cv2.COLOR_BGR2RGB)
            for f in frames_bgr]))

    def infer(self, inputs: np.ndarray) -> list[np.ndarray]:
        self._net.setInput(inputs)
        outs = self._net.forward(self._out_names)
        self._ran = True
        return list(outs)

    def postprocess(self, raw: list[np.ndarray], frame_size: tuple[int, int]) -> Detections:
        decode = self.spec.decode
        if decode == "od_api":  # detection_boxes (ymin, xmin, ymax, xmax), scores, classes, num
            named = dict(zip(self._out_names, raw))
            get = {key: np.asarray(named[f"detection_{key}:0" if key != "num" else "num_detections:0"])
                   for key in ("boxes", "scores", "classes", "num")}
            n = int(get["num"].reshape(-1)[0])
            return Detections.from_boxes(get["boxes"].reshape(-1, 4)[:n], get["scores"].reshape(-1)[:n],
                                         self.label_map.apply(get["classes"].reshape(-1)[:n]), frame_size,
                                         fmt="yxyx", normalized=True, label_space=self.label_map.space)
        if decode == "detection_output":
            out = raw[0]
            if out.ndim != 4 or out.shape[-1] != 7:
                raise ModelError(f"expected a DetectionOutput [1,1,N,7], the model gave {out.shape}",
                                 "use --opt decode=scores_boxes or decode=raw for models without that layer")
            rows = out.reshape(-1, 7)
            rows = rows[rows[:, 2] > 0]
            return Detections.from_boxes(rows[:, 3:7], rows[:, 2], self.label_map.apply(rows[:, 1]), frame_size,
                                         fmt="xyxy", normalized=True, label_space=self.label_map.space)
        scores, boxes = self._split_scores_boxes(raw)
        if decode == "family":
            assert self._family is not None
            b, s, c = family.family_postprocess(scores, boxes, self._family)
            return Detections.from_boxes(b, s, self.label_map.apply(c), frame_size, fmt="xyxy", normalized=True,
                                         label_space=self.label_map.space)
        if decode == "raw":
            if len(boxes) != len(self._anchors):
                raise ModelError(f"the model emits {len(boxes)} box encodings but {len(self._anchors)} anchors "
                                 "were given", "give the anchors of this model and input size (--opt anchors=...)")
            # the Caffe SSD / pytorch-ssd coder: (dcx, dcy, dw, dh), variances 0.1 / 0.2 = scales 10 / 5
            boxes = ssd.decode_boxes(boxes, self._anchors, (10.0, 10.0, 5.0, 5.0), order="xywh").astype(np.float32)
            mode = str(self.config.option("score_fn", self.spec.score_fn))
            if mode not in SCORE_FNS:
                raise ModelError(f"unknown score_fn={mode!r}", f"score_fn={'|'.join(SCORE_FNS)}")
            scores = ssd.convert_scores(scores, SCORE_FNS.get(mode, mode)).astype(np.float32)
        return self._nms(scores, boxes, frame_size)

    # batches: blobFromImages makes one [N, 3, H, W] blob ---------------------------
    def batch_unsupported(self, size: int) -> str | None:
        if size > 1 and self.spec.decode == "od_api":
            return ("the reference's ONNX conversion (the OpenCV 5.1 route) is run one frame per call here: its "
                    "graph's outputs hold one image's boxes")
        return None  # OpenCV DNN sizes every layer from the blob it is given

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        s = self.spec
        if s.decode == "od_api":
            return self._rgb_uint8(frames_bgr)
        return self._cv2.dnn.blobFromImages(list(frames_bgr), s.scale, s.size, s.mean, s.swap_rb, False)

    def postprocess_batch(self, raw: list[np.ndarray], frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """DetectionOutput lists every image's rows in one [1, 1, K, 7] table, its first column the image's
        index in the batch; the other decoders' outputs have the batch on their first axis."""
        n = len(frame_sizes)
        if self.spec.decode == "detection_output":
            rows = np.asarray(raw[0]).reshape(-1, 7)
            per_image = [[rows[rows[:, 0] == i][None, None]] for i in range(n)]
        else:
            per_image = split_batch(raw, n)
        return [self.postprocess(one, size) for one, size in zip(per_image, frame_sizes)]

    def _split_scores_boxes(self, raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if len(raw) != 2:
            raise ModelError(f"decode={self.spec.decode} needs two outputs (scores, boxes); got {len(raw)}",
                             "name them with --opt outputs=scores_name,boxes_name")
        a, b = (np.asarray(r).reshape(-1, r.shape[-1]) for r in raw)
        if a.shape[1] == 4 and b.shape[1] != 4:
            a, b = b, a
        if len(a) != len(b):
            raise ModelError(f"scores {a.shape} and boxes {b.shape} differ in count", "check --opt outputs=")
        return a, b

    def _nms(self, scores: np.ndarray, boxes: np.ndarray, frame_size: tuple[int, int]) -> Detections:
        """Per-class score filter + NMS (cv2.dnn.NMSBoxesBatched), all candidates at once."""
        cv2 = self._cv2
        threshold = float(self.config.option("candidate_score", 0.05))
        iou = float(self.config.option("nms_iou", 0.3))
        top_k = int(self.config.option("top_k", 200))
        fg = scores[:, 1:]  # class 0 is background
        idx, cls = np.nonzero(fg > threshold)
        if len(idx) == 0:
            return Detections.empty(frame_size, self.label_map.space)
        w, h = frame_size
        px = boxes[idx] * np.array([w, h, w, h], dtype=np.float32)
        xywh = np.concatenate([px[:, :2], px[:, 2:] - px[:, :2]], axis=1)
        cand_scores = fg[idx, cls]
        keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), cand_scores.tolist(), (cls + 1).tolist(), threshold, iou,
                                       top_k=top_k)
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        return Detections.from_boxes(px[keep], cand_scores[keep], self.label_map.apply(cls[keep] + 1), frame_size,
                                     fmt="xyxy", label_space=self.label_map.space)

    # reporting ------------------------------------------------------------------------------------------
    def _layer_targets(self) -> dict[str, int]:
        """What each layer ended on (``Layer.preferableTarget``, set by OpenCV after it chose), by target."""
        names = {int(getattr(self._cv2.dnn, v)): k for k, v in TARGETS.items() if hasattr(self._cv2.dnn, v)}
        counts: dict[str, int] = {}
        try:
            layer_names = self._net.getLayerNames()
        except self._cv2.error:
            return counts
        for name in layer_names:
            try:
                t = int(self._net.getLayer(name).preferableTarget)
            except (self._cv2.error, AttributeError):
                continue
            key = names.get(t, str(t))
            counts[key] = counts.get(key, 0) + 1
        return counts

    def placement(self) -> Placement:
        if not self._ran:
            return Placement(self.config.device, "unknown", "no inference ran yet")
        eff = self._in_effect
        layers = self._layer_targets()
        gpu_layers = sum(n for k, n in layers.items() if k.startswith(("cuda", "opencl", "vulkan")))
        total = sum(layers.values())
        on_accel = eff["target"] != "cpu" and eff["target"] != "cpu_fp16" and (total == 0 or gpu_layers > total / 2)
        actual = ("gpu:0" if eff["target"].startswith("cuda") else eff["target"]) if on_accel else "cpu"
        cuda_why = cuda_status(self._cv2)[2]
        evidence = (f"OpenCV {self._cv2.__version__}: requested backend={self._requested['backend']} "
                    f"target={self._requested['target']}; in effect backend={eff['backend']} "
                    f"target={eff['target']} engine={eff['engine']}; layers' preferableTarget: "
                    + (", ".join(f"{k} {v}" for k, v in layers.items()) or "n/a")
                    + f"; threads {self._cv2.getNumThreads()}")
        if self._fallback_reason:
            evidence += f"; FALLBACK to CPU: {self._fallback_reason}"
        else:
            evidence += f"; CUDA: {cuda_why}"
        shares = {k: v / total for k, v in layers.items()} if total else {}
        return Placement(self.config.device, actual, evidence, shares)

    def runtime_versions(self) -> dict[str, str]:
        try:
            cv2 = getattr(self, "_cv2", None) or import_cv2()
        except BackendUnavailable:
            return {}
        return {"opencv": cv2.__version__, "opencv_major": cv2.__version__.split(".")[0],
                "opencv_cuda_devices": str(cuda_status(cv2)[1]), "opencv_importers": ",".join(importers(cv2))}

    def thread_settings(self) -> ThreadSettings:
        """``cv2.getNumThreads()``: OpenCV's own count of the threads its parallel loops use."""
        cv2 = getattr(self, "_cv2", None)
        if cv2 is None:
            return super().thread_settings()
        return ThreadSettings(in_effect={"threads": int(cv2.getNumThreads())})

    # precision ---------------------------------------------------------------------------------
    def precision_report(self) -> Any:
        """The layers' targets as OpenCV set them, read with OpenCV's own rule for the CPU: its fp16 CPU path
        exists only on ARM with NEON FP16, elsewhere a ``cpu_fp16`` net computes fp32 (measured here: the
        scores of cpu and cpu_fp16 nets differ by 2e-7, fp16 would give ~1e-3); int8 layers are int8."""
        from harness.core.precision import PrecisionReport, dominant, shares_text

        layers = self._layer_targets()
        features = str(self._cv2.getCPUFeaturesLine())
        neon_fp16 = "NEON_FP16" in features.replace("-", "_")
        counts: Counter = Counter()
        for target, n in layers.items():
            fp16 = target in ("cuda_fp16", "opencl_fp16") or (target == "cpu_fp16" and neon_fp16)
            counts["fp16" if fp16 else "fp32"] += n
        types = {self._net.getLayer(name).type for name in self._net.getLayerNames()}
        int8 = sorted(t for t in types if "Int8" in t)
        if int8:
            counts = Counter({"int8": sum(counts.values())})
        effective, shares = dominant(counts)
        evidence = (f"layers' preferableTarget: {', '.join(f'{k} {v}' for k, v in layers.items()) or 'n/a'}; "
                    + shares_text(shares, "of the layers"))
        if "cpu_fp16" in layers and not neon_fp16:
            evidence += (f"; OpenCV computes fp16 on the CPU only on ARM with NEON FP16 (this CPU: {features.strip()}),"
                         " so the cpu_fp16 target runs fp32 here")
        if int8:
            evidence += f"; int8 layers: {', '.join(int8)}"
        return PrecisionReport(self.config.precision, effective, evidence, shares)

    def model_details(self) -> dict[str, Any]:
        if self._net is None:
            return {}
        s = self.spec
        return {"blob": {"size": list(s.size), "mean": list(s.mean), "scale": s.scale, "swap_rb": s.swap_rb},
                "decode": s.decode, "outputs": list(self._out_names), "backend_target": dict(self._in_effect),
                "importer": self._importer, "importers": importers(self._cv2)}
