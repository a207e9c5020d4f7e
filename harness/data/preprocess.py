"""Input preparation shared by the backends: the ``shared`` resize, and ready NHWC RGB batches.

``native``: each backend gets the original frame and preprocesses it the way its users normally do (TF's
graph resizes internally; OpenCV's blobFromImage resizes with its own interpolation...). ``shared``: the
harness resizes the frame once to the network's input size and every backend gets the identical pixels, so
that differences between backends come from the runtime, not from resizing. Boxes found on the resized
frame are scaled back to the original frame by :meth:`Detections.rescaled`.

Whatever a framework would otherwise do to an input before computing (reverse the channels, make it
contiguous, realign it) is preprocessing: :func:`rgb_batch` does it once, here, so that the inference stage
times only the framework's own work.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PreprocessMode = Literal["native", "shared"]
PREPROCESS_MODES: tuple[str, ...] = ("native", "shared")

#: bytes. TensorFlow feeds a C-contiguous array whose data is aligned to EIGEN_MAX_ALIGN_BYTES (16-64 by
#: build) without copying it (TF_NewTensor copies anything else); other runtimes don't mind the alignment.
ALIGNMENT = 64


def shared_resize(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a BGR frame to ``size`` = (width, height) with bilinear interpolation (cv2.INTER_LINEAR)."""
    import cv2

    if (frame_bgr.shape[1], frame_bgr.shape[0]) == tuple(size):
        return frame_bgr
    return cv2.resize(frame_bgr, tuple(int(v) for v in size), interpolation=cv2.INTER_LINEAR)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type = np.uint8, alignment: int = ALIGNMENT) -> np.ndarray:
    """A new C-contiguous array whose data starts on an ``alignment``-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    offset = (-raw.__array_interface__["data"][0]) % alignment
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray, alignment: int = ALIGNMENT) -> bool:
    return array.__array_interface__["data"][0] % alignment == 0


def rgb_batch(frame_bgr: np.ndarray) -> np.ndarray:
    """One BGR uint8 frame as a new ``[1, H, W, 3]`` RGB uint8 array, C-contiguous and aligned: the ready input
    of an NHWC RGB network. (OpenCV's SIMD channel swap writes it: ~30x faster than numpy's reversed-stride
    copy, which is what a framework does to a ``frame[..., ::-1]`` view inside its timed call.)"""
    height, width = frame_bgr.shape[:2]
    out = aligned_empty((1, height, width, 3), np.uint8)
    try:
        import cv2

        written = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB, dst=out[0])
        if written.__array_interface__["data"][0] == out.__array_interface__["data"][0]:
            return out
    except Exception:  # noqa: BLE001 - no OpenCV, or a frame layout cvtColor won't take: numpy does it
        pass
    np.copyto(out[0], frame_bgr[:, :, ::-1])
    return out


# batches ---------------------------------------------------------------------------

def check_same_size(frames: "list[np.ndarray] | tuple[np.ndarray, ...]") -> tuple[int, int]:
    """The (width, height) every frame of a batch shares; a batch of mixed sizes is one clear error."""
    from harness.core.errors import HarnessError

    sizes = {(f.shape[1], f.shape[0]) for f in frames}
    if len(sizes) != 1:
        raise HarnessError(f"a batch holds frames of {len(sizes)} sizes ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))})"
                           ": one tensor needs one size",
                           "use --preprocess shared (every frame resized to the network's input) for batches")
    return sizes.pop()


def rgb_stack(frames_bgr: "list[np.ndarray] | tuple[np.ndarray, ...]") -> np.ndarray:
    """Several BGR frames of one size as one new ``[N, H, W, 3]`` RGB uint8 array, C-contiguous and aligned:
    :func:`rgb_batch` for a batch (each frame written into its slot, no concatenation copy)."""
    width, height = check_same_size(frames_bgr)
    out = aligned_empty((len(frames_bgr), height, width, 3), np.uint8)
    try:
        import cv2
    except ImportError:  # pragma: no cover - every backend that batches has OpenCV beside it
        cv2 = None
    for i, frame in enumerate(frames_bgr):
        if cv2 is not None:
            written = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=out[i])
            if written.__array_interface__["data"][0] == out[i].__array_interface__["data"][0]:
                continue
        np.copyto(out[i], frame[:, :, ::-1])
    return out
