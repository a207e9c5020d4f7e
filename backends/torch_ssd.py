"""PyTorch backend: the reference SSDLite ported to PyTorch, torchvision's SSD models, and TorchScript files.

What ``--model`` may be:

* nothing (or the ``ssdlite-pedestrian`` asset, or any OD API ``ssdlite_mobilenet_v2`` ``.pb``): the frozen
  graph's weights converted once into :mod:`backends.torch_ssdlite`'s port (cached by content, see
  :mod:`harness.data.cache`) and loaded with ``torch.load(weights_only=True)``;
* a converted ``.pt`` written by the converter (:mod:`backends.torch_convert`);
* a torchvision SSD state dict (``ssd300_vgg16`` or ``ssdlite320_mobilenet_v3_large``; ``--opt arch=...`` or
  inferred from the keys), built with ``weights=None`` so nothing is downloaded;
* a pytorch-ssd family checkpoint (qfgaohao/pytorch-ssd, dusty-nv's Jetson fork, UltraFace: mb1-ssd, mb1-ssd-lite,
  mb2-ssd-lite, mb3-large/small-ssd-lite, sq-ssd-lite, vgg16-ssd, ultraface-slim/rfb), arch told from the keys
  (``--opt arch=`` forces one), labels from ``labels.txt`` / ``voc-model-labels.txt`` beside it: built by
  :mod:`backends.torch_family`, whose :mod:`~backends.torch_family.stages` hold its three stages;
* a TorchScript file whose ``forward`` follows torchvision's detection output (list of dicts) or the port's
  ``(boxes, scores)`` output (``--opt format=torchvision|ssdlite`` when it cannot be told from the file).

* a ``torch.export`` program (``.pt2``, read with ``torch.export.load``) with the port's ``(boxes, scores)`` or
  the pytorch-ssd family's ``(scores, boxes)`` output (:mod:`backends.torch_formats`);
* ``py:MODULE:CALLABLE``: a model given as Python code, built by the user's factory (:mod:`harness.core.pymodel`).

Fast path: the model is moved to the device once; each frame is uploaded as uint8 and converted, resized
and normalized on the device; NMS runs on the device and one small ``[K, 6]`` tensor comes back per frame.
All under ``torch.inference_mode``; ``threads`` sets ``torch.set_num_threads``.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends._torch_common import import_torch
from backends.torch_convert import TorchConverter
from backends.torch_convert import model_cost as torch_model_cost
from harness.data.cache import use_reference_conversion
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings
from harness.core.errors import ModelError
from harness.core.labels import COCO, LabelMap
from harness.data.models import DEFAULT_MODEL, label_map_option, resolve_model
from harness.core.pymodel import is_python_model
from harness.data.preprocess import check_same_size

TORCHVISION_ARCHS = {
    # arch -> (fixed input size (w, h), a state-dict key only this arch has, class-head key, anchors at layer 0)
    "ssd300_vgg16": ((300, 300), "backbone.features.0.weight", "head.classification_head.module_list.0.weight", 4),
    "ssdlite320_mobilenet_v3_large": (
        (320, 320), "backbone.features.0.0.0.weight", "head.classification_head.module_list.0.1.weight", 6,
    ),
}
REFERENCE_LABELS = LabelMap("coco", {1: "person"})
#: options handed to a py: model's factory: ``weights`` as is, ``py.NAME`` as ``NAME``
FACTORY_PREFIX = "py."


class _TorchOptions(dict):
    """The torch backend's options, plus any ``py.NAME`` (an argument of a ``py:`` model's factory, which the
    harness cannot list ahead)."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and key.startswith(FACTORY_PREFIX))


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() not in {"0", "false", "no", "off", ""}


def _parse_size(value: Any) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    w, _, h = str(value).lower().partition("x")
    return int(w), int(h or w)


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives hold compiled ``code/``; ``torch.save`` zips hold only ``data.pkl`` and tensors."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in name or name.endswith("constants.pkl") for name in zf.namelist())


class TorchDetector(Detector):
    name = "torch"
    distributions = ("torch", "torchvision")
    converter = TorchConverter
    known_options = _TorchOptions({
        "arch": f"state dict architecture: {' | '.join(TORCHVISION_ARCHS)}, or a pytorch-ssd family arch "
                "(mb1-ssd, mb2-ssd-lite, ultraface-rfb ...) (default: from its keys)",
        "format": "TorchScript output convention: torchvision | ssdlite; .pt2: ssdlite | family (default: from "
                  "the file)",
        "weights": "py: models: passed to the factory as weights=... (py.NAME=value passes NAME=value)",
        "mean": ".pt2 without the harness's facts: input mean per channel (RGB, 0..255 pixels)",
        "std": ".pt2 without the harness's facts: input std per channel",
        "input_size": "WxH of a TorchScript torchvision detector without a fixed size, or of an UltraFace "
                      "checkpoint (default 320x240; its priors follow the size)",
        "width_mult": "MobileNetV2 width multiplier of an mb2-ssd-lite checkpoint (default: from its weights)",
        "channels_last": "true | false: NHWC memory format for the SSDLite port (default: true on the CPU)",
        "fuse_bn": "true | false: fold batch norm into the convolutions of the SSDLite port (default true)",
        "labels": "label file (one name per line), or coco | person; a family checkpoint's file has the "
                  "background on line 0 (default: labels.txt / voc-model-labels.txt beside it)",
    })

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.kind = ""  # "ssdlite-port" | "torchvision:<arch>" | "torchscript:ssdlite" | "torchscript:torchvision"
        self.model: Any = None
        self.device: Any = None
        self.model_path: Path | None = None
        self._device_note = ""
        self._port_config: dict[str, Any] = {}
        self._output_device: str | None = None
        self._channels_last = False
        self._compute_dtype: str | None = None  # precision: the first convolution's output dtype
        self._autocast: tuple[str, Any] | None = None
        self._family: Any = None  # backends.torch_family.stages.FamilyStages for a family checkpoint
        self._tensor_model: Any = None  # a .pt2 program or a py: model (backends.torch_formats.TensorModel)
        self._norm: tuple[Any, Any] | None = None  # (mean, std) tensors of a model with its own normalization

    # loading --------------------------------------------------------------------------------------------
    def load(self) -> None:
        torch = import_torch()
        self._torch = torch
        if self.config.threads:
            torch.set_num_threads(int(self.config.threads))
        self.device = self._select_device(torch)
        from backends import torch_formats

        if is_python_model(self.config.model):
            label_map = label_map_option(self.config.option("labels"))
            self._use_tensor_model(torch, torch_formats.python_model(torch, str(self.config.model),
                                                                       self._factory_options()), "py")
        else:
            path, label_map = self._resolve_file()
            self.model_path = path
            if torch_formats.is_export_archive(path):
                program = torch_formats.load_program(torch, path, self.config.options, self.device)
                self._use_tensor_model(torch, program, "pt2")
            elif _is_torchscript_archive(path):
                self._load_torchscript(torch, path)
            else:
                self._load_checkpoint(torch, path)
        if self._family is not None:
            self.label_map = label_map if (label_map and self._tensor_model is not None) else self._family.label_map
        elif self._tensor_model is not None:
            self.label_map = label_map or self._tensor_model_labels()
        elif self.kind.endswith("ssdlite") or self.kind == "ssdlite-port":
            self.label_map = label_map or REFERENCE_LABELS
        else:
            self.label_map = label_map or COCO
        if not self.kind.startswith("pt2:"):  # an exported program is in eval mode already (and refuses .eval())
            self.model.eval()
        self.model.to(self.device)
        # NHWC makes oneDNN's depthwise convolutions about 2x faster on the CPU (measured: 78 -> 40 ms/frame,
        # 1 thread); on CUDA cuDNN's NCHW kernels are the safe default. --opt channels_last=true|false.
        self._channels_last = self._is_port and self._tensor_model is None and _truthy(
            self.config.option("channels_last", self.device.type == "cpu"))
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._setup_precision(torch)

    def _select_device(self, torch: Any) -> Any:
        """The device asked for, or the CPU with the reason recorded (the runner reports the fallback)."""
        if not self.config.device.is_accelerator:
            return torch.device("cpu")
        if torch.cuda.is_available():
            index = self.config.device.index
            if index >= torch.cuda.device_count():
                self._device_note = (f"asked for GPU {index}, torch sees {torch.cuda.device_count()}: "
                                     f"running on cuda:0")
                index = 0
            return torch.device("cuda", index)
        built = torch.version.cuda
        self._device_note = (
            "torch.cuda.is_available() is False; "
            + (f"torch {torch.__version__} is built for CUDA {built}: no usable driver/GPU (see `harness doctor`)"
               if built else f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)")
        )
        return torch.device("cpu")

    def _resolve_file(self) -> tuple[Path, LabelMap | None]:
        labels = label_map_option(self.config.option("labels"))
        name = self.config.model or DEFAULT_MODEL
        ref = resolve_model(name, role=self._asset_role(name), label_map=labels)
        path = ref.path
        self.model_ref = ref  # name, path and sha256 of what the user pointed at
        if ref.manifest is not None and labels is None:
            labels = ref.label_map
        if path.is_dir():
            raise ModelError(f"{path} is a folder; the torch backend reads one file",
                             "give a .pt/.pth state dict, a TorchScript file, or an SSDLite frozen graph .pb; "
                             "a SavedModel folder goes to --backend tf2")
        if path.suffix == ".pb":  # a frozen graph: convert once, cached by content (shared with `harness convert`)
            path = use_reference_conversion(self, ref.path)
        return path, labels

    @staticmethod
    def _asset_role(name: str) -> str | None:
        """The file of a named asset that torch runs: the reference graph, a family asset's ``pth`` (whose
        primary file is its ONNX export), else the asset's primary file."""
        if name == DEFAULT_MODEL:
            return "graph"
        from harness.data.assets import load_manifests

        manifest = load_manifests().get(name)
        return "pth" if manifest is not None and "pth" in manifest.files else None

    def _load_checkpoint(self, torch: Any, path: Path) -> None:
        port = _port()
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError (bad zip / magic number), EOFError
            raise ModelError(
                f"{path} is not a PyTorch weights file torch.load(weights_only=True) can read: {exc}".strip(),
                "give a state dict saved with torch.save(model.state_dict(), f), a TorchScript file "
                "(torch.jit.save), or omit --model to use the reference SSD",
            ) from exc
        if port.is_converted_checkpoint(obj):
            self.model = port.model_from_checkpoint(obj, str(path))
            self._port_config = dict(self.model.config)
            self.kind = "ssdlite-port"
            self._finish_port()
            return
        if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
            raise ModelError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors",
                             "save model.state_dict() (not the model object), or a TorchScript file")
        if "tap_block.conv.0.0.weight" in obj:  # a bare state dict of the port
            self.model = port.model_from_checkpoint({"state_dict": obj}, str(path))
            self._port_config = dict(self.model.config)
            self.kind = "ssdlite-port"
            self._finish_port()
            return
        arch = self.config.option("arch")
        if arch is None or arch not in TORCHVISION_ARCHS:
            from backends.torch_family import ARCHS, detect_arch

            if arch is not None and arch not in ARCHS:
                raise ModelError(f"unknown arch {arch!r}",
                                 f"choose one of: {', '.join([*TORCHVISION_ARCHS, *ARCHS])}, or drop --opt arch "
                                 "to tell it from the state dict's keys")
            if arch is not None or detect_arch(obj) is not None:
                self._load_family(torch, path, obj, arch)
                return
        self._load_torchvision(torch, path, obj)

    def _load_family(self, torch: Any, path: Path, state: dict[str, Any], arch: str | None) -> None:
        from backends import torch_family as fam
        from backends.torch_family.stages import FamilyStages

        option = self.config.option("labels")
        if option == "person":
            names: list[str] | None = ["BACKGROUND", "person"]
        elif option not in (None, "", "coco"):
            names = fam.read_labels(option)  # the file exists: _resolve_file checked it
        elif self.model_ref is not None and self.model_ref.manifest is not None \
                and "labels" in self.model_ref.manifest.files:
            names = fam.read_labels(self.model_ref.file("labels"))
        else:
            beside = fam.labels_beside(path)
            names = fam.read_labels(beside) if beside else None
        width = self.config.option("width_mult")
        model = fam.load_family(state, arch=arch, input_size=fam.parse_size(self.config.option("input_size")),
                                labels=names, width_mult=float(width) if width else None)
        self._family = FamilyStages(model, torch, self.device)
        self.model = model.net
        self.kind = f"family:{model.arch}"
        self.input_size = model.input_size

    # .pt2 programs and py: models (backends.torch_formats) ----------------------------------------------
    def _factory_options(self) -> dict[str, Any]:
        opts = {k[len(FACTORY_PREFIX):]: v for k, v in self.config.options.items() if k.startswith(FACTORY_PREFIX)}
        if self.config.option("weights") is not None:
            opts["weights"] = self.config.option("weights")
        return opts

    def _use_tensor_model(self, torch: Any, model: Any, source: str) -> None:
        """Run a :class:`~backends.torch_formats.TensorModel` as the kind of model its convention names: the
        port's stages for ``ssdlite``, the family's (:class:`~backends.torch_family.stages.FamilyStages`) for
        ``family``, torchvision's for ``torchvision``."""
        self._tensor_model = model
        self.model = model.module
        self.kind = f"{source}:{model.convention}"
        self.input_size = model.input_size
        if model.convention == "ssdlite":
            self._port_config = {**_port().DEFAULT_CONFIG, **model.settings,
                                 "input_size": list(model.input_size)}
            for key, name in (("nms_iou_threshold", "iou_threshold"), ("nms_score_threshold", "score_threshold"),
                              ("max_detections", "max_detections")):
                if name in model.settings:
                    self._port_config[key] = model.settings[name]
        elif model.convention == "family":
            from backends.torch_family.loader import FamilyModel
            from backends.torch_family.stages import FamilyStages

            s = model.settings
            labels = list(model.labels) if model.labels else ["BACKGROUND"]  # no names: raw ids in their own space
            family = FamilyModel(
                net=model.module, arch=str(s.get("arch", f"{source}-family")), input_size=model.input_size,
                mean=model.mean or (127.0,) * 3, std=model.std or (128.0,) * 3, priors=np.zeros((0, 4), np.float32),
                labels=labels, iou_threshold=float(s.get("iou_threshold", 0.45)),
                candidate_size=int(s.get("candidate_size", 200)))
            self._family = FamilyStages(family, torch, self.device)
        if model.mean is not None and model.convention != "family":
            self._norm = (torch.tensor(model.mean).view(1, 3, 1, 1).to(self.device),
                          torch.tensor(model.std).view(1, 3, 1, 1).to(self.device))

    def _tensor_model_labels(self) -> LabelMap:
        model = self._tensor_model
        if model.labels:
            from backends.torch_family.labels import label_map_for

            names = list(model.labels)
            if names[0].strip().lower() not in ("background", "???", "__background__"):
                names = ["background", *names]  # the port's and torchvision's raw ids are 1-based too
            return label_map_for(names)
        return REFERENCE_LABELS if model.convention == "ssdlite" else COCO

    def _finish_port(self) -> None:
        if _truthy(self.config.option("fuse_bn", True)):
            _port().fuse_batchnorm(self.model)
        self.input_size = tuple(int(v) for v in self._port_config["input_size"])  # type: ignore[assignment]

    def _load_torchvision(self, torch: Any, path: Path, state: dict[str, Any]) -> None:
        from torchvision.models import detection

        arch = self.config.option("arch")
        if arch is None:
            arch = next((a for a, spec in TORCHVISION_ARCHS.items() if spec[1] in state), None)
            if arch is None:
                sample = ", ".join(list(state)[:4])
                raise ModelError(
                    f"{path}: the state dict matches no supported detector (keys start {sample} ...)",
                    f"the torch backend reads torchvision {' / '.join(TORCHVISION_ARCHS)} state dicts "
                    "(set --opt arch=... if the keys are right), pytorch-ssd family checkpoints (mb1-ssd, "
                    "mb2-ssd-lite, vgg16-ssd, UltraFace ...), the converted reference SSD, or TorchScript",
                )
        if arch not in TORCHVISION_ARCHS:
            raise ModelError(f"unknown arch {arch!r}", f"choose one of: {', '.join(TORCHVISION_ARCHS)}")
        size, _, class_key, anchors0 = TORCHVISION_ARCHS[arch]
        num_classes = int(state[class_key].shape[0]) // anchors0 if class_key in state else 91
        model = getattr(detection, arch)(weights=None, weights_backbone=None, num_classes=num_classes)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{path} does not fit torchvision {arch}: {str(exc).splitlines()[0]} "
                             f"{str(exc).splitlines()[1] if len(str(exc).splitlines()) > 1 else ''}".strip(),
                             f"check --opt arch (one of: {', '.join(TORCHVISION_ARCHS)}) and that the file is that "
                             "model's state_dict()") from exc
        self.model = model
        self.kind = f"torchvision:{arch}"
        self.input_size = size

    def _load_torchscript(self, torch: Any, path: Path) -> None:
        extra = {"harness.json": ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:
            raise ModelError(f"{path} looks like TorchScript but torch.jit.load fails: {exc}",
                             "re-export it with torch.jit.save from a compatible torch version") from exc
        meta = json.loads(extra["harness.json"]) if extra["harness.json"] else {}
        fmt = self.config.option("format")
        if fmt is None:
            if meta.get("format") == _port().FORMAT:
                fmt = "ssdlite"
            else:
                schema = str(module.forward.schema) if hasattr(module.forward, "schema") else ""
                images_arg = schema.split(",")[1] if "," in schema else schema  # after `self`
                fmt = "torchvision" if ("Tensor[]" in images_arg or "List[Tensor]" in images_arg) else "ssdlite"
        if fmt not in ("torchvision", "ssdlite"):
            raise ModelError(f"unknown TorchScript format {fmt!r}", "use --opt format=torchvision or format=ssdlite")
        self.model = module
        self.kind = f"torchscript:{fmt}"
        if fmt == "ssdlite":
            self._port_config = {**_port().DEFAULT_CONFIG, **meta.get("config", {})}
            self.input_size = tuple(int(v) for v in self._port_config["input_size"])  # type: ignore[assignment]
        else:
            size = _parse_size(self.config.option("input_size"))
            fixed = getattr(getattr(module, "transform", None), "fixed_size", None)
            if size is None and fixed:
                size = (int(fixed[1]), int(fixed[0]))  # torchvision keeps (h, w)
            self.input_size = size

    def close(self) -> None:
        self.model = None
        if self.device is not None and self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    # the three stages -----------------------------------------------------------------------------------
    @property
    def _is_port(self) -> bool:
        return self.kind in ("ssdlite-port", "torchscript:ssdlite", "pt2:ssdlite", "py:ssdlite")

    def _normalize(self, images: Any) -> Any:
        """0..255 RGB ``[N, 3, H, W]`` -> the network's input: the port's x*2/255-1, or a py:/pt2 model's own
        (x - mean) / std."""
        if self._norm is None:
            return images * (2.0 / 255.0) - 1.0 if self._is_port else images / 255.0
        return (images - self._norm[0]) / self._norm[1]

    @property
    def _rgb(self) -> bool:
        return self._tensor_model is None or bool(self._tensor_model.rgb)

    def preprocess(self, frame_bgr: np.ndarray) -> Any:
        if self._family is not None:
            return self._family.preprocess_batch([frame_bgr])
        torch = self._torch
        frame = torch.from_numpy(np.ascontiguousarray(frame_bgr)).to(self.device, non_blocking=True)
        image = frame.permute(2, 0, 1)  # HWC BGR uint8 -> CHW (RGB unless a py: model asks for BGR), on the device
        image = (image.flip(0) if self._rgb else image).float()
        if self._is_port:
            w, h = self.input_size  # type: ignore[misc]
            image = _port().tf_resize_bilinear(image[None], (h, w))  # no-op when already that size
            out = self._normalize(image)
            # the memory format the model's weights use, so that no layout conversion happens inside infer
            out = out.contiguous(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)
        else:
            out = [self._normalize(image[None])[0].contiguous()]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the stage boundary: preprocessing time stays here
        return out

    def infer(self, inputs: Any) -> Any:
        if self._family is not None:
            return self._family.infer(self._network, inputs)
        torch = self._torch
        with torch.inference_mode():
            if self._is_port:
                boxes, scores = self._network(inputs)
                cfg = self._port_config
                b, s, c = _port().postprocess(
                    boxes[0], scores[0], iou_threshold=float(cfg["nms_iou_threshold"]),
                    score_threshold=float(cfg["nms_score_threshold"]), max_detections=int(cfg["max_detections"]),
                )
                packed = torch.cat([b, s[:, None], (c + int(cfg["label_offset"])).float()[:, None]], 1)
            else:
                out = self._network(inputs)
                if isinstance(out, tuple):  # scripted torchvision detectors return (losses, detections)
                    out = out[1]
                try:
                    det = out[0]
                    packed = torch.cat([det["boxes"].float(), det["scores"].float()[:, None],
                                        det["labels"].float()[:, None]], 1)
                except (KeyError, IndexError, TypeError, RuntimeError) as exc:
                    raise ModelError(f"the model's output is not torchvision's detection format: {exc}",
                                     "expected a list with one dict of boxes [N,4] xyxy pixels, scores [N], "
                                     "labels [N]; for the SSDLite port's output use --opt format=ssdlite") from exc
            self._output_device = str(packed.device)
            return packed.cpu().numpy()  # waits for the device: inference ends with the result on the host

    def postprocess(self, raw: Any, frame_size: tuple[int, int]) -> Detections:
        if self._family is not None:
            return self._family.postprocess_batch(raw, [frame_size])[0]
        raw = np.asarray(raw, dtype=np.float32).reshape(-1, 6)
        return Detections.from_boxes(
            raw[:, :4], raw[:, 4], self.label_map.apply(raw[:, 5]), frame_size,
            fmt="xyxy", normalized=self._is_port, label_space=self.label_map.space,
        )

    # batches: the port takes [N, 3, H, W]; torchvision detectors take a list ---------
    def batch_unsupported(self, size: int) -> str | None:
        return None  # both model kinds take any number of images per call

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> Any:
        """:meth:`preprocess` for several frames: the port gets one ``[N, 3, H, W]`` tensor (frames of one
        size), torchvision detectors a list of CHW tensors, all on the device."""
        if self._family is not None:
            return self._family.preprocess_batch(frames_bgr)
        if not self._is_port:
            return [t for f in frames_bgr for t in self.preprocess(f)]
        torch = self._torch
        check_same_size(frames_bgr)
        frames = torch.from_numpy(np.stack(frames_bgr)).to(self.device, non_blocking=True)
        images = frames.permute(0, 3, 1, 2)  # NHWC BGR uint8 -> NCHW, on the device
        images = (images.flip(1) if self._rgb else images).float()
        w, h = self.input_size  # type: ignore[misc]
        out = self._normalize(_port().tf_resize_bilinear(images, (h, w)))
        out = out.contiguous(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out

    def infer_batch(self, inputs: Any) -> np.ndarray:
        """Every image's ``[K, 6]`` rows with the image's index as a 7th column, one ``.cpu()`` for the batch."""
        if self._family is not None:
            return self._family.infer(self._network, inputs)
        torch = self._torch
        with torch.inference_mode():
            if self._is_port:
                boxes, scores = self.model(inputs)
                packed = [self._pack_port(boxes[i], scores[i]) for i in range(boxes.shape[0])]
            else:
                out = self.model(inputs)
                if isinstance(out, tuple):
                    out = out[1]
                packed = [torch.cat([d["boxes"], d["scores"][:, None], d["labels"].float()[:, None]], 1) for d in out]
            rows = torch.cat([torch.cat([p, torch.full_like(p[:, :1], i)], 1) for i, p in enumerate(packed)])
            self._output_device = str(rows.device)
            return rows.cpu().numpy()

    def postprocess_batch(self, raw: Any, frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        if self._family is not None:
            return self._family.postprocess_batch(raw, frame_sizes)
        rows = np.asarray(raw, dtype=np.float32).reshape(-1, 7)
        return [self.postprocess(rows[rows[:, 6] == i, :6], size) for i, size in enumerate(frame_sizes)]

    def _pack_port(self, boxes: Any, scores: Any) -> Any:
        """One image's port output after the graph's NMS: ``[K, 6]`` boxes, score, label (on the device)."""
        torch = self._torch
        cfg = self._port_config
        b, s, c = _port().postprocess(
            boxes, scores, iou_threshold=float(cfg["nms_iou_threshold"]),
            score_threshold=float(cfg["nms_score_threshold"]), max_detections=int(cfg["max_detections"]),
        )
        return torch.cat([b, s[:, None], (c + int(cfg["label_offset"])).float()[:, None]], 1)

    # reporting ------------------------------------------------------------------------------------------
    def placement(self) -> Placement:
        if self.model is None:
            return Placement(self.config.device, "unknown", "no model loaded")
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        counts = Counter(str(t.device) for t in tensors)
        total = sum(counts.values()) or 1
        shares = {dev: n / total for dev, n in counts.most_common()}
        main = counts.most_common(1)[0][0] if counts else str(self.device)
        actual = f"gpu:{main.split(':', 1)[1] if ':' in main else 0}" if main.startswith("cuda") else "cpu"
        evidence = "parameters+buffers: " + ", ".join(f"{d} {n}" for d, n in counts.most_common())
        evidence += f"; last output on {self._output_device or 'n/a (no inference yet)'}"
        if self._device_note:
            evidence += f"; {self._device_note}"
        return Placement(self.config.device, actual, evidence, shares)

    def peak_gpu_memory_mb(self) -> float | None:
        if self.device is None or self.device.type != "cuda":
            return None
        return self._torch.cuda.max_memory_allocated(self.device) / 2**20

    def runtime_versions(self) -> dict[str, str]:
        torch = getattr(self, "_torch", None)
        if torch is None:
            return {}
        out = {"torch_built_for_cuda": str(torch.version.cuda)}
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        if cudnn:
            out["torch_cudnn"] = str(cudnn)
        return out

    def thread_settings(self) -> ThreadSettings:
        """``torch.get_num_threads()`` / ``get_num_interop_threads()``: what torch's pools are set to now."""
        torch = getattr(self, "_torch", None)
        if torch is None:
            return super().thread_settings()
        return ThreadSettings(in_effect={"intra_op": int(torch.get_num_threads()),
                                         "inter_op": int(torch.get_num_interop_threads())})

    def model_details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model_kind": self.kind,
                             "model_file": str(self.model_path) if self.model_path else None}
        if self._family is not None:
            d.update(self._family.details())
        if self._is_port:
            d["postprocess"] = {k: self._port_config[k] for k in ("nms_iou_threshold", "nms_score_threshold",
                                                                  "max_detections")}
        return d


    # precision ---------------------------------------------------------------------------------
    #: --precision -> the autocast dtype (fp32 and a missing precision: no autocast; int8: none in the harness)
    AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}

    def _setup_precision(self, torch: Any) -> None:
        """Autocast for bf16/fp16 (PyTorch's mixed precision: convolutions and matmuls at the dtype, the rest
        fp32) on the model's device, and a one-shot hook on the first convolution that records the dtype it
        really computed (what is reported, not the flag)."""
        name = self.AUTOCAST.get(self.config.precision or "")
        if name is not None:
            self._autocast = (self.device.type, getattr(torch, name))
        first = next((m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if first is None or isinstance(self.model, torch.jit.ScriptModule):
            return

        def record(module: Any, args: Any, output: Any) -> None:
            self._compute_dtype = str(output.dtype)
            handle.remove()

        handle = first.register_forward_hook(record)

    def _network(self, inputs: Any) -> Any:
        """The model's forward pass, under autocast when the job asked for bf16/fp16; a port's raw outputs
        come back as float32, so that box decoding and NMS keep full precision."""
        if self._autocast is None:
            return self.model(inputs)
        with self._torch.autocast(device_type=self._autocast[0], dtype=self._autocast[1]):
            out = self.model(inputs)
        if self._is_port or self._family is not None:
            if self._compute_dtype is None:  # TorchScript: no hook, the raw outputs' dtype tells
                self._compute_dtype = str(out[0].dtype)
            return tuple(t.float() for t in out)
        return out

    def precision_report(self) -> Any:
        """The dtype the first convolution produced in the last forward pass (autocast's choice, or fp32)."""
        from harness.core.precision import PrecisionReport, precision_of_type, unknown_report

        if self._compute_dtype is None:
            return unknown_report(self.config.precision, self.name)
        effective = precision_of_type(self._compute_dtype) or self._compute_dtype
        torch = self._torch
        how = (f"autocast({self._autocast[0]}, {self._autocast[1]})" if self._autocast else "no autocast")
        evidence = f"the first Conv2d's output dtype in a forward pass: {self._compute_dtype} ({how})"
        if self.device.type == "cpu" and effective == "bf16":
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
            evidence += f"; oneDNN bf16 on this CPU: {'native' if native else 'not native (emulated, slow)'}"
        if self.config.precision == "int8":
            evidence += "; the harness makes no int8 variant for torch (quantization of convolutions needs a " \
                        "calibrated FX/PT2E flow): it ran the fp32 model"
        return PrecisionReport(self.config.precision, effective, evidence)

    def model_cost(self) -> Any:
        """Parameters of the module and MACs of one forward pass on a blank frame (:func:`torch_model_cost`),
        under the job's autocast: the precision hook may fire here first."""
        if self.model is None or self.input_size is None or isinstance(self.model, self._torch.jit.ScriptModule):
            return None
        w, h = self.input_size
        blank = self.preprocess(np.zeros((h, w, 3), np.uint8))
        return torch_model_cost(self._torch, self.model, self._network, blank,
                                f"{self.kind}: torch.utils.flop_counter, one forward pass at {w}x{h}")


def _port() -> Any:
    """The port module, imported when first needed (it imports torch at module level)."""
    from backends import torch_ssdlite

    return torch_ssdlite

