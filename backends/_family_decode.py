"""The pytorch-ssd family's (qfgaohao/pytorch-ssd, dusty-nv's Jetson fork, UltraFace) test-mode outputs as
detections, in plain numpy: the one implementation every framework shares.

Why one module: the family's network ends with softmaxed ``scores [1, N, C]`` (column 0 background) and
decoded corner ``boxes [1, N, 4]`` (x1, y1, x2, y2 normalized); everything after that is the family's
``Predictor``: per class, keep the probabilities over a threshold, then its *hard* NMS (sort, keep the best
``candidate_size``, greedily drop boxes whose IoU with a kept one is over the threshold, IoU with a 1e-5
epsilon and negative widths clamped to 0). Nothing there depends on the framework that ran the network, so
ONNX Runtime, OpenVINO, OpenCV and the torch backend's exported or Python-given family models all call
:func:`family_postprocess` and differ only in the network.

The Jetson export (dusty-nv's ``onnx_export.py``: input ``input_0``, outputs ``scores`` and ``boxes``) and
UltraFace's ONNX files (input ``input``) are recognised by :func:`recognise_export` from their input/output
names and shapes; :func:`family_settings` gives the family's preprocessing and NMS settings for one (the
arch told from the file, overridable with options).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness.core.errors import ModelError
from harness.core.labels import LabelMap

#: the files beside a checkpoint or an export that name its classes, in the order the family's tools write them
LABEL_FILE_NAMES = ("labels.txt", "voc-model-labels.txt", "open-images-model-labels.txt")
_BACKGROUND = {"background", "__background__", "???", ""}

#: the family's configs: mean, std (RGB, per channel), NMS IoU, candidate size. MobileNet/SqueezeNet SSDs:
#: (x - 127) / 128; VGG: x - (123, 117, 104), std 1; UltraFace: (x - 127) / 128, IoU 0.3 (its detect scripts)
ARCH_DEFAULTS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float, int]] = {
    "mobilenet": ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0), 0.45, 200),
    "vgg16-ssd": ((123.0, 117.0, 104.0), (1.0, 1.0, 1.0), 0.45, 200),
    "ultraface": ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0), 0.3, 200),
}
#: SSD300's prior count with VGG16's feature maps (38, 19, 10, 5, 3, 1 with 4/6/6/6/4/4 boxes): a file with
#: that many rows is a VGG export (the MobileNet configs have 2268 / 3000)
VGG16_SSD300_PRIORS = 8732


@dataclass(frozen=True)
class FamilySettings:
    """What turns a frame into the family's input and its outputs into detections."""

    arch: str  # "mobilenet" (mb1/mb2/mb3/sq SSD(-Lite)), "vgg16-ssd", "ultraface", or the torch family's arch
    input_size: tuple[int, int]  # (width, height)
    mean: tuple[float, float, float]  # RGB
    std: tuple[float, float, float]
    iou_threshold: float = 0.45
    candidate_size: int = 200
    prob_threshold: float = 0.01  # the Predictor's default filter threshold
    top_k: int = -1  # boxes kept per class (-1: all, as the Predictor)
    max_total: int = 0  # boxes kept per image after all classes (0: all, as the Predictor)

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_size": list(self.input_size), "mean": list(self.mean),
                "std": list(self.std), "iou_threshold": self.iou_threshold, "candidate_size": self.candidate_size,
                "prob_threshold": self.prob_threshold, "top_k": self.top_k, "max_total": self.max_total}


#: options every backend that runs a family export takes (``--opt``), with what they change
FAMILY_OPTIONS = {
    "family_arch": "pytorch-ssd family export: mobilenet | vgg16-ssd | ultraface (mean/std and NMS IoU; "
                   "default: told from the file)",
    "prob_threshold": "pytorch-ssd family export: class probability kept before NMS (default 0.01)",
    "iou_threshold": "pytorch-ssd family export: hard-NMS IoU (default 0.45, UltraFace 0.3)",
    "candidate_size": "pytorch-ssd family export: best boxes per class that enter NMS (default 200)",
    "family_top_k": "pytorch-ssd family export: boxes kept per class (default -1: all)",
    "max_total": "pytorch-ssd family export: boxes kept per image (default 0: all)",
}


def _three(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3  # type: ignore[return-value]
    parts = [float(v) for v in (value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split())]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise ModelError(f"{what}={value!r}: expected 1 or 3 numbers", f"e.g. {what}=127 or {what}=123,117,104")
    return parts[0], parts[1], parts[2]


def recognise_export(input_name: str, input_shape: Sequence[Any], outputs: Mapping[str, Sequence[Any]]) -> str | None:
    """``"jetson"`` (dusty-nv's ``onnx_export.py``: ``input_0``) or ``"ultraface"`` (``input``) when a file has
    the family's two outputs ``scores [1, N, C]`` and ``boxes [1, N, 4]``; None for anything else."""
    if set(outputs) != {"scores", "boxes"}:
        return None
    s, b = list(outputs["scores"]), list(outputs["boxes"])
    if len(s) != 3 or len(b) != 3 or b[-1] != 4 or len(list(input_shape)) != 4:
        return None
    if isinstance(s[1], int) and isinstance(b[1], int) and s[1] != b[1]:
        return None
    return "ultraface" if input_name == "input" else "jetson"


def family_settings(kind: str, input_size: tuple[int, int], rows: int | None, num_classes: int | None,
                    option: Callable[[str, Any], Any], model_file: Path | None = None) -> FamilySettings:
    """The settings for a recognised export: its arch (``--opt family_arch=`` or told from the input name and
    the prior count), that arch's mean/std and NMS, and the options that override them (``mean``, ``std``,
    ``iou_threshold``, ``candidate_size``, ``prob_threshold``, ``family_top_k``, ``max_total``)."""
    arch = option("family_arch", None)
    facts = sidecar_facts(model_file)
    if arch is None and facts.get("arch"):
        # the harness's own export says what the file cannot: its arch's mean/std and NMS, from the checkpoint
        mean, std = _three(option("mean", facts["mean"]), "mean"), _three(option("std", facts["std"]), "std")
        return FamilySettings(
            arch=str(facts["arch"]), input_size=input_size, mean=mean, std=std,
            iou_threshold=float(option("iou_threshold", facts.get("iou_threshold") or 0.45)),
            candidate_size=int(option("candidate_size", facts.get("candidate_size") or 200)),
            prob_threshold=float(option("prob_threshold", 0.01)), top_k=int(option("family_top_k", -1)),
            max_total=int(option("max_total", 0)))
    if arch is None:
        arch = "ultraface" if kind == "ultraface" else ("vgg16-ssd" if rows == VGG16_SSD300_PRIORS else "mobilenet")
    arch = str(arch)
    if arch not in ARCH_DEFAULTS:
        raise ModelError(f"unknown family_arch {arch!r}", f"--opt family_arch= one of {', '.join(ARCH_DEFAULTS)}")
    mean, std, iou, candidates = ARCH_DEFAULTS[arch]
    return FamilySettings(
        arch=arch, input_size=input_size,
        mean=_three(option("mean", mean), "mean"), std=_three(option("std", std), "std"),
        iou_threshold=float(option("iou_threshold", iou)), candidate_size=int(option("candidate_size", candidates)),
        prob_threshold=float(option("prob_threshold", 0.01)), top_k=int(option("family_top_k", -1)),
        max_total=int(option("max_total", 0)),
    )


def sidecar_facts(model_file: Path | None) -> dict[str, Any]:
    """The family facts the harness's own export wrote beside an ONNX file (arch, mean/std, NMS), or {}."""
    import json

    if model_file is None:
        return {}
    path = Path(model_file).parent / "pytorch-ssd-family.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def with_model_facts(settings: FamilySettings, **changes: Any) -> FamilySettings:
    """``settings`` with facts a model carries itself (a torch family model's mean/std, NMS IoU ...)."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})


# labels ------------------------------------------------------------------------------------------------------

def labels_beside(model_file: Path) -> Path | None:
    """The family's label file next to a checkpoint or export (``labels.txt``, ``voc-model-labels.txt`` ...)."""
    for name in LABEL_FILE_NAMES:
        candidate = Path(model_file).parent / name
        if candidate.is_file():
            return candidate
    return None


def label_map_for(labels: Sequence[str]) -> LabelMap:
    """The :class:`LabelMap` of a family label list (index 0 the background): VOC (or COCO) names map to COCO
    category ids (``aeroplane`` -> airplane, ``tvmonitor`` -> tv ...), so that a VOC model, or a one-class
    ``person`` model, is scored against COCO-id ground truth. A name list that is not all COCO/VOC names
    (UltraFace's ``face``, a custom class) keeps its own space with the model's raw class indices: a partial
    mapping would let an unmapped raw index pass as an unrelated COCO id."""
    from harness.core.labels import coco_id_for_name

    named = {i: name for i, name in enumerate(labels) if i > 0 and name.strip().lower() not in _BACKGROUND}
    coco = {i: coco_id_for_name(name) for i, name in named.items()}
    if named and all(cid is not None for cid in coco.values()):
        from harness.core.labels import COCO_NAMES

        return LabelMap("coco", {int(coco[i]): COCO_NAMES[int(coco[i])] for i in named},  # type: ignore[index]
                        remap={i: int(cid) for i, cid in coco.items() if cid != i})  # type: ignore[arg-type]
    space = next(iter(named.values())).strip().lower() if len(named) == 1 else "pytorch-ssd"
    return LabelMap(space, dict(named))


def family_label_map(names: Sequence[str], space_name: str = "pytorch-ssd") -> LabelMap:
    """:func:`label_map_for` (kept for the ONNX backends' call sites)."""
    return label_map_for(names)


def read_label_file(path: Path, num_classes: int | None = None) -> list[str]:
    """The names of a label file; with ``num_classes`` the file must name exactly that many (background in)."""
    names = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if num_classes is not None and len(names) != num_classes:
        raise ModelError(f"{path} names {len(names)} classes, the model has {num_classes} (background included)",
                         "give the model's own labels file (--opt labels=path), one name per line, "
                         "BACKGROUND first")
    return names


# postprocess -------------------------------------------------------------------------------------------------

def _area(boxes: np.ndarray) -> np.ndarray:
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0.0, None)
    return wh[..., 0] * wh[..., 1]


def hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = -1,
             candidate_size: int = 200) -> np.ndarray:
    """Indices (into ``boxes``) that the family's ``hard_nms`` keeps, in its order: the ``candidate_size`` best,
    a box dropped when its IoU with a kept one exceeds the threshold (IoU with the family's 1e-5 in the
    denominator, negative widths clamped to 0), at most ``top_k`` kept."""
    order = np.argsort(-scores, kind="stable")[:candidate_size]
    areas = _area(boxes)
    picked: list[int] = []
    while order.size:
        current = int(order[0])
        picked.append(current)
        if 0 < top_k == len(picked) or order.size == 1:
            break
        rest = order[1:]
        lt = np.maximum(boxes[rest, :2], boxes[current, :2])
        rb = np.minimum(boxes[rest, 2:], boxes[current, 2:])
        overlap = _area(np.concatenate([lt, rb], axis=1))
        iou = overlap / (areas[rest] + areas[current] - overlap + 1e-5)
        order = rest[iou <= iou_threshold]
    return np.asarray(picked, dtype=np.int64)


def predict(scores: np.ndarray, boxes: np.ndarray, *, iou_threshold: float, prob_threshold: float = 0.01,
            candidate_size: int = 200, top_k: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The family's ``Predictor`` on one image's ``scores [P, C]`` and corner ``boxes [P, 4]`` (normalized):
    per class (background excluded) the scores above ``prob_threshold``, then :func:`hard_nms`; kept boxes
    (normalized), probabilities and class indices (1..C-1), listed by class, then in NMS order."""
    kept_boxes, kept_probs, kept_labels = [], [], []
    for c in range(1, scores.shape[1]):
        mask = scores[:, c] > prob_threshold
        if not mask.any():
            continue
        sub_boxes, sub_probs = boxes[mask], scores[mask, c]
        keep = hard_nms(sub_boxes, sub_probs, iou_threshold, top_k, candidate_size)
        kept_boxes.append(sub_boxes[keep])
        kept_probs.append(sub_probs[keep])
        kept_labels.append(np.full(keep.size, c, dtype=np.int64))
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(kept_boxes), np.concatenate(kept_probs), np.concatenate(kept_labels)


def family_postprocess(scores: np.ndarray, boxes: np.ndarray, settings: FamilySettings
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``scores [N, C]`` / ``boxes [N, 4]`` (a leading batch axis of 1 is dropped) -> boxes
    (x1, y1, x2, y2 normalized), probabilities and raw class ids (1..C-1), in the Predictor's order (class by
    class, best first within a class); ``max_total`` > 0 keeps the best that many overall."""
    scores = np.asarray(scores, dtype=np.float32)
    scores = scores.reshape(scores.shape[-2], scores.shape[-1])
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) != len(scores):
        raise ModelError(f"{len(boxes)} box rows but {len(scores)} score rows",
                         "the family's outputs are scores [1,N,C] and boxes [1,N,4] with the same N")
    b, s, c = predict(scores, boxes, iou_threshold=settings.iou_threshold, prob_threshold=settings.prob_threshold,
                      candidate_size=settings.candidate_size, top_k=settings.top_k)
    if settings.max_total > 0 and len(s) > settings.max_total:
        top = np.argsort(-s, kind="stable")[:settings.max_total]
        b, s, c = b[top], s[top], c[top]
    return b, s, c


def family_input(frame_bgr: np.ndarray, settings: FamilySettings, resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
                 ) -> np.ndarray:
    """The family's ``PredictionTransform`` on one BGR frame: resize to the input size, RGB, (x - mean) / std,
    ``float32 [1, 3, H, W]`` (``resize`` is the harness's shared resize, so that every backend feeds the same
    pixels)."""
    img = resize(frame_bgr, settings.input_size)[:, :, ::-1].astype(np.float32)
    img = (img - np.asarray(settings.mean, np.float32)) / np.asarray(settings.std, np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])
