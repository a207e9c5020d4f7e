"""One-to-one matching of two sets of boxes by IoU (and class): the primitive under agreement and tests.

Greedy on IoU, highest first, like COCO's matcher but symmetric (neither side is ground truth): with the
near-identical outputs of the same weights in two frameworks it gives the same pairs as an optimal
assignment, and it is easy to reason about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.core.detections import Detections, box_iou


@dataclass(frozen=True)
class FrameMatch:
    """Pairs ``(i, j)`` of indices into ``a`` and ``b``, their IoUs, and what stayed unmatched."""

    pairs: np.ndarray  # int[M, 2]
    ious: np.ndarray  # float[M]
    unmatched_a: np.ndarray  # int indices into a
    unmatched_b: np.ndarray  # int indices into b

    @property
    def matched(self) -> int:
        return len(self.pairs)


def match_boxes(
    boxes_a: np.ndarray,
    boxes_b: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    classes_a: np.ndarray | None = None,
    classes_b: np.ndarray | None = None,
) -> FrameMatch:
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iou = box_iou(boxes_a, boxes_b)
    if classes_a is not None and classes_b is not None and iou.size:
        iou = np.where(np.asarray(classes_a)[:, None] == np.asarray(classes_b)[None, :], iou, 0.0)
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    if iou.size:
        cand = np.argwhere(iou >= iou_threshold)
        order = np.argsort(-iou[cand[:, 0], cand[:, 1]], kind="stable")
        used_a: set[int] = set()
        used_b: set[int] = set()
        for i, j in cand[order]:
            if i in used_a or j in used_b:
                continue
            used_a.add(int(i))
            used_b.add(int(j))
            pairs.append((int(i), int(j)))
            ious.append(float(iou[i, j]))
    pairs_arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    un_a = np.setdiff1d(np.arange(len(boxes_a)), pairs_arr[:, 0])
    un_b = np.setdiff1d(np.arange(len(boxes_b)), pairs_arr[:, 1])
    return FrameMatch(pairs_arr, np.array(ious, dtype=np.float64), un_a, un_b)


def match_detections(a: Detections, b: Detections, *, iou_threshold: float = 0.5, same_class: bool = True) -> FrameMatch:
    if a.frame_size != b.frame_size:
        raise ValueError(f"detections are on frames of different sizes: {a.frame_size} vs {b.frame_size}")
    return match_boxes(
        a.boxes,
        b.boxes,
        iou_threshold=iou_threshold,
        classes_a=a.class_ids if same_class else None,
        classes_b=b.class_ids if same_class else None,
    )
