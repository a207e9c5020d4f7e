"""Input preparation shared by all backends in ``shared`` mode.

``native``: each backend gets the original frame and preprocesses it the way its users normally do (TF's
graph resizes internally; OpenCV's blobFromImage resizes with its own interpolation...). ``shared``: the
harness resizes the frame once to the network's input size and every backend gets the identical pixels, so
that differences between backends come from the runtime, not from resizing. Boxes found on the resized
frame are scaled back to the original frame by :meth:`Detections.rescaled`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PreprocessMode = Literal["native", "shared"]
PREPROCESS_MODES: tuple[str, ...] = ("native", "shared")


def shared_resize(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a BGR frame to ``size`` = (width, height) with bilinear interpolation (cv2.INTER_LINEAR)."""
    import cv2

    if (frame_bgr.shape[1], frame_bgr.shape[0]) == tuple(size):
        return frame_bgr
    return cv2.resize(frame_bgr, tuple(int(v) for v in size), interpolation=cv2.INTER_LINEAR)
