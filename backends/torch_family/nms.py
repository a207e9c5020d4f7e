"""The family's ``Predictor`` postprocessing, in numpy: per class (background excluded), the scores above a
threshold, the ``candidate_size`` best, greedy hard NMS (a box is dropped when its IoU with a kept one exceeds
the threshold; IoU with the family's 1e-5 in the denominator), at most ``top_k`` kept per class. Results are
listed by class, then in NMS order, as the Predictor lists them.
"""

from __future__ import annotations

import numpy as np


def _area(boxes: np.ndarray) -> np.ndarray:
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0.0, None)
    return wh[..., 0] * wh[..., 1]


def hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = -1,
             candidate_size: int = 200) -> np.ndarray:
    """Indices (into ``boxes``) that the family's ``hard_nms`` keeps, in its order."""
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
    """One image's ``scores [P, C]`` and corner ``boxes [P, 4]`` (normalized) -> kept boxes (normalized),
    probabilities and class indices (1..C-1)."""
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
