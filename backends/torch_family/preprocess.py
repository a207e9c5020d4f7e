"""The family's ``PredictionTransform`` for one image: ``cv2.resize`` of the uint8 image to the config's size
(bilinear), then float32 ``(x - mean) / std``, HWC to CHW. Resizing the BGR frame and swapping the channels
afterwards gives the same numbers (the resize works per channel), which lets the backend upload BGR."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(frame, size)`` with OpenCV's default bilinear interpolation; no copy at the right size."""
    import cv2

    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    return cv2.resize(frame, (int(size[0]), int(size[1])))


def preprocess_rgb(rgb: np.ndarray, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """An RGB uint8 image -> the family's float32 ``[1, 3, H, W]`` input (numpy, for checks and exports)."""
    image = resize(rgb, size).astype(np.float32)
    image = (image - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])
