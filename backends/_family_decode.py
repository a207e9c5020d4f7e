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

from harness.errors import ModelError
from harness.labels import LabelMap

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
                    option: Callable[[str, Any], Any]) -> FamilySettings:
    """The settings for a recognised export: its arch (``--opt family_arch=`` or told from the input name and
    the prior count), that arch's mean/std and NMS, and the options that override them (``mean``, ``std``,
    ``iou_threshold``, ``candidate_size``, ``prob_threshold``, ``family_top_k``, ``max_total``)."""
    arch = option("family_arch", None)
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


def family_label_map(names: Sequence[str], space_name: str = "family") -> LabelMap:
    """Line *i* names raw class *i* (0 = background). When every real name is a COCO or VOC class name the
    ids map to COCO ids (``person`` -> 1, ``aeroplane`` -> airplane 5, so VOC models are scored against COCO
    or MOT ground truth); otherwise the model keeps its own space (faces), named after its one class."""
    from harness.groundtruth import coco_id_for_name

    real = {i: n.strip() for i, n in enumerate(names) if n.strip().lower() not in _BACKGROUND}
    coco = {i: coco_id_for_name(n) for i, n in real.items()}
    if real and all(v is not None for v in coco.values()):
        from harness.labels import COCO_NAMES

        remap = {i: int(c) for i, c in coco.items() if c != i}  # type: ignore[misc]
        return LabelMap("coco", {int(c): COCO_NAMES[int(c)] for c in coco.values()}, remap=remap)  # type: ignore[arg-type]
    space = next(iter(real.values())).lower() if len(real) == 1 else space_name
    return LabelMap(space, dict(real))


def read_label_file(path: Path, num_classes: int | None = None) -> list[str]:
    """The names of a label file; with ``num_classes`` the file must name exactly that many (background in)."""
    names = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if num_classes is not None and len(names) != num_classes:
        raise ModelError(f"{path} names {len(names)} classes, the model has {num_classes} (background included)",
                         "give the model's own labels file (--opt labels=path), one name per line, "
                         "BACKGROUND first")
    return names


# postprocess -------------------------------------------------------------------------------------------------

def _area(lt: np.ndarray, rb: np.ndarray) -> np.ndarray:
    wh = np.clip(rb - lt, 0.0, None)
    return wh[..., 0] * wh[..., 1]


def _iou_of(boxes: np.ndarray, box: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """The family's ``box_utils.iou_of`` (areas of clamped widths, epsilon in the union)."""
    lt = np.maximum(boxes[:, :2], box[:2])
    rb = np.minimum(boxes[:, 2:], box[2:])
    inter = _area(lt, rb)
    return inter / (_area(boxes[:, :2], boxes[:, 2:]) + _area(box[None, :2], box[None, 2:]) - inter + eps)


def hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = -1,
             candidate_size: int = 200) -> np.ndarray:
    """The family's ``box_utils.hard_nms``: indices kept, best first."""
    order = np.argsort(-scores, kind="stable")[:candidate_size]
    picked: list[int] = []
    while order.size:
        current = int(order[0])
        picked.append(current)
        if 0 < top_k == len(picked) or order.size == 1:
            break
        rest = order[1:]
        order = rest[_iou_of(boxes[rest], boxes[current]) <= iou_threshold]
    return np.asarray(picked, dtype=np.int64)


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
    out_b, out_s, out_c = [], [], []
    for c in range(1, scores.shape[1]):
        mask = np.flatnonzero(scores[:, c] > settings.prob_threshold)
        if not mask.size:
            continue
        kept = mask[hard_nms(boxes[mask], scores[mask, c], settings.iou_threshold, settings.top_k,
                             settings.candidate_size)]
        out_b.append(boxes[kept])
        out_s.append(scores[kept, c])
        out_c.append(np.full(len(kept), c, dtype=np.int64))
    if not out_s:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    b, s, c = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_c)
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
