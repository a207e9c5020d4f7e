"""What ``harness serve`` and the ``v2`` client backend agree on, free of any server framework.

A served detector takes ONE of two inputs per request (its model metadata lists both):

* ``image``: ``BYTES [N]``, each element an encoded image (JPEG/PNG), base64 in JSON, as serverless detector
  functions take it;
* ``frames``: ``UINT8 [N, H, W, 3]``, raw RGB pixels (RGB because that is what v2 clients send; the server
  swaps to the BGR the harness's backends take, which is lossless, so raw frames give identical boxes).

It answers the canonical detections, padded to the most boxes of any frame (the OD API's layout):
``boxes FP32 [N, K, 4]`` x1, y1, x2, y2 in pixels of the frame sent, ``scores FP32 [N, K]``, ``classes INT64
[N, K]`` in the label space the response parameter ``label_space`` names, ``num_detections INT32 [N]``; and,
as response parameters, the server's own stage times in milliseconds (:data:`SERVER_STAGES`, floats) and in
nanoseconds (the same names ending ``_ns``, integers: the only numbers MLServer's gRPC side carries) and where
the hosted backend ran (``placement``, ``placement_evidence``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Iterable

import numpy as np

IMAGE_INPUT = "image"
FRAMES_INPUT = "frames"
OUTPUTS = ("boxes", "scores", "classes", "num_detections")
#: response parameters with the server's stage times (ms), summed over the request's frames: ``decode`` is
#: the image decode / tensor unpacking, the other three are the hosted backend's own stages
SERVER_STAGES = ("server_decode_ms", "server_pre_ms", "server_infer_ms", "server_post_ms")
#: the default cap on one request's body: a 4K raw frame in JSON is ~60 MB, a 1080p one ~15 MB
DEFAULT_MAX_REQUEST_MB = 32.0


def server_stage_times(params: dict[str, Any]) -> dict[str, float] | None:
    """The server's stage times in ms from a response's parameters: the ``_ns`` integers where the server sent
    them (exact, and what survives gRPC), else the ``_ms`` numbers; None when it reports no complete set."""
    out = {}
    for stage in SERVER_STAGES:
        ns, ms = params.get(stage[:-3] + "_ns"), params.get(stage)
        if isinstance(ns, int) and not isinstance(ns, bool):
            out[stage] = ns / 1e6
        elif isinstance(ms, (int, float)) and not isinstance(ms, bool):
            out[stage] = float(ms)
        else:
            return None
    return out


class BadRequest(ValueError):
    """A request the server refuses with a 4xx and this message (the server keeps serving)."""


def image_bytes(element: Any) -> bytes:
    """One BYTES element as the encoded image: base64 text in JSON (bytes as they came otherwise)."""
    if isinstance(element, (bytes, bytearray)):
        raw = bytes(element)
        if raw[:2] == b"\xff\xd8" or raw[:4] == b"\x89PNG":
            return raw
        element = raw.decode("ascii", "replace")
    if not isinstance(element, str):
        raise BadRequest(f"input {IMAGE_INPUT!r}: each element must be a base64 string, got {type(element).__name__}")
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"input {IMAGE_INPUT!r}: not base64 ({exc})") from None


def decode_images(elements: Iterable[Any]) -> list[np.ndarray]:
    """Encoded images -> BGR uint8 frames, refusing what OpenCV cannot decode."""
    import cv2

    frames = []
    for i, element in enumerate(elements):
        buf = np.frombuffer(image_bytes(element), dtype=np.uint8)
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if frame is None:
            raise BadRequest(f"input {IMAGE_INPUT!r}: element {i} is not a JPEG/PNG image OpenCV can decode")
        frames.append(frame)
    if not frames:
        raise BadRequest(f"input {IMAGE_INPUT!r} holds no image")
    return frames


def unpack_frames(data: Any, shape: Iterable[int], datatype: str) -> list[np.ndarray]:
    """A ``UINT8 [N, H, W, 3]`` RGB tensor (flat or nested JSON data) -> N BGR frames, or :class:`BadRequest`."""
    shape = [int(s) for s in shape]
    if datatype != "UINT8":
        raise BadRequest(f"input {FRAMES_INPUT!r} must be UINT8, got {datatype}")
    if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
        raise BadRequest(f"input {FRAMES_INPUT!r} must have shape [N, H, W, 3], got {shape}")
    try:  # bytes (raw gRPC contents: harness.serving.server.keep_raw_uint8_binary), an array, or JSON numbers
        arr = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else \
            np.asarray(data, dtype=None if isinstance(data, np.ndarray) else np.int64)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {FRAMES_INPUT!r}: data is not a list of integers ({exc})") from None
    if arr.size != int(np.prod(shape)):
        raise BadRequest(f"input {FRAMES_INPUT!r}: {arr.size} values for shape {shape} ({int(np.prod(shape))} expected)")
    if arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise BadRequest(f"input {FRAMES_INPUT!r}: values outside 0..255 for UINT8")
    rgb = arr.astype(np.uint8, copy=False).reshape(shape)
    return [np.ascontiguousarray(f[:, :, ::-1]) for f in rgb]


def pack_detections(results: list[Any]) -> dict[str, np.ndarray]:
    """Canonical :class:`~harness.core.detections.Detections` of N frames -> the padded output tensors."""
    k = max((len(d.scores) for d in results), default=0)
    n = len(results)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    classes = np.zeros((n, k), np.int64)
    counts = np.zeros((n,), np.int32)
    for i, d in enumerate(results):
        m = len(d.scores)
        boxes[i, :m], scores[i, :m], classes[i, :m], counts[i] = d.boxes, d.scores, d.class_ids, m
    return {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": counts}
