"""Frame sources (a video file, a folder of images) and the background decoder that keeps inference fed.

Decoding is never inside the timed stages: a thread decodes ahead into a bounded queue, and the time each
frame took to decode is recorded beside it. Every frame is handed on as BGR uint8 with three channels
(grayscale and 4-channel inputs are converted here, once, so backends need not care).
"""

from __future__ import annotations

import queue
import stat
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from harness.core.errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class SourceInfo:
    path: str
    kind: str  # "video" | "images"
    frame_count: int
    fps: float | None
    width: int | None
    height: int | None


@dataclass
class Frame:
    index: int  # 0-based position in the source
    image: np.ndarray  # BGR uint8 HxWx3
    decode_ns: int
    name: str = ""  # file name for image folders


def to_bgr(image: np.ndarray, where: str) -> np.ndarray:
    """Make any decoded image a 3-channel uint8 BGR array."""
    import cv2

    if image is None or image.size == 0:
        raise SourceError(f"{where}: decoded an empty image", "check that the file is a valid image or video")
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise SourceError(f"{where}: unsupported image shape {image.shape}", "use 1-, 3- or 4-channel images")


class FrameSource(ABC):
    info: SourceInfo

    @abstractmethod
    def frames(self, limit: int | None = None) -> Iterator[Frame]:
        """Decode frames in order, at most ``limit``."""


def special_file_kind(path: Path) -> str | None:
    """What a path that is neither a regular file nor a folder is ("a character device"...), else None.

    Their size is 0, so without this a device or a pipe was reported as an empty video file.
    """
    mode = path.stat().st_mode
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


class VideoFileSource(FrameSource):
    def __init__(self, path: Path) -> None:
        import cv2

        self.path = path
        if not path.exists():
            raise SourceError(f"video not found: {path}", "check the path, or use an asset name such as 'pets09-s2l1'")
        kind = special_file_kind(path)
        if kind:  # checked before OpenCV opens it: reading a FIFO would wait forever, /dev/zero never ends
            raise SourceError(f"{path} is {kind}, not a video file",
                              "give a video file, a folder of images, or an asset name such as 'pets09-s2l1'")
        if path.stat().st_size == 0:
            raise SourceError(f"video is empty (0 bytes): {path}", "re-download or re-encode the file")
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise SourceError(
                    f"OpenCV cannot open the video {path}: unknown container/codec or a corrupt file",
                    "re-encode it (e.g. ffmpeg -i in.avi -c:v libx264 out.mp4) or check the file",
                )
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or None
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) or None
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0) or None
            ok, first = cap.read()
            if not ok or first is None:
                raise SourceError(
                    f"the video {path} has no decodable frames (empty, truncated or corrupt)",
                    "check the file plays, or re-encode it",
                )
        finally:
            cap.release()
        self.info = SourceInfo(str(path), "video", count, fps, width, height)

    def frames(self, limit: int | None = None) -> Iterator[Frame]:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        clock = time.perf_counter_ns
        try:
            index = 0
            while limit is None or index < limit:
                t0 = clock()
                ok, image = cap.read()
                if not ok or image is None:
                    break
                image = to_bgr(image, f"{self.path} frame {index}")
                yield Frame(index, image, clock() - t0)
                index += 1
        finally:
            cap.release()


class ImageFolderSource(FrameSource):
    """Images of a folder in sorted file-name order; non-image files are an error, not silently skipped."""

    def __init__(self, path: Path, files: list[str] | None = None) -> None:
        if not path.is_dir():
            raise SourceError(f"image folder not found: {path}", "check the path")
        if files is None:
            entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            bad = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
            if bad:
                raise SourceError(
                    f"the image folder {path} holds files that are not images: {', '.join(bad[:5])}",
                    f"move them out, or keep only {', '.join(sorted(IMAGE_SUFFIXES))} files there",
                )
            files = [p.name for p in entries]
        if not files:
            raise SourceError(f"the image folder {path} holds no images", "point at a folder with .jpg/.png files")
        self.path = path
        self.files = files
        self.info = SourceInfo(str(path), "images", len(files), None, None, None)

    def frames(self, limit: int | None = None) -> Iterator[Frame]:
        import cv2

        clock = time.perf_counter_ns
        for index, name in enumerate(self.files[: limit if limit is not None else None]):
            t0 = clock()
            image = cv2.imread(str(self.path / name), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise SourceError(f"cannot decode image {self.path / name}", "the file is corrupt or not an image")
            image = to_bgr(image, str(self.path / name))
            yield Frame(index, image, clock() - t0, name)


def open_source(path: str | Path) -> FrameSource:
    p = Path(path)
    if p.is_dir():
        return ImageFolderSource(p)
    return VideoFileSource(p)


_END = object()


class Prefetcher:
    """Decode in a background thread into a bounded queue; exceptions surface in the consumer."""

    def __init__(self, frames: Iterator[Frame], depth: int = 8) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(frames,), name="harness-decoder", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, frames: Iterator[Frame]) -> None:
        try:
            for frame in frames:
                if not self._put(frame):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._put(exc)

    def __iter__(self) -> Iterator[Frame]:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
