"""OpenVINO: the reference SSD from its ONNX conversion, ONNX files and OpenVINO IR (``.xml`` + ``.bin``).

With no ``--model`` the reference frozen graph's ONNX form comes from the one conversion cache (the file
ONNX Runtime runs, :func:`harness.data.cache.reference_conversion`), cut as ``--opt cut=`` says: ``full`` (the
graph's own NMS inside, as ONNX Runtime runs it), ``network`` or ``body`` (boxes decoded in the harness,
:mod:`backends._ssd_decode`). The int8 variant is NNCF's post-training quantization of the ``body`` cut
(NNCF cannot follow the full graph's NMS loop), calibrated on the never-scored split and cached as IR
(:mod:`backends.openvino_convert`).

Precision is a compile setting here, and the trap this backend exists to show: OpenVINO's CPU plugin infers
in bf16 **by default** on CPUs with AMX or AVX-512 BF16, and compiles a bf16 or f16 request as f32 where the
CPU has neither. So the harness always sets ``INFERENCE_PRECISION_HINT`` (f32 when no precision is asked;
``--precision auto`` leaves OpenVINO's default), and reads back what the compiled model says: its
``INFERENCE_PRECISION_HINT`` and the ``runtimePrecision`` of each convolution in ``get_runtime_model()``.

Device: ``cpu`` -> ``CPU``; ``gpu``/``gpu:N``/``cuda`` -> ``GPU``/``GPU.N`` (OpenVINO's GPU plugin drives
Intel GPUs; NVIDIA GPUs are not among its devices); ``npu`` -> ``NPU``. A device OpenVINO does not list is
compiled on the CPU and reported as a fallback; placement is the compiled model's ``EXECUTION_DEVICES``.
The input shape is made static (``[1, 300, 300, 3]`` for the reference): OpenVINO compiles static shapes
best, so ``native`` preprocessing resizes to the network's input with OpenCV, like ``shared``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends import _family_decode as family
from backends import _ssd_decode as ssd
from backends._onnx_export import DEFAULT_OPSET
from backends.onnxruntime_convert import ONNXRuntimeConverter
from backends.openvino_convert import OpenVINOConverter
from backends.openvino_convert import model_cost as ov_model_cost
from harness.data.cache import use_reference_conversion
from harness.data.calibration import CalibrationSplit
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings
from harness.core.device import Device
from harness.core.errors import BackendUnavailable, ModelError
from harness.data.models import DEFAULT_MODEL, ModelRef, label_map_option, resolve_model
from harness.data.preprocess import rgb_batch, shared_resize

OD_API_KEYS = {"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes",
               "num": "num_detections"}
#: --precision -> INFERENCE_PRECISION_HINT (None: leave OpenVINO's own default)
HINTS = {None: "f32", "fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32", "auto": None}
PERFORMANCE_HINTS = ("latency", "throughput", "cumulative_throughput", "none")
#: runtime-model layer types that do the network's arithmetic (their runtimePrecision is the compute's)
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution", "Gemm")


def import_ov() -> Any:
    """OpenVINO, imported with its usage telemetry off (backends._telemetry: no ``~/intel`` files, no sender)."""
    from backends._telemetry import frameworks_telemetry_off

    try:
        with frameworks_telemetry_off():
            import openvino as ov
    except ImportError as exc:
        raise BackendUnavailable(f"openvino is not installed ({exc})", "pip install -e '.[openvino]'") from exc
    return ov


def ov_device(requested: str) -> str:
    """The OpenVINO device name for a harness device (``gpu:1`` -> ``GPU.1``)."""
    device = Device(requested)
    if device.startswith("npu"):
        return "NPU"
    if device.is_accelerator:
        return f"GPU.{device.index}" if ":" in device else "GPU"
    return "CPU"


def _precision_word(element_type: Any) -> str:
    from harness.core.precision import precision_of_type

    return precision_of_type(str(element_type).lower()) or str(element_type)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


class OpenVINODetector(Detector):
    name = "openvino"
    distributions: ClassVar[tuple[str, ...]] = ("openvino", "nncf")
    modules: ClassVar[tuple[str, ...]] = ("openvino",)
    converter = OpenVINOConverter
    known_options: ClassVar[dict[str, str]] = {
        "cut": "reference model: full (NMS inside the graph; default) | network | body (the network after the "
               "graph's preprocessor; the int8 variant's default)",
        "opset": f"reference conversion: ONNX opset (default {DEFAULT_OPSET})",
        "hint": "PERFORMANCE_HINT: latency (default) | throughput | cumulative_throughput | none",
        "streams": "NUM_STREAMS (default: what the performance hint picks)",
        "pinning": "ENABLE_CPU_PINNING true | false (default: OpenVINO's choice)",
        "cache_dir": "CACHE_DIR for compiled blobs (default: none, every load compiles)",
        "labels": "label file (one name per line), or coco | person",
        "input_size": "WxH of a model with a dynamic input (the reference: 300x300)",
        "mean": "float inputs: mean per channel (default: 127.5 for the reference body cut, else 127)",
        "std": "float inputs: std per channel (default: 127.5 for the reference body cut, else 128)",
        "pipeline_config": "network-only models: the OD API pipeline.config with anchors, box coder, NMS",
        "calibration": "int8 variant: calibration frames' source, asset or path (default coco128; never scored)",
        "calibration_frames": "int8 variant: how many frames of it calibrate (default 100)",
        **family.FAMILY_OPTIONS,
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self._ov: Any = None
        self._core: Any = None
        self._compiled: Any = None
        self._request: Any = None
        self.model_path: Path | None = None
        self._cut = ""
        self.layout = ""
        self._roles: dict[str, int] = {}
        self._decode: ssd.SsdDecodeConfig | None = None
        self._anchors: np.ndarray | None = None
        self._family: family.FamilySettings | None = None
        self._device_note = ""
        self._device_asked = ""
        self._calibration: dict[str, Any] | None = None
        self._model: Any = None
        self._ran = False

    # model ----------------------------------------------------------------------------------------------
    def _reference(self) -> tuple[Path, ModelRef]:
        """The reference SSD's file: ONNX Runtime's ONNX conversion, or this backend's int8 IR."""
        ref = resolve_model(DEFAULT_MODEL, role="graph")
        options = dict(self.config.options)
        if self.config.precision == "int8":
            options["precision"] = "int8"
            self._calibration = CalibrationSplit.from_options(options).record()
            self._cut = OpenVINOConverter.conversion_options(options)["cut"]
            return use_reference_conversion(self, ref.path, options), ref
        self._cut = str(options.get("cut", "full"))
        onnx = {k: options[k] for k in ("cut", "opset") if k in options}
        return use_reference_conversion(self, ref.path, onnx, converter=ONNXRuntimeConverter), ref

    def _resolve(self) -> None:
        labels = label_map_option(self.config.option("labels"))
        if self.config.model:
            self.model_ref = resolve_model(self.config.model, label_map=labels)
            self.model_path = self.model_ref.path
            from backends.torch_formats import family_onnx, is_checkpoint

            if is_checkpoint(self.model_path):  # a pytorch-ssd family .pth: its Jetson export, cached
                self.model_path = family_onnx(ONNXRuntimeConverter, self.model_path, self.config.options)
                self.model_ref = ModelRef(self.model_path, self.model_ref.name, self.model_ref.label_map,
                                          self.model_ref.input_size)
        else:
            self.model_path, ref = self._reference()
            self.model_ref = ModelRef(ref.path, ref.name, labels or ref.label_map, ref.input_size or (300, 300),
                                      ref.manifest)
        path = self.model_path
        if not path.is_file():
            raise ModelError(f"{path} is not a file", "give an OpenVINO IR .xml (its .bin beside it) or an .onnx file")
        if path.suffix.lower() not in (".xml", ".onnx"):
            raise ModelError(f"{path.name}: OpenVINO reads IR (.xml + .bin) and ONNX (.onnx) files here",
                             "convert the model first (ovc, or --backend tf1/tf2 for TensorFlow graphs)")
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            raise ModelError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it",
                             "keep the IR's .xml and .bin together, with the same name")

    def _read(self) -> Any:
        assert self.model_path is not None
        try:
            return self._core.read_model(str(self.model_path))
        except Exception as exc:  # RuntimeError from the IR/ONNX frontends
            text = " ".join(str(exc).split())[:300]
            raise ModelError(
                f"OpenVINO cannot read {self.model_path}: {text}",
                "give an intact IR (.xml with the .bin it was saved with) or a valid .onnx file; a frozen graph "
                "goes to --backend tf1; omit --model for the reference SSD",
            ) from exc

    def load(self) -> None:
        ov = self._ov = import_ov()
        logging.getLogger("openvino").setLevel(logging.ERROR)
        self._core = ov.Core()
        self._resolve()
        model = self._read()
        self._setup_input(model)
        self._setup_outputs(model)
        self._model = model
        device = self._device()
        try:
            self._compiled = self._core.compile_model(model, device, self._compile_config(device))
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot compile {self.model_path} for {device}: "
                             f"{' '.join(str(exc).split())[:300]}",
                             "check the model (ovc/benchmark_app on it) or try another device") from exc
        self._request = self._compiled.create_infer_request()
        if self.layout == "encoded":
            self._setup_anchors()

    def _device(self) -> str:
        """The OpenVINO device for the job's device; the CPU, with the reason kept, when OpenVINO lacks it."""
        wanted = ov_device(self.config.device)
        self._device_asked = wanted
        available = list(self._core.available_devices)
        if wanted == "CPU" or wanted in available or (wanted == "GPU" and any(d.startswith("GPU") for d in available)):
            return wanted
        self._device_note = (f"OpenVINO lists the devices {available}, not {wanted} (its GPU plugin drives Intel "
                             "GPUs through OpenCL/Level Zero; NVIDIA GPUs are not among them): compiled for CPU")
        return "CPU"

    def _compile_config(self, device: str) -> dict[str, Any]:
        opt = self.config.option
        config: dict[str, Any] = {}
        hint = HINTS.get(self.config.precision, "f32")
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        perf = str(opt("hint", "latency")).lower()
        if perf not in PERFORMANCE_HINTS:
            raise ModelError(f"unknown hint {perf!r}", f"--opt hint={' | '.join(PERFORMANCE_HINTS)}")
        if perf != "none":
            config["PERFORMANCE_HINT"] = perf.upper()
        if device == "CPU":
            if self.config.threads:
                config["INFERENCE_NUM_THREADS"] = int(self.config.threads)
            if opt("pinning") is not None:
                config["ENABLE_CPU_PINNING"] = _truthy(opt("pinning"))
        if opt("streams") is not None:
            config["NUM_STREAMS"] = str(opt("streams"))
        if opt("cache_dir"):
            config["CACHE_DIR"] = str(opt("cache_dir"))
        return config

    # input ----------------------------------------------------------------------------------------------
    def _setup_input(self, model: Any) -> None:
        assert self.model_ref is not None
        inputs = model.inputs
        if len(inputs) != 1:
            raise ModelError(f"{self.model_path} has {len(inputs)} inputs ({', '.join(i.get_any_name() for i in inputs)})",
                             "give a detector with a single image input")
        port = inputs[0]
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise ModelError(f"{self.model_path}: input {port.get_any_name()} has shape {shape}, not an image batch",
                             "give a detector whose input is [1,H,W,3] or [1,3,H,W]")
        dims = [d.get_length() if d.is_static else None for d in shape]
        self._nchw = dims[1] in (1, 3) and dims[3] not in (1, 3)
        h, w = (dims[2], dims[3]) if self._nchw else (dims[1], dims[2])
        from backends.onnxruntime_ort import parse_size

        size = parse_size(self.config.option("input_size")) or (
            (w, h) if w and h else None) or self.model_ref.input_size
        if size is None:
            raise ModelError(f"{self.model_path}: the input size is dynamic ({shape})",
                             "pass --opt input_size=WxH (OpenVINO compiles one static shape)")
        self.input_size = (int(size[0]), int(size[1]))
        static = [1, 3, self.input_size[1], self.input_size[0]] if self._nchw else [1, self.input_size[1],
                                                                                       self.input_size[0], 3]
        if any(d is None for d in dims) or dims != static:
            try:
                model.reshape({port.get_any_name(): static})
            except Exception as exc:
                raise ModelError(f"{self.model_path}: cannot reshape its input to {static}: {exc}",
                                 "pass --opt input_size=WxH of the network's input") from exc
        self._dtype = np.dtype(port.get_element_type().to_dtype()).type
        if self._dtype not in (np.uint8, np.float32, np.float16):
            raise ModelError(f"{self.model_path}: input type {port.get_element_type()} is not supported",
                             "give a model with a uint8 or float image input")
        meta = self.model_ref.manifest.meta if self.model_ref.manifest else {}
        if not self.config.model and self._cut == "body":  # the graph's own x*2/255-1
            meta = {**meta, "mean": 127.5, "std": 127.5}
        from backends.onnxruntime_ort import _channels  # one number, "R,G,B" or a manifest's list

        self._mean = _channels(self.config.option("mean", meta.get("mean", 127.0)))
        self._std = _channels(self.config.option("std", meta.get("std", 128.0)))
        self.label_map = self.model_ref.label_map

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A C-contiguous array of exactly the compiled input's type and layout (OpenVINO then reads it in
        place: ``share_inputs``)."""
        frame_bgr = shared_resize(frame_bgr, self.input_size)  # a no-op when the runner already resized
        if self._dtype == np.uint8 and not self._nchw:
            return rgb_batch(frame_bgr)
        img = rgb_batch(frame_bgr)
        if self._dtype != np.uint8:
            img = ((img.astype(np.float32) - self._mean) / self._std).astype(self._dtype, copy=False)
        if self._nchw:
            img = img.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(img)

    # outputs --------------------------------------------------------------------------------------------
    def _setup_outputs(self, model: Any) -> None:
        names = [o.get_any_name() for o in model.outputs]
        od = {}
        for role, key in OD_API_KEYS.items():
            hits = [i for i, n in enumerate(names) if n.split(":", 1)[0].endswith(key)]
            if hits:
                od[role] = hits[0]
        if len(od) == 4:
            self.layout, self._roles = "od_api", od
            return
        shapes = [o.get_partial_shape() for o in model.outputs]
        box = [i for i, s in enumerate(shapes) if s.rank.is_static and s[s.rank.get_length() - 1].is_static
               and s[s.rank.get_length() - 1].get_length() == 4]
        score = [i for i, s in enumerate(shapes) if i not in box and s.rank.is_static and s.rank.get_length() == 3]
        if len(box) != 1 or len(score) != 1:
            raise ModelError(
                f"{self.model_path}: the outputs don't fit an SSD detector ({dict(zip(names, map(str, shapes)))})",
                "give an SSD with the OD API detection_* outputs, or one box-encoding output [1,N,(1,)4] and one "
                "score output [1,N,C] with --opt pipeline_config=... for its anchors",
            )
        self._roles = {"boxes": box[0], "scores": score[0]}
        if self._setup_family(model, names, shapes):
            return
        self.layout = "encoded"
        pipeline = self.config.option("pipeline_config")
        if pipeline is None and not self.config.model:
            pipeline = str(resolve_model(DEFAULT_MODEL, role="pipeline_config").path)
        if pipeline is None:
            raise ModelError(f"{self.model_path}: a network-only SSD needs its anchors and box coder",
                             "pass --opt pipeline_config=path/to/pipeline.config")
        try:
            self._decode = ssd.decode_config_from_pipeline(Path(pipeline))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the SSD settings from {pipeline}: {exc}",
                             "give the model's OD API pipeline.config") from exc

    def _setup_family(self, model: Any, names: list[str], shapes: list[Any]) -> bool:
        """The pytorch-ssd family's export (dusty-nv's ``input_0`` / UltraFace's ``input`` -> ``scores``,
        ``boxes``): its mean/std, labels file beside it and hard NMS (:mod:`backends._family_decode`)."""
        dims = [[d.get_length() if d.is_static else None for d in s] for s in shapes]
        port = model.inputs[0]
        kind = family.recognise_export(port.get_any_name(), list(port.get_partial_shape()),
                                       dict(zip(names, dims)))
        if kind is None:
            return False
        rows, classes = dims[self._roles["scores"]][1], dims[self._roles["scores"]][2]
        assert self.input_size is not None and self.model_ref is not None and self.model_path is not None
        self.layout = "family"
        self._family = family.family_settings(kind, self.input_size, rows, classes, self.config.option,
                                              self.model_path)
        self._mean = np.asarray(self._family.mean, np.float32)  # per channel: VGG's (123, 117, 104)
        self._std = np.asarray(self._family.std, np.float32)
        if self.config.option("labels") is None and self.model_ref.manifest is None:
            beside = family.labels_beside(self.model_path)
            if beside is not None:
                self.label_map = family.family_label_map(family.read_label_file(beside, classes), beside.stem)
        return True

    def _setup_anchors(self) -> None:
        assert self._decode is not None and self.input_size is not None
        maps = ssd.default_feature_maps(self.input_size, self._decode.anchors.num_layers)
        anchors = ssd.ssd_anchors(self._decode.anchors, maps)
        rows = self._compiled.outputs[self._roles["boxes"]].get_partial_shape()
        n_rows = rows[1].get_length() if rows[1].is_static else None
        if n_rows is not None and n_rows != len(anchors):
            raise ModelError(f"{len(anchors)} anchors for {n_rows} box encodings: the pipeline.config does not fit "
                             f"{self.model_path}", "pass the model's own --opt pipeline_config=...")
        self._anchors = anchors

    # inference ------------------------------------------------------------------------------------------
    def infer(self, inputs: np.ndarray) -> list[np.ndarray]:
        self._ran = True
        result = self._request.infer([inputs], share_inputs=True)
        return [result[self._compiled.outputs[i]] for i in sorted(self._roles.values())]

    def postprocess(self, raw: list[np.ndarray], frame_size: tuple[int, int]) -> Detections:
        order = sorted(self._roles.values())
        get = {role: np.asarray(raw[order.index(i)]) for role, i in self._roles.items()}
        space = self.label_map.space
        if self.layout == "od_api":
            n = int(get["num"].reshape(-1)[0])
            return Detections.from_boxes(get["boxes"].reshape(-1, 4)[:n], get["scores"].reshape(-1)[:n],
                                         self.label_map.apply(get["classes"].reshape(-1)[:n]), frame_size,
                                         fmt="yxyx", normalized=True, label_space=space)
        if self.layout == "family":
            assert self._family is not None
            b, s, c = family.family_postprocess(get["scores"], get["boxes"], self._family)
            return Detections.from_boxes(b, s, self.label_map.apply(c), frame_size, fmt="xyxy", normalized=True,
                                         label_space=space)
        cfg = self._decode
        assert cfg is not None and self._anchors is not None
        boxes = np.clip(ssd.decode_boxes(get["boxes"].reshape(-1, 4).astype(np.float32), self._anchors,
                                         cfg.box_scales), 0.0, 1.0)
        scores = get["scores"].reshape(len(boxes), -1).astype(np.float32)
        scores = ssd.convert_scores(scores, cfg.score_converter, cfg.logit_scale)
        b, s, c = ssd.multiclass_nms(boxes, scores[:, 1:], score_threshold=cfg.score_threshold,
                                     iou_threshold=cfg.iou_threshold, max_per_class=cfg.max_per_class,
                                     max_total=cfg.max_total)
        return Detections.from_boxes(b, s, self.label_map.apply(c + 1), frame_size, fmt="xyxy", normalized=True,
                                     label_space=space)

    # reporting ------------------------------------------------------------------------------------------
    def placement(self) -> Placement:
        if self._compiled is None:
            return Placement(self.config.device, "unknown", "no model compiled")
        devices = list(self._compiled.get_property("EXECUTION_DEVICES"))
        first = devices[0] if devices else "?"
        if first.startswith("GPU"):
            actual = f"gpu:{first.split('.', 1)[1]}" if "." in first else "gpu:0"
        elif first.startswith("NPU"):
            actual = "npu"
        else:
            actual = "cpu"
        evidence = (f"compiled_model.get_property('EXECUTION_DEVICES') = {devices} (asked {self._device_asked}; "
                    f"OpenVINO's devices: {list(self._core.available_devices)})")
        if self._device_note:
            evidence += f"; fallback: {self._device_note}"
        if not self._ran:
            evidence += " (before any inference)"
        return Placement(self.config.device, actual, evidence)

    def precision_report(self) -> Any:
        """The compiled model's ``INFERENCE_PRECISION_HINT`` and the ``runtimePrecision`` of every compute
        layer of its runtime model (u8/i8 convolutions = int8), never the hint that was asked for."""
        from harness.core.precision import PrecisionReport, dominant, shares_text

        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        counts: Counter = Counter()
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str) if "layerType" in info else ""
            if layer in COMPUTE_LAYERS and "runtimePrecision" in info:
                counts[_precision_word(info["runtimePrecision"].astype(str))] += 1
        effective, shares = dominant(counts)
        asked = self._compile_config("CPU").get("INFERENCE_PRECISION_HINT", "none (OpenVINO's default)")
        evidence = (f"compiled INFERENCE_PRECISION_HINT={_precision_word(hint)} (set: {asked}); runtime model: "
                    + shares_text(shares, f"of {sum(counts.values())} compute layers")
                    + f"; CPU capabilities {list(self._core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}")
        return PrecisionReport(self.config.precision, effective, evidence, shares)

    def model_cost(self) -> Any:
        """Parameters and MACs from the model OpenVINO read, reshaped to one static frame."""
        if self._model is None:
            return None
        return ov_model_cost(self._model, self.model_path.name if self.model_path else "?")

    def model_file(self) -> Path | None:
        return self.model_path

    def runtime_versions(self) -> dict[str, str]:
        if self._ov is None:
            return {}
        out = {"openvino_runtime": str(self._ov.get_version())}
        try:
            out["openvino_devices"] = ",".join(self._core.available_devices)
        except Exception:  # noqa: BLE001
            pass
        return out

    def thread_settings(self) -> ThreadSettings:
        """What the compiled model reports: its inference threads and streams (resolved, not the request)."""
        if self._compiled is None:
            return super().thread_settings()
        out = {}
        for key, name in (("INFERENCE_NUM_THREADS", "inference_threads"), ("NUM_STREAMS", "streams")):
            try:
                out[name] = int(self._compiled.get_property(key))
            except Exception:  # noqa: BLE001 - a device without the property
                continue
        return ThreadSettings(in_effect=out)

    def model_details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"layout": self.layout, "model_file": str(self.model_path) if self.model_path else None,
                             "device_asked": self._device_asked}
        if not self.config.model:
            d["cut"] = self._cut
        if self._family is not None:
            d["family"] = self._family.describe()
        if self._compiled is not None:
            d["compile_config"] = {k: str(v) for k, v in self._compile_config("CPU").items()}
        if self._calibration is not None:
            d["calibration"] = self._calibration
        return d

    def close(self) -> None:
        self._request = None
        self._compiled = None
