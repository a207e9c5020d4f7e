"""The one canonical container for detections, and the box-format conversions every backend needs.

Every backend hands the harness a :class:`Detections`: boxes as ``float32[N, 4]`` ``x1, y1, x2, y2`` in
pixels of the *original* frame, so that accuracy, agreement and drawing never need to know which framework
produced them. The conversions live here, once, because the classic cross-framework bug (scaling y by the
width and x by the height) only shows on non-square frames and must be fixed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import numpy as np

BoxFormat = Literal["xyxy", "yxyx", "xywh", "cxcywh"]
BOX_FORMATS: tuple[str, ...] = ("xyxy", "yxyx", "xywh", "cxcywh")


def _as_boxes(boxes: np.ndarray | Iterable) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {arr.shape}")
    return arr


def convert_boxes(
    boxes: np.ndarray | Iterable,
    src: BoxFormat,
    dst: BoxFormat,
    *,
    frame_size: tuple[int, int] | None = None,
    src_normalized: bool = False,
    dst_normalized: bool = False,
) -> np.ndarray:
    """Convert ``[N, 4]`` boxes between formats and between normalized and pixel coordinates.

    ``frame_size`` is ``(width, height)``; it is required whenever one side is normalized. x is always
    scaled by the width and y by the height, whatever the order of the coordinates in the format.
    """
    for fmt in (src, dst):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {BOX_FORMATS}")
    arr = _as_boxes(boxes)
    if (src_normalized or dst_normalized) and frame_size is None:
        raise ValueError("frame_size=(width, height) is needed to convert normalized boxes")

    # to xyxy in the source's units
    if src == "xyxy":
        xyxy = arr.copy()
    elif src == "yxyx":
        xyxy = arr[:, [1, 0, 3, 2]]
    elif src == "xywh":
        xyxy = np.stack([arr[:, 0], arr[:, 1], arr[:, 0] + arr[:, 2], arr[:, 1] + arr[:, 3]], axis=1)
    else:  # cxcywh
        half_w, half_h = arr[:, 2] / 2.0, arr[:, 3] / 2.0
        xyxy = np.stack([arr[:, 0] - half_w, arr[:, 1] - half_h, arr[:, 0] + half_w, arr[:, 1] + half_h], axis=1)

    if src_normalized != dst_normalized:
        assert frame_size is not None
        width, height = frame_size
        scale = np.array([width, height, width, height], dtype=np.float64)
        xyxy = xyxy * scale if src_normalized else xyxy / scale

    if dst == "xyxy":
        out = xyxy
    elif dst == "yxyx":
        out = xyxy[:, [1, 0, 3, 2]]
    elif dst == "xywh":
        out = np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1)
    else:
        out = np.stack(
            [
                (xyxy[:, 0] + xyxy[:, 2]) / 2.0,
                (xyxy[:, 1] + xyxy[:, 3]) / 2.0,
                xyxy[:, 2] - xyxy[:, 0],
                xyxy[:, 3] - xyxy[:, 1],
            ],
            axis=1,
        )
    return out.reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of xyxy boxes: ``[len(a), len(b)]``."""
    a = _as_boxes(a)
    b = _as_boxes(b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


@dataclass(frozen=True)
class Detections:
    """Detections of one frame in canonical form.

    ``boxes``: ``float32[N, 4]`` x1, y1, x2, y2 in pixels of the original frame; ``scores``: ``float32[N]``;
    ``class_ids``: ``int64[N]`` in the label space named by ``label_space`` (``"coco"``: COCO category ids
    1-90); ``frame_size``: ``(width, height)`` of the frame the boxes refer to.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    frame_size: tuple[int, int]
    label_space: str = "coco"
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids).reshape(-1)
        if class_ids.size and not np.all(np.isfinite(class_ids.astype(np.float64))):
            raise ValueError("class ids must be finite")
        class_ids = np.rint(class_ids.astype(np.float64)).astype(np.int64) if class_ids.size else np.zeros(0, np.int64)
        if not (len(boxes) == len(scores) == len(class_ids)):
            raise ValueError(
                f"boxes, scores and class_ids differ in length: {len(boxes)}, {len(scores)}, {len(class_ids)}"
            )
        width, height = (int(v) for v in self.frame_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"frame_size must be positive (width, height), got {self.frame_size}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "frame_size", (width, height))

    # construction ---------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, frame_size: tuple[int, int], label_space: str = "coco") -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), frame_size, label_space)

    @classmethod
    def from_boxes(
        cls,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        frame_size: tuple[int, int],
        *,
        fmt: BoxFormat = "xyxy",
        normalized: bool = False,
        label_space: str = "coco",
        clip: bool = True,
    ) -> "Detections":
        """Build from any supported format; ``frame_size`` is the (width, height) of the original frame."""
        xyxy = convert_boxes(boxes, fmt, "xyxy", frame_size=frame_size, src_normalized=normalized)
        dets = cls(xyxy, scores, class_ids, frame_size, label_space)
        return dets.clip() if clip else dets

    @classmethod
    def from_coco_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        frame_size: tuple[int, int],
        *,
        label_space: str = "coco",
    ) -> "Detections":
        """One frame's results-json rows (``bbox`` = x, y, w, h pixels) back to canonical form: the inverse of
        :meth:`to_coco_records`. Boxes are kept as saved (not clipped): they are what the job produced."""
        rows = list(records)
        xywh = np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
        return cls(
            convert_boxes(xywh, "xywh", "xyxy"),
            np.array([float(r["score"]) for r in rows], dtype=np.float32),
            np.array([int(r["category_id"]) for r in rows], dtype=np.int64),
            frame_size,
            label_space,
        )

    # conversions ----------------------------------------------------------------------------------------
    def to(self, fmt: BoxFormat, *, normalized: bool = False) -> np.ndarray:
        return convert_boxes(self.boxes, "xyxy", fmt, frame_size=self.frame_size, dst_normalized=normalized).astype(
            np.float32
        )

    def __len__(self) -> int:
        return len(self.scores)

    def _take(self, keep: np.ndarray) -> "Detections":
        return Detections(
            self.boxes[keep], self.scores[keep], self.class_ids[keep], self.frame_size, self.label_space, self.extra
        )

    def clip(self) -> "Detections":
        """Clip boxes to the frame and drop the ones that end up with no area."""
        width, height = self.frame_size
        boxes = self.boxes.copy()
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[keep], self.scores[keep], self.class_ids[keep], self.frame_size, self.label_space, self.extra)

    def rescaled(self, frame_size: tuple[int, int]) -> "Detections":
        """The same detections on a frame of another size (e.g. from a resized model input back to the original)."""
        sx = frame_size[0] / self.frame_size[0]
        sy = frame_size[1] / self.frame_size[1]
        boxes = self.boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
        return Detections(boxes, self.scores, self.class_ids, frame_size, self.label_space, self.extra)

    def filtered(
        self,
        *,
        min_score: float = 0.0,
        top_k: int | None = None,
        classes: Iterable[int] | None = None,
        max_score: float | None = None,
    ) -> "Detections":
        """Apply a post-processing policy: score threshold, class filter, then the top-k by score, best first.
        ``max_score`` (exclusive) keeps only boxes below it: what a policy saved but does not show."""
        keep = self.scores >= min_score
        if max_score is not None:
            keep &= self.scores < max_score
        if classes is not None:
            keep &= np.isin(self.class_ids, np.fromiter(classes, dtype=np.int64))
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-self.scores[idx], kind="stable")]
        if top_k is not None:
            idx = idx[:top_k]
        return self._take(idx)

    def to_coco_records(self, image_id: int) -> list[dict]:
        """COCO results-json rows (bbox xywh pixels) for this frame."""
        xywh = self.to("xywh")
        return [
            {
                "frame": int(image_id),
                "bbox": [round(float(v), 3) for v in box],
                "score": round(float(score), 5),
                "category_id": int(cid),
            }
            for box, score, cid in zip(xywh, self.scores, self.class_ids)
        ]


def group_coco_records(
    records: Iterable[Mapping[str, Any]],
    frame_size: tuple[int, int] | None,
    *,
    label_space: str = "coco",
) -> dict[int, "Detections"]:
    """Results-json rows of many frames as ``{frame: Detections}`` (frames without a row are absent).

    ``frame_size`` None (a folder that never recorded it): the boxes' own extent stands in; nothing that
    reads saved detections clips them, so the size only has to be valid.
    """
    by_frame: dict[int, list[Mapping[str, Any]]] = {}
    for rec in records:
        by_frame.setdefault(int(rec["frame"]), []).append(rec)
    if frame_size is None:
        boxes = [r["bbox"] for rows in by_frame.values() for r in rows]
        right = max((float(b[0]) + float(b[2]) for b in boxes), default=1.0)
        bottom = max((float(b[1]) + float(b[3]) for b in boxes), default=1.0)
        frame_size = (max(1, int(np.ceil(right))), max(1, int(np.ceil(bottom))))
    return {frame: Detections.from_coco_records(rows, frame_size, label_space=label_space)
            for frame, rows in sorted(by_frame.items())}
