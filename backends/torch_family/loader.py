"""A family checkpoint (a state dict) -> a ready :class:`FamilyModel`: the architecture told from the keys and
shapes (or forced), the class count from the heads, the priors and preprocessing from the arch's config, the
weights loaded strictly, and a check that the net's feature maps fit the priors at the input size."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from backends.torch_family import nets
from backends.torch_family.priors import (MOBILENET_SPECS, SQUEEZENET_SPECS, VGG_SPECS, ssd_priors,
                                          ultraface_feature_maps, ultraface_priors)
from harness.core.errors import ModelError

LABEL_FILES = ("labels.txt", "voc-model-labels.txt")


@dataclass(frozen=True)
class ArchConfig:
    """What the family's config file for an arch holds, and how to build the net."""

    build: Callable[..., nets.FamilySSD]
    input_size: tuple[int, int] | None  # (w, h); None: any (UltraFace, priors follow the size)
    mean: tuple[float, float, float]
    std: float
    iou_threshold: float
    specs: tuple = ()
    anchors: tuple[int, ...] = ()


_MB = dict(input_size=(300, 300), mean=(127.0, 127.0, 127.0), std=128.0, iou_threshold=0.45, specs=MOBILENET_SPECS,
           anchors=(6,) * 6)
ARCHS: dict[str, ArchConfig] = {
    "mb1-ssd": ArchConfig(build=lambda c, p, **_: nets.build_mb1_ssd(c, p), **_MB),  # type: ignore[arg-type]
    "mb1-ssd-lite": ArchConfig(build=lambda c, p, **_: nets.build_mb1_ssd(c, p, lite=True), **_MB),  # type: ignore[arg-type]
    "mb2-ssd-lite": ArchConfig(build=lambda c, p, width_mult=1.0, **_: nets.build_mb2_ssd_lite(c, p, width_mult),
                               **_MB),  # type: ignore[arg-type]
    "mb3-large-ssd-lite": ArchConfig(build=lambda c, p, **_: nets.build_mb3_ssd_lite(c, p, large=True), **_MB),  # type: ignore[arg-type]
    "mb3-small-ssd-lite": ArchConfig(build=lambda c, p, **_: nets.build_mb3_ssd_lite(c, p, large=False), **_MB),  # type: ignore[arg-type]
    "sq-ssd-lite": ArchConfig(build=lambda c, p, **_: nets.build_sq_ssd_lite(c, p),  # type: ignore[arg-type]
                              **{**_MB, "specs": SQUEEZENET_SPECS}),
    "vgg16-ssd": ArchConfig(build=lambda c, p, **_: nets.build_vgg16_ssd(c, p), input_size=(300, 300),
                            mean=(123.0, 117.0, 104.0), std=1.0, iou_threshold=0.45, specs=VGG_SPECS,
                            anchors=(4, 6, 6, 6, 4, 4)),
    "ultraface-slim": ArchConfig(build=lambda c, p, **_: nets.build_ultraface(c, p), input_size=None,
                                 mean=(127.0, 127.0, 127.0), std=128.0, iou_threshold=0.3, anchors=(3, 2, 2, 3)),
    "ultraface-rfb": ArchConfig(build=lambda c, p, **_: nets.build_ultraface(c, p, rfb=True), input_size=None,
                                mean=(127.0, 127.0, 127.0), std=128.0, iou_threshold=0.3, anchors=(3, 2, 2, 3)),
}
ULTRAFACE_DEFAULT_SIZE = (320, 240)


@dataclass
class FamilyModel:
    """A loaded family net and everything needed to run it the family's way (see the package docstring)."""

    net: nn.Module
    arch: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    priors: np.ndarray
    labels: list[str]
    iou_threshold: float
    candidate_size: int = 200
    width_mult: float | None = None  # mb2-ssd-lite only

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if value is not None and hasattr(value, "shape") else None


def detect_arch(state: Mapping[str, Any]) -> str | None:
    """The family arch whose key layout ``state`` has, or None when it is no family checkpoint."""
    if "classification_headers.0.weight" not in state and "classification_headers.0.0.weight" not in state:
        return None
    if "base_net.7.branch0.0.conv.weight" in state:
        return "ultraface-rfb"
    if "base_net.3.squeeze.weight" in state:
        return "sq-ssd-lite"
    if "source_layer_add_ons.0.weight" in state or "base_net.31.weight" in state:
        return "vgg16-ssd"
    if "base_net.1.conv.0.weight" in state:
        return "mb2-ssd-lite"
    if "base_net.3.conv1.weight" in state:
        return "mb3-large-ssd-lite" if "base_net.18.weight" in state else "mb3-small-ssd-lite"
    first = _shape(state, "base_net.0.0.weight")
    if first is not None:
        if first[0] == 16 and "base_net.13.0.weight" not in state:
            return "ultraface-slim"
        return "mb1-ssd" if "classification_headers.0.weight" in state else "mb1-ssd-lite"
    return None


def _head_out(state: Mapping[str, Any], prefix: str) -> int:
    """Output channels of a head: its last 4-D weight (a plain conv, or the 1x1 of a separable one)."""
    pattern = re.compile(re.escape(prefix) + r"(\.\d+)*\.weight$")
    shapes = [tuple(v.shape) for k, v in state.items() if pattern.fullmatch(k) and len(getattr(v, "shape", ())) == 4]
    if not shapes:
        raise ModelError(f"the checkpoint has no {prefix} head weights",
                         "give a complete pytorch-ssd family state dict (net.save() / torch.save(net.state_dict()))")
    return shapes[-1][0]


def num_classes_of(state: Mapping[str, Any], arch: str) -> int:
    """Class count (background included) from the first head: classification outputs / boxes per cell, the
    boxes per cell read from the regression head (4 numbers a box)."""
    reg = _head_out(state, "regression_headers.0")
    cls = _head_out(state, "classification_headers.0")
    boxes = ARCHS[arch].anchors[0]
    if reg != 4 * boxes or cls % boxes:
        raise ModelError(
            f"the checkpoint's first heads ({cls} class and {reg} box channels) do not fit {arch} "
            f"({boxes} boxes a cell)", f"check --opt arch (one of: {', '.join(ARCHS)})")
    return cls // boxes


def infer_width_mult(state: Mapping[str, Any]) -> float:
    """MobileNetV2's width multiplier, from the last bottleneck (int(320 * width) channels)."""
    shape = _shape(state, "base_net.17.conv.6.weight")
    return round(shape[0] / 320, 4) if shape else 1.0


def read_labels(path: str | Path) -> list[str]:
    """One class name a line (line 0 the background), as the family's train_ssd.py writes them."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def labels_beside(checkpoint: str | Path) -> Path | None:
    """``labels.txt`` or ``voc-model-labels.txt`` in the checkpoint's folder (dusty-nv's / qfgaohao's name)."""
    folder = Path(checkpoint).parent
    return next((folder / n for n in LABEL_FILES if (folder / n).is_file()), None)


def _clean_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, a DataParallel ``module.`` prefix dropped."""
    out = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def parse_size(value: Any) -> tuple[int, int] | None:
    """``WxH`` (or one number for a square, or a (w, h) pair) -> (w, h); a malformed value is an error."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (list, tuple)):
            w, h = int(value[0]), int(value[1])
        else:
            ws, _, hs = str(value).lower().partition("x")
            w, h = int(ws), int(hs or ws)
    except (TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"input_size {value!r} is not WIDTHxHEIGHT", "e.g. --opt input_size=320x240") from exc
    if w <= 0 or h <= 0:
        raise ModelError(f"input_size {value!r} has no area", "give positive sizes, e.g. --opt input_size=320x240")
    return w, h


def _check_maps(net: nets.FamilySSD, arch: str, size: tuple[int, int], expected: list[tuple[int, int]]) -> None:
    """Run the (still meta-device) net once on a meta input, shapes only, no arithmetic, and compare each
    head's map with the one the priors were made for: the priors are meaningful only where the two agree."""
    got: list[tuple[int, int]] = []
    hooks = [h.register_forward_hook(lambda m, a, o: got.append((int(o.shape[-1]), int(o.shape[-2]))))
             for h in net.regression_headers]
    w, h = size
    try:
        with torch.inference_mode():
            net.raw(torch.zeros(1, 3, h, w, device="meta"))
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{arch} at input_size {w}x{h} gives no whole feature map: "
                         f"{str(exc).splitlines()[0]}", _size_fix(arch)) from exc
    finally:
        for hook in hooks:
            hook.remove()
    if got != expected:
        show = lambda maps: ", ".join(f"{a}x{b}" for a, b in maps)  # noqa: E731
        raise ModelError(f"{arch} at input_size {w}x{h} gives feature maps {show(got)}, but its priors are laid "
                         f"out for {show(expected)}", _size_fix(arch))


def _size_fix(arch: str) -> str:
    cfg = ARCHS[arch]
    if cfg.input_size is not None:
        return f"{arch} priors come from its SSD300 config: drop --opt input_size (it is " \
               f"{cfg.input_size[0]}x{cfg.input_size[1]})"
    return "give an UltraFace size such as --opt input_size=320x240, 640x480 or 300x300"


def load_family(state_dict: Mapping[str, Any], *, arch: str | None = None,
                input_size: tuple[int, int] | None = None, labels: list[str] | None = None,
                width_mult: float | None = None) -> FamilyModel:
    """Build the family net that ``state_dict`` holds, loaded and in eval mode on the CPU (see the package
    docstring for the returned fields). Every problem is a :class:`ModelError` naming the fix."""
    state = _clean_state(state_dict)
    if arch is None:
        arch = detect_arch(state)
        if arch is None:
            raise ModelError("the state dict is no pytorch-ssd family checkpoint (no base_net / "
                             "classification_headers keys of a known arch)",
                             f"give a family checkpoint, or force one with --opt arch= ({', '.join(ARCHS)})")
    if arch not in ARCHS:
        raise ModelError(f"unknown pytorch-ssd family arch {arch!r}", f"choose one of: {', '.join(ARCHS)}")
    cfg = ARCHS[arch]
    num_classes = num_classes_of(state, arch)
    if labels is None:
        labels = ["BACKGROUND"] + [f"class{i}" for i in range(1, num_classes)]
    elif len(labels) != num_classes:
        raise ModelError(f"the labels list {len(labels)} names, the checkpoint's heads {num_classes} classes "
                         f"(background included)",
                         f"give a label file of {num_classes} lines, line 0 the background (BACKGROUND), "
                         "with --opt labels=FILE or labels.txt beside the checkpoint")
    if cfg.input_size is not None:
        size = tuple(input_size) if input_size else cfg.input_size
        priors = ssd_priors(cfg.specs, cfg.input_size[0])
        expected = [(s.feature_map, s.feature_map) for s in cfg.specs]
    else:
        size = tuple(input_size) if input_size else ULTRAFACE_DEFAULT_SIZE
        priors = ultraface_priors(size)  # type: ignore[arg-type]
        expected = ultraface_feature_maps(size)  # type: ignore[arg-type]
    extra: dict[str, Any] = {}
    if arch == "mb2-ssd-lite":
        extra["width_mult"] = float(width_mult) if width_mult else infer_width_mult(state)
    # built on the meta device: no memory, no random initialisation (VGG's would take seconds); the weights
    # then become the checkpoint's own tensors (assign=True)
    with torch.device("meta"):
        net = cfg.build(num_classes, priors, **extra)
    net.eval()
    _check_maps(net, arch, size, expected)  # type: ignore[arg-type]
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else str(exc)
        raise ModelError(f"the checkpoint does not fit {arch}: {detail[:400]}",
                         f"check --opt arch (one of: {', '.join(ARCHS)}) and that the file is that net's "
                         "state_dict(), unmodified" + ("; for MobileNetV2 set --opt width_mult" if
                                                       arch == "mb2-ssd-lite" else "")) from exc
    net.eval()
    return FamilyModel(net=net, arch=arch, input_size=size, mean=cfg.mean,  # type: ignore[arg-type]
                       std=(cfg.std,) * 3, priors=priors, labels=list(labels), iou_threshold=cfg.iou_threshold,
                       width_mult=extra.get("width_mult"))
