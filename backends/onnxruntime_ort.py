"""ONNX Runtime: any ONNX SSD, with or without its detection head, on a selectable execution provider.

Three output layouts are recognised from the model's outputs (``--opt layout=`` forces one):

* ``od_api``: the TF Object Detection API's ``detection_boxes/scores/classes`` + ``num_detections`` (the
  reference frozen graph exported whole with tf2onnx): read like the TF1 backend reads them.
* ``encoded``: network only, box encodings against anchors + class logits (the reference graph cut before
  its Postprocessor, most SSDs exported from training code): decoded here with the OD API box coder, the
  anchors of an ``ssd_anchor_generator`` (from a ``pipeline.config`` or an ``anchors=.npy`` file), the score
  converter and per-class NMS (:mod:`backends._ssd_decode`).
* ``decoded``: network only, boxes already decoded (normalized corners) + per-class scores: threshold +
  per-class NMS only.
* ``family``: the pytorch-ssd family's export (dusty-nv's Jetson ``onnx_export.py``: ``input_0`` -> ``scores``,
  ``boxes``; UltraFace: ``input``): the family's mean/std, labels file beside the model, and its per-class hard
  NMS (:mod:`backends._family_decode`, shared with OpenVINO, OpenCV and torch).

With no ``--model`` the reference frozen graph is converted once with tf2onnx (cached by content) and run;
the conversions are :mod:`backends.onnxruntime_convert`'s.

Speed: one InferenceSession per job with full graph optimizations, ``intra_op_num_threads`` from
``--threads`` (worker spinning off unless ``--opt spin=true``: it hurts on shared CPUs), inputs fed as contiguous numpy arrays in the model's dtype (uint8 graphs get the RGB frame
with no float copy), only the needed outputs fetched. Placement is what ``session.get_providers()`` says
the session kept, not what the build lists: a CUDA request that ends on the CPU provider is a fallback.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from backends import _family_decode as family
from backends import _ssd_decode as ssd
from backends._onnx_export import DEFAULT_OPSET
from backends.onnxruntime_convert import ONNXRuntimeConverter
from backends.torch_formats import family_onnx, is_checkpoint
from harness.data.cache import use_reference_conversion
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings, split_batch
from harness.data.calibration import CalibrationSplit
from harness.core.errors import BackendUnavailable, ModelError
from harness.core.labels import COCO_NAMES, LabelMap, label_map_from_file
from harness.data.models import DEFAULT_MODEL, ModelRef, label_map_option, resolve_model
from harness.data.preprocess import rgb_batch, rgb_stack, shared_resize

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                 "MIGraphXExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")
OD_API_KEYS = {"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes",
               "num": "num_detections"}
LAYOUTS = ("od_api", "encoded", "decoded", "family")
LABEL_FILE_NAMES = ("labelmap.txt", "labels.txt", "voc-model-labels.txt", "label_map.txt")
_PLACEHOLDERS = {"", "???", "background", "__background__"}


def import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc})",
                                 "pip install -e '.[onnx]' (or onnxruntime-gpu for CUDA)") from exc
    return ort


def labels_from_file(path: Path) -> LabelMap:
    """A one-name-per-line label file: line *i* names raw id *i*. COCO names map into the COCO space; a
    model with other classes (faces) keeps its own space, so its ids are never read as COCO ids."""
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    real = [n for n in names if n.lower() not in _PLACEHOLDERS]
    coco_names = set(COCO_NAMES.values())
    if real and all(n in coco_names for n in real):
        return label_map_from_file(path, space="coco")
    space = real[0].lower() if len(real) == 1 else path.stem
    return LabelMap(space, {i: n for i, n in enumerate(names) if n.lower() not in _PLACEHOLDERS})


def parse_size(value: Any) -> tuple[int, int] | None:
    """``"300x300"`` / ``(300, 300)`` -> (width, height)."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        w, _, h = value.lower().partition("x")
        return int(w), int(h)
    w, h = value
    return int(w), int(h)


def _provider_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(p) for p in value]


def _channels(value: Any) -> np.ndarray:
    """A mean/std given as one number, ``"127,127,127"`` or a list: float32 broadcastable over HxWxC."""
    if isinstance(value, str):
        value = [float(v) for v in value.split(",")]
    return np.asarray(value, dtype=np.float32).reshape(-1)


def _short(name: str) -> str:
    return name.split(":", 1)[0]


class ONNXRuntimeDetector(Detector):
    name = "onnxruntime"
    distributions: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnxruntime-gpu", "tf2onnx")
    converter = ONNXRuntimeConverter
    known_options: ClassVar[dict[str, str]] = {
        "cut": "reference conversion: full (with the OD API head) | network (head removed, decoded in numpy) | "
               "body (network after the graph's preprocessor: float input x*2/255-1)",
        "opset": f"reference conversion: ONNX opset (default {DEFAULT_OPSET})",
        "providers": "execution providers in order, e.g. CUDAExecutionProvider,CPUExecutionProvider",
        "spin": "true: let idle intra-op workers spin (off by default: it steals shared cores)",
        "log_level": "ONNX Runtime log severity (default 3 = errors only)",
        "labels": "label file (one name per line), or coco | person",
        "input_size": "WxH the network takes, for graphs with a dynamic input",
        "mean": "float inputs: mean per channel, e.g. 127 or 127,127,127 (default: manifest, else 127)",
        "std": "float inputs: std per channel (default: manifest, else 128)",
        "rgb": "false: feed BGR",
        "layout": "outputs: od_api | encoded | decoded | family (default: told from the outputs)",
        **family.FAMILY_OPTIONS,
        "pipeline_config": "encoded layout: OD API pipeline.config with anchors, box coder, NMS settings",
        "anchors": "encoded layout: anchors .npy [N,4] ymin,xmin,ymax,xmax normalized",
        "feature_maps": "encoded layout: feature-map sizes HxW,... for the anchor generator",
        "score_converter": "network layouts: sigmoid | softmax | identity",
        "logit_scale": "network layouts: logits divided by this before the score converter",
        "score_threshold": "network layouts: NMS candidate score threshold",
        "iou_threshold": "network layouts: NMS IoU threshold",
        "max_per_class": "network layouts: boxes kept per class",
        "max_total": "network layouts: boxes kept per image",
        "box_format": "decoded layout: xyxy | yxyx of the model's boxes",
        "background": "network layouts: false when the scores have no background column",
        "calibration": "int8 variant: calibration frames' source, asset or path (default coco128; never scored)",
        "calibration_frames": "int8 variant: how many frames of it calibrate (default 100)",
        "reduce_range": "int8 variant: 7-bit weights (default: true on CPUs without VNNI/AMX-INT8, whose u8s8 "
                        "kernels saturate otherwise)",
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self._session: Any = None
        self._ort: Any = None
        self.model_path: Path | None = None
        self.layout: str = ""
        self._requested_providers: list[str] = []
        self._session_warnings: list[str] = []
        self._out_names: list[str] = []
        self._roles: dict[str, int] = {}
        self._decode: ssd.SsdDecodeConfig | None = None
        self._anchors: np.ndarray | None = None
        self._family: family.FamilySettings | None = None
        self._intra_op_pool: int | None = None
        self._ran = False
        self._precision_read: tuple[str, dict[str, float], str] | None = None
        self._calibration: dict[str, Any] | None = None

    # model ----------------------------------------------------------------------------------------------
    def _reference_onnx(self) -> tuple[Path, ModelRef]:
        """The reference graph as ONNX, from the conversion cache ``harness convert`` fills too (the int8
        variant when the job asks for int8)."""
        ref = resolve_model(DEFAULT_MODEL, role="graph")
        options = dict(self.config.options)
        if self.config.precision in ONNXRuntimeConverter.precisions:
            options["precision"] = self.config.precision
            self._calibration = CalibrationSplit.from_options(options).record()
        return use_reference_conversion(self, ref.path, options), ref

    def _resolve(self) -> None:
        labels = label_map_option(self.config.option("labels"))
        if self.config.model:
            self.model_ref = resolve_model(self.config.model, label_map=labels)
            self.model_path = self.model_ref.path
            if is_checkpoint(self.model_path):  # a pytorch-ssd family .pth: its Jetson export, cached
                self.model_path = family_onnx(ONNXRuntimeConverter, self.model_path, self.config.options)
                self.model_ref = ModelRef(self.model_path, self.model_ref.name, self.model_ref.label_map,
                                          self.model_ref.input_size)
            if labels is None and self.model_ref.manifest is None:  # a plain path: a label file beside it?
                for fname in LABEL_FILE_NAMES:
                    candidate = self.model_path.parent / fname
                    if candidate.is_file():
                        self.model_ref = ModelRef(self.model_path, self.model_ref.name, labels_from_file(candidate),
                                                  self.model_ref.input_size)
                        break
        else:
            self.model_path, self.model_ref = self._reference_onnx()
            if labels is not None:
                self.model_ref = ModelRef(self.model_ref.path, self.model_ref.name, labels, self.model_ref.input_size,
                                          self.model_ref.manifest)
        if self.model_path.is_dir() or not self.model_path.is_file():
            raise ModelError(f"{self.model_path} is not a file", "give an .onnx file (or omit --model for the reference)")

    def _providers(self) -> list[Any]:
        explicit = _provider_list(self.config.option("providers"))
        if explicit:
            names = explicit
        elif self.config.device.is_accelerator:
            names = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            names = ["CPUExecutionProvider"]
        self._requested_providers = names
        dev = self.config.device.index
        return [(n, {"device_id": dev}) if n in ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")
                else n for n in names]

    def _session_options(self, ort: Any, profile_prefix: str | None = None) -> Any:
        opts = ort.SessionOptions()
        opts.log_severity_level = int(self.config.option("log_level", 3))  # errors only: no per-initializer noise
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.config.threads:
            opts.intra_op_num_threads = int(self.config.threads)
        # Idle worker threads spin by default; on a CPU shared with other processes that steals the cores the
        # other workers need (measured here: 2 threads went from ~34 to ~43-47 ms with spinning on).
        spin = str(self.config.option("spin", "false")).lower() in ("1", "true", "yes")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
            opts.optimized_model_filepath = f"{profile_prefix}-optimized.onnx"  # precision: read after
        return opts

    def load(self) -> None:
        ort = self._ort = import_ort()
        self._resolve()
        assert self.model_path is not None and self.model_ref is not None
        ort.set_default_logger_severity(int(self.config.option("log_level", 3)))  # provider lookup notes too
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._session = ort.InferenceSession(str(self.model_path), self._session_options(ort),
                                                     providers=self._providers())
            except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile, InvalidGraph...
                raise ModelError(
                    f"ONNX Runtime cannot load {self.model_path}: {type(exc).__name__}: {str(exc).strip()[:300]}",
                    "give a valid .onnx model (a TF frozen graph goes to --backend tf1; omit --model to convert the "
                    "reference graph)",
                ) from exc
        self._session_warnings = [str(w.message).strip() for w in caught]
        self._setup_input()
        self._setup_outputs()
        self._intra_op_pool = self._measure_intra_op_pool()

    def _measure_intra_op_pool(self) -> int | None:
        """The size of the intra-op thread pool ONNX Runtime builds for these session options, as its own
        profiler reports it (each kernel event lists the pool's worker threads: the caller + ``sub_threads``;
        no statistics = no pool, one thread). The session options only echo the request (0 = "ORT decides"),
        so a probe session with the same options and profiling on runs once on a blank input; the job's own
        session is never profiled (that would slow every frame) and its first inference stays cold."""
        import json
        import shutil
        import tempfile

        size = self._fixed_size or self.input_size
        if size is None:
            return None
        blank = self.preprocess(np.zeros((size[1], size[0], 3), np.uint8))
        tmp = tempfile.mkdtemp(prefix="harness-ort-profile-")
        try:
            with warnings.catch_warnings():  # the job's own session already recorded what ORT warns about
                warnings.simplefilter("ignore")
                probe = self._ort.InferenceSession(str(self.model_path),
                                                   self._session_options(self._ort, f"{tmp}/ort"),
                                                   providers=self._providers())
            probe.run(self._out_names[:1], {self._input_name: blank})
            events = json.loads(Path(probe.end_profiling()).read_text())
            self._read_optimized_precision(Path(f"{tmp}/ort-optimized.onnx"))
        except Exception:  # noqa: BLE001 - a probe that fails leaves the count unknown, never the job
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for event in events:
            args = event.get("args", {})
            if "thread_scheduling_stats" in args:
                stats = args["thread_scheduling_stats"]
                return 1 + len(stats.get("sub_threads", {})) if isinstance(stats, dict) else 1
        return None

    # input ----------------------------------------------------------------------------------------------
    def _setup_input(self) -> None:
        assert self.model_ref is not None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.model_path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)})",
                             "give a detector with a single image input")
        inp = inputs[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelError(f"{self.model_path}: input {inp.name} has shape {shape}, not an image batch",
                             "give a detector whose input is [1,H,W,3] or [1,3,H,W]")
        self._dtype = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(float16)": np.float16}.get(inp.type)
        if self._dtype is None:
            raise ModelError(f"{self.model_path}: input type {inp.type} is not supported", "export with a uint8 or float input")
        self._nchw = shape[1] in (1, 3) and shape[3] not in (1, 3)
        h, w = (shape[2], shape[3]) if self._nchw else (shape[1], shape[2])
        self._fixed_size = (w, h) if isinstance(w, int) and isinstance(h, int) else None
        self.input_size = parse_size(self.config.option("input_size")) or self._fixed_size or self.model_ref.input_size
        self._rgb = str(self.config.option("rgb", "true")).lower() not in ("0", "false", "no")
        meta = self.model_ref.manifest.meta if self.model_ref.manifest else {}
        if not self.config.model and self.config.option("cut") == "body":  # the graph's own x*2/255-1
            meta = {**meta, "mean": 127.5, "std": 127.5}
        self._mean = _channels(self.config.option("mean", meta.get("mean", 127.0)))
        self._std = _channels(self.config.option("std", meta.get("std", 128.0)))
        self.label_map = self.model_ref.label_map

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A C-contiguous array of exactly the input's dtype and layout: ONNX Runtime then runs on its buffer
        as it is (a strided view or another dtype would be converted inside ``run``, i.e. in the timed call)."""
        if self._fixed_size is not None:
            frame_bgr = shared_resize(frame_bgr, self._fixed_size)  # a no-op when the runner already resized
        if self._dtype == np.uint8 and not self._nchw:
            return rgb_batch(frame_bgr) if self._rgb else np.ascontiguousarray(frame_bgr[None])
        img = rgb_batch(frame_bgr)[0] if self._rgb else frame_bgr
        if self._dtype == np.uint8:
            batch = img[None]
        else:
            batch = ((img.astype(np.float32) - self._mean) / self._std)[None].astype(self._dtype, copy=False)
        if self._nchw:
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)

    # outputs --------------------------------------------------------------------------------------------
    def _setup_outputs(self) -> None:
        outs = self._session.get_outputs()
        names = [o.name for o in outs]
        forced = self.config.option("layout")
        if forced is not None and forced not in LAYOUTS:
            raise ModelError(f"unknown layout {forced!r}", f"--opt layout= one of {', '.join(LAYOUTS)}")
        od = {}
        for role, key in OD_API_KEYS.items():
            hits = [i for i, n in enumerate(names) if _short(n).endswith(key)]
            if hits:
                od[role] = hits[0]
        if forced in (None, "od_api") and len(od) == 4:
            self.layout, self._roles = "od_api", od
        else:
            if forced == "od_api":
                raise self._layout_error(names, "od_api needs detection_boxes/scores/classes and num_detections")
            box = [i for i, o in enumerate(outs) if len(o.shape) >= 2 and o.shape[-1] == 4]
            score = [i for i, o in enumerate(outs) if i not in box and len(o.shape) == 3]
            if len(box) != 1 or len(score) != 1:
                raise self._layout_error(names, "expected the OD API detection_* outputs, or one box output [1,N,4] "
                                                "and one score output [1,N,C]")
            self._roles = {"boxes": box[0], "scores": score[0]}
            if forced in (None, "family") and self._setup_family(outs):
                self._out_names = [names[i] for i in sorted(self._roles.values())]
                self._index = {role: self._out_names.index(names[i]) for role, i in self._roles.items()}
                return
            self.layout = forced or self._guess_network_layout(outs[box[0]].name)
            n_box, n_score = outs[box[0]].shape[1], outs[score[0]].shape[1]
            if isinstance(n_box, int) and isinstance(n_score, int) and n_box != n_score:
                raise self._layout_error(names, f"box rows ({n_box}) and score rows ({n_score}) differ")
            self._setup_decoder(n_box if isinstance(n_box, int) else None)
        self._out_names = [names[i] for i in sorted(self._roles.values())]
        self._index = {role: self._out_names.index(names[i]) for role, i in self._roles.items()}

    def _setup_family(self, outs: list[Any]) -> bool:
        """The pytorch-ssd family's export (or ``--opt layout=family``): its settings, its mean/std in place of the
        defaults, its labels file beside the model; False when the file is not one."""
        inp = self._session.get_inputs()[0]
        kind = family.recognise_export(inp.name, inp.shape, {o.name: o.shape for o in outs})
        if kind is None and self.config.option("layout") != "family":
            return False
        scores = outs[self._roles["scores"]].shape
        rows = scores[1] if isinstance(scores[1], int) else None
        classes = scores[2] if isinstance(scores[2], int) else None
        if self.input_size is None:
            raise ModelError(f"{self.model_path}: the family export's input size is not fixed", "pass --opt input_size=WxH")
        self.layout = "family"
        self._family = family.family_settings(kind or "jetson", self.input_size, rows, classes, self.config.option,
                                              self.model_path)
        self._mean = np.asarray(self._family.mean, np.float32)
        self._std = np.asarray(self._family.std, np.float32)
        assert self.model_ref is not None and self.model_path is not None
        if self.config.option("labels") is None and self.model_ref.manifest is None:
            beside = family.labels_beside(self.model_path)
            if beside is not None:
                self.label_map = family.family_label_map(family.read_label_file(beside, classes), beside.stem)
        return True

    def _layout_error(self, names: list[str], why: str) -> ModelError:
        shapes = {o.name: o.shape for o in self._session.get_outputs()}
        return ModelError(
            f"{self.model_path}: the outputs don't fit an SSD detector ({why}); outputs: {shapes}",
            "give an SSD exported with its OD API head, or a network-only SSD (boxes + scores); set "
            "--opt layout=od_api|encoded|decoded to say which",
        )

    def _anchor_source(self) -> Any:
        if self.config.option("anchors") or self.config.option("pipeline_config"):
            return True
        return not self.config.model and self.config.option("cut") in ("network", "body")

    def _guess_network_layout(self, box_name: str) -> str:
        if self._anchor_source():
            return "encoded"
        if "encod" in box_name.lower() or _short(box_name).startswith("concat"):
            raise ModelError(
                f"{self.model_path}: output {box_name} looks like box encodings, and no anchors are configured",
                "pass --opt pipeline_config=path/to/pipeline.config (or anchors=anchors.npy [N,4] yxyx), or "
                "--opt layout=decoded if its boxes are already decoded",
            )
        return "decoded"

    def _setup_decoder(self, n_rows: int | None) -> None:
        opt = self.config.option
        base = ssd.SsdDecodeConfig(score_converter="identity", score_threshold=0.01, iou_threshold=0.45,
                                   max_per_class=100, max_total=100)
        pipeline = opt("pipeline_config")
        if pipeline is None and not self.config.model and self.layout == "encoded":
            pipeline = str(resolve_model(DEFAULT_MODEL, role="pipeline_config").path)
        if pipeline:
            try:
                base = ssd.decode_config_from_pipeline(Path(pipeline))
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot read the SSD settings from {pipeline}: {exc}",
                                 "give the model's OD API pipeline.config") from exc
        self._decode = ssd.SsdDecodeConfig(
            anchors=base.anchors,
            box_scales=base.box_scales,
            score_converter=str(opt("score_converter", base.score_converter)),
            logit_scale=float(opt("logit_scale", base.logit_scale)),
            score_threshold=float(opt("score_threshold", base.score_threshold)),
            iou_threshold=float(opt("iou_threshold", base.iou_threshold)),
            max_per_class=int(opt("max_per_class", base.max_per_class)),
            max_total=int(opt("max_total", base.max_total)),
            input_size=base.input_size,
        )
        if self.input_size is None and base.input_size:
            self.input_size = base.input_size
        # the box decoder writes x1, y1, x2, y2; box_format describes the boxes of a "decoded" model
        self._box_format = "xyxy" if self.layout == "encoded" else str(opt("box_format", "xyxy"))
        self._background = str(opt("background", "true")).lower() not in ("0", "false", "no")
        if self.layout != "encoded":
            return
        if opt("anchors"):
            anchors = np.load(str(opt("anchors"))).astype(np.float32).reshape(-1, 4)
        else:
            size = self.input_size or self._decode.input_size
            if size is None:
                raise ModelError("the anchors need the network's input size", "pass --opt input_size=WxH")
            fmaps = opt("feature_maps")
            maps = ([tuple(int(v) for v in s.split("x")) for s in str(fmaps).split(",")] if fmaps
                    else ssd.default_feature_maps(size, self._decode.anchors.num_layers))
            anchors = ssd.ssd_anchors(self._decode.anchors, maps)  # type: ignore[arg-type]
        if n_rows is None and self.input_size is not None:  # symbolic shape (tf2onnx): one probe run tells
            probe = self.preprocess(np.zeros((self.input_size[1], self.input_size[0], 3), np.uint8))
            box_name = self._session.get_outputs()[self._roles["boxes"]].name
            n_rows = int(np.prod(self._session.run([box_name], {self._input_name: probe})[0].shape[:-1]))
        if n_rows is not None and len(anchors) != n_rows:
            raise ModelError(f"{len(anchors)} anchors for {n_rows} box encodings: the anchor settings don't fit this model",
                             "pass the model's own pipeline.config, --opt feature_maps=HxW,..., or anchors=anchors.npy")
        self._anchors = anchors

    # inference ------------------------------------------------------------------------------------------
    def infer(self, inputs: np.ndarray) -> list[np.ndarray]:
        self._ran = True
        return self._session.run(self._out_names, {self._input_name: inputs})

    def postprocess(self, raw: list[np.ndarray], frame_size: tuple[int, int]) -> Detections:
        get = {role: raw[i] for role, i in self._index.items()}
        space = self.label_map.space
        if self.layout == "od_api":
            n = int(np.asarray(get["num"]).reshape(-1)[0])
            return Detections.from_boxes(np.asarray(get["boxes"]).reshape(-1, 4)[:n], np.asarray(get["scores"]).reshape(-1)[:n],
                                         self.label_map.apply(np.asarray(get["classes"]).reshape(-1)[:n]), frame_size,
                                         fmt="yxyx", normalized=True, label_space=space)
        if self.layout == "family":
            assert self._family is not None
            b, s, c = family.family_postprocess(get["scores"], get["boxes"], self._family)
            return Detections.from_boxes(b, s, self.label_map.apply(c), frame_size, fmt="xyxy", normalized=True,
                                         label_space=space)
        cfg = self._decode
        assert cfg is not None
        boxes = np.asarray(get["boxes"]).reshape(-1, 4)
        scores = np.asarray(get["scores"])
        scores = scores.reshape(scores.shape[-2] if scores.ndim >= 2 else -1, -1)
        if len(boxes) != len(scores):
            raise ModelError(f"{len(boxes)} box rows but {len(scores)} score rows", "check --opt layout and the model")
        if self.layout == "encoded":
            assert self._anchors is not None
            if len(self._anchors) != len(boxes):
                raise ModelError(f"{len(self._anchors)} anchors for {len(boxes)} box encodings",
                                 "pass the model's own pipeline.config / feature_maps / anchors")
            boxes = np.clip(ssd.decode_boxes(boxes, self._anchors, cfg.box_scales), 0.0, 1.0)  # OD API clip window
        scores = ssd.convert_scores(scores, cfg.score_converter, cfg.logit_scale)
        first_class = 1 if self._background else 0
        b, s, c = ssd.multiclass_nms(boxes, scores[:, first_class:], score_threshold=cfg.score_threshold,
                                     iou_threshold=cfg.iou_threshold, max_per_class=cfg.max_per_class,
                                     max_total=cfg.max_total)
        raw_ids = c + first_class  # ids in the model's own numbering (0 = background when it has one)
        return Detections.from_boxes(b, s, self.label_map.apply(raw_ids), frame_size, fmt=self._box_format,  # type: ignore[arg-type]
                                     normalized=True, label_space=space)

    # batches: a model whose input has a dynamic (or matching) batch axis ------------
    def batch_unsupported(self, size: int) -> str | None:
        inp = self._session.get_inputs()[0]
        dim = inp.shape[0]
        if size == 1 or not isinstance(dim, int) or dim == size:
            return None
        return f"{self.model_path}: input {inp.name} has a fixed batch of {dim}; export it with a dynamic batch axis"

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`preprocess` for each frame into one contiguous batch; uint8 NHWC RGB models (the reference)
        get the frames written straight into one aligned array."""
        if self._dtype == np.uint8 and not self._nchw and self._rgb:
            if self._fixed_size is not None:
                frames_bgr = [shared_resize(f, self._fixed_size) for f in frames_bgr]
            return rgb_stack(frames_bgr)
        return np.ascontiguousarray(np.concatenate([self.preprocess(f) for f in frames_bgr]))

    def postprocess_batch(self, raw: list[np.ndarray], frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        return [self.postprocess(one, size) for one, size in zip(split_batch(raw, len(frame_sizes)), frame_sizes)]

    # reporting ------------------------------------------------------------------------------------------
    def placement(self) -> Placement:
        ort = self._ort
        used = list(self._session.get_providers())
        requested = self.config.device
        first = used[0] if used else "?"
        actual = f"gpu:{requested.index}" if first in GPU_PROVIDERS else "cpu"
        evidence = f"session.get_providers() = {used} (requested {self._requested_providers})"
        if requested.is_accelerator and actual == "cpu":
            available = ort.get_available_providers()
            wanted = [p for p in self._requested_providers if p in GPU_PROVIDERS]
            missing = [p for p in wanted if p not in available]
            if missing:
                reason = (f"this onnxruntime build has no {', '.join(missing)} (available: {', '.join(available)}); "
                          "install onnxruntime-gpu matching the CUDA/cuDNN here")
            elif wanted:
                reason = (f"{', '.join(wanted)} is built in but the session did not keep it: CUDA/cuDNN libraries "
                          "missing or mismatched (see `harness doctor`)")
            else:
                reason = "no GPU execution provider was requested (--opt providers=...)"
            evidence += f"; fallback: {reason}"
            if self._session_warnings:
                evidence += f"; onnxruntime said: {self._session_warnings[0][:200]}"
        if not self._ran:
            evidence += " (before any inference)"
        return Placement(requested, actual, evidence)

    def close(self) -> None:
        self._session = None

    def thread_settings(self) -> ThreadSettings:
        """The intra-op pool ONNX Runtime's profiler reported for these session options (see
        :meth:`_measure_intra_op_pool`); the session options' value only where no profile could tell."""
        if self._intra_op_pool is not None:
            return ThreadSettings(in_effect={"intra_op": self._intra_op_pool})
        if self._session is None:
            return super().thread_settings()
        opts = self._session.get_session_options()
        return ThreadSettings(configured={"intra_op": int(opts.intra_op_num_threads)})

    def model_details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"layout": self.layout, "providers_requested": list(self._requested_providers)}
        if self.model_path is not None:
            d["onnx_path"] = str(self.model_path)
        if self._calibration is not None:
            d["calibration"] = self._calibration
        if self._family is not None:
            d["family"] = self._family.describe()
        elif self._decode is not None:
            d["decode"] = {"score_converter": self._decode.score_converter, "iou_threshold": self._decode.iou_threshold,
                           "score_threshold": self._decode.score_threshold, "max_total": self._decode.max_total}
        return d

    # precision ---------------------------------------------------------------------------------
    def _read_optimized_precision(self, optimized: Path) -> None:
        """What the probe session's optimized graph computes at (see :func:`backends._onnx_facts.read_precision`)."""
        from backends._onnx_facts import read_precision

        if optimized.is_file():
            try:
                self._precision_read = read_precision(optimized)
            except Exception:  # noqa: BLE001 - unread precision is reported as unknown, never fails the job
                self._precision_read = None

    def precision_report(self) -> Any:
        """The element types of ONNX Runtime's optimized graph for this session (a QDQ model fused into
        QLinearConv runs int8; fp32 weights run fp32), never the flag."""
        from harness.core.precision import PrecisionReport, unknown_report

        if self._precision_read is None and self.model_path is not None:  # no probe ran: the file as stored
            from backends._onnx_facts import read_precision

            try:
                effective, shares, evidence = read_precision(self.model_path)
                self._precision_read = (effective, shares, "as stored (no optimized graph was read): " + evidence)
            except Exception:  # noqa: BLE001
                return unknown_report(self.config.precision, self.name)
        if self._precision_read is None:
            return unknown_report(self.config.precision, self.name)
        effective, shares, evidence = self._precision_read
        if self.config.precision not in (None, "auto", effective) and not self._calibration:
            evidence += (f"; the harness makes {'/'.join(ONNXRuntimeConverter.precisions)} variants of the reference SSD "
                         f"only, and ONNX Runtime has no {self.config.precision} switch for a given model")
        return PrecisionReport(self.config.precision, effective, evidence, shares)

    def model_cost(self) -> Any:
        """Parameters and MACs counted from the ONNX file (shapes from one run where a Loop hides them)."""
        from backends._onnx_facts import onnx_cost

        if self.model_path is None:
            return None
        size = self._fixed_size or self.input_size
        feed = None
        if size is not None:
            feed = {self._input_name: self.preprocess(np.zeros((size[1], size[0], 3), np.uint8))}
        return onnx_cost(self.model_path, feed)
