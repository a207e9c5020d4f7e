"""The calibration split of int8 variants: frames a quantizer may look at, and that no job ever scores.

Static int8 quantization picks each tensor's range from real inputs. Calibrating on the frames a job is then
scored on flatters the variant (its ranges are fitted to the test set), so the split is another source than
the one measured: by default the first 100 images of ``coco128`` (COCO train2017 images with people among
80 categories, downloadable from COCO's own server, never a video the harness scores by default), or any
asset or path given as ``--opt calibration=...`` with ``--opt calibration_frames=N``. The split is part of
the variant's cache key, recorded with each job (``runs.csv`` column ``calibration``), and a job whose source
is the calibration source is refused before it runs (:func:`check_not_scored`), by content as well as by
path (a byte-identical copy under another name is the same frames: :func:`check_plan_calibration`).

A split records the frames it actually used: ``calibration_frames=500`` on a 71-frame video calibrates on 71
and says so; a source with fewer than :data:`MIN_CALIBRATION_FRAMES` usable frames is refused, since a
quantizer that sees one frame fits every tensor's range to that frame alone.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.core.errors import HarnessError

DEFAULT_CALIBRATION = "coco128"
DEFAULT_CALIBRATION_FRAMES = 100
#: fewer frames than this is no calibration: the ranges would be fitted to a handful of images
MIN_CALIBRATION_FRAMES = 10


@dataclass(frozen=True)
class CalibrationSplit:
    """Which frames calibrate an int8 variant: the first ``frames`` frames of ``source`` (asset or path)."""

    source: str = DEFAULT_CALIBRATION
    frames: int = DEFAULT_CALIBRATION_FRAMES

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "CalibrationSplit":
        """The split a job's options name (``calibration``, ``calibration_frames``), checked."""
        source = str(options.get("calibration", DEFAULT_CALIBRATION)).strip()
        raw = options.get("calibration_frames", DEFAULT_CALIBRATION_FRAMES)
        if not source:
            raise HarnessError("--opt calibration is empty", "name a video or image folder (asset or path), "
                               f"or leave it out for {DEFAULT_CALIBRATION}")
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            raise HarnessError(f"--opt calibration_frames={raw!r}: expected a positive integer",
                               f"e.g. calibration_frames={DEFAULT_CALIBRATION_FRAMES}")
        return cls(source, int(raw))

    def path(self) -> Path:
        """The source as a file or folder here (an asset is fetched or found like any job source)."""
        from harness.data.assets import resolve

        return resolve(self.source).absolute()

    def key(self) -> dict[str, Any]:
        """What decides the calibration data, for a variant's cache key: the source's name, the count, and
        a digest of the bytes (a video) or of the file names and sizes (an image folder)."""
        path = self.path()
        digest = hashlib.sha256()
        if path.is_dir():
            for item in sorted(path.iterdir()):
                if item.is_file():
                    digest.update(f"{item.name}:{item.stat().st_size}\n".encode())
        else:
            from harness.data.assets import sha256_of

            digest.update(sha256_of(path).encode())
        return {"source": self.source, "frames": self.usable_frames(), "digest": digest.hexdigest()[:16]}

    def record(self) -> dict[str, Any]:
        """What a job records about its variant's calibration (jobs.json, the ``calibration`` column), and
        what :func:`check_not_scored` compares with the job's source."""
        used = self.usable_frames()
        return {"source": self.source, "path": str(self.path()), "frames": used, "requested_frames": self.frames,
                "describe": self.describe(used)}

    def available_frames(self) -> int:
        """How many frames the source holds (a video's frame count, an image folder's images)."""
        from harness.data.video import SourceError, open_source

        try:
            return int(open_source(self.path()).info.frame_count)
        except SourceError as exc:
            raise HarnessError(f"calibration source {self.source}: {exc.problem}",
                               exc.fix or "name a video or image folder in --opt calibration=...") from exc

    def usable_frames(self) -> int:
        """The frames the quantizer will see: the count asked, or all the source has when that is fewer;
        an error when that is under :data:`MIN_CALIBRATION_FRAMES`."""
        have = self.available_frames()
        used = min(self.frames, have) if have > 0 else self.frames
        if used < MIN_CALIBRATION_FRAMES:
            raise HarnessError(
                f"calibration source {self.source} has {have} usable frame(s); an int8 variant needs at least "
                f"{MIN_CALIBRATION_FRAMES} to set its ranges",
                "name a longer video or a bigger image folder in --opt calibration=... (the default, "
                f"{DEFAULT_CALIBRATION}, has 128 images)")
        return used

    @classmethod
    def from_key(cls, key: Mapping[str, Any]) -> "CalibrationSplit":
        """The split a cache key (:meth:`key`) names."""
        return cls(str(key.get("source", DEFAULT_CALIBRATION)), int(key.get("frames", DEFAULT_CALIBRATION_FRAMES)))

    def describe(self, used: int | None = None) -> str:
        """``coco128 frames 0-99`` (the frames the quantizer saw)."""
        n = self.frames if used is None else used
        return f"{self.source} frames 0-{n - 1}"


def calibration_frames(split: CalibrationSplit, size: tuple[int, int]) -> list[np.ndarray]:
    """The split's frames as RGB uint8 ``size`` (width, height) images, resized like ``shared`` preprocessing
    does (the input a job's network sees)."""
    from harness.data.preprocess import shared_resize
    from harness.data.video import open_source

    import cv2

    out = []
    for frame in open_source(split.path()).frames(split.frames):
        out.append(cv2.cvtColor(shared_resize(frame.image, size), cv2.COLOR_BGR2RGB))
    if len(out) < MIN_CALIBRATION_FRAMES:  # a container whose frame count overstated what decodes
        raise HarnessError(f"calibration source {split.source} decoded {len(out)} frame(s); an int8 variant needs "
                           f"at least {MIN_CALIBRATION_FRAMES}",
                           "name a video or image folder with more frames in --opt calibration=...")
    return out


def _same_file(a: Path | str, b: Path | str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def check_not_scored(calibration: Mapping[str, Any] | None, source_path: Path | str) -> None:
    """Refuse a job that would score the frames its variant was calibrated on.

    ``calibration`` is what the backend recorded (``{"source", "path", "frames"}``); every frame of a job's
    source is scored, so the same source file is refused whatever the frame counts.
    """
    if not calibration or not calibration.get("path"):
        return
    if _same_file(calibration["path"], source_path):
        raise HarnessError(
            f"this int8 variant was calibrated on {calibration.get('source')} frames 0-"
            f"{int(calibration.get('frames', 1)) - 1}, and the job would score that same source",
            "calibrate on another source (--opt calibration=NAME_OR_PATH, e.g. calibration=tud-campus) or score "
            "another video: calibration frames must never be scored",
        )


def _content_digests(path: Path) -> set[str]:
    """sha256 of a file, or of every file in a folder: what "the same frames" means across names."""
    from harness.data.assets.checksums import file_sha256

    if path.is_dir():
        return {file_sha256(item) for item in sorted(path.iterdir()) if item.is_file()}
    return {file_sha256(path)} if path.is_file() else set()


def check_plan_calibration(split: CalibrationSplit, scored: Mapping[str, Path], job_id: str) -> None:
    """Before a run: refuse an int8 job whose calibration frames are any source the run scores, compared by
    path and by content (a byte-identical copy of the scored video, or an image folder sharing image files
    with a scored one), and one whose source has too few frames (:meth:`CalibrationSplit.usable_frames`).

    ``scored``: every source of the run by name, resolved. A re-encode of the same footage is not detected
    (that would need decoding both); the docs say so.
    """
    calibration = split.path()
    split.usable_frames()
    mine = _content_digests(calibration)
    for name, source in scored.items():
        same = _same_file(calibration, source) or bool(mine & _content_digests(source))
        if same:
            raise HarnessError(
                f"job {job_id}: its int8 variant would be calibrated on {split.source}, which holds the same "
                f"frames as {name}, a source this run scores (compared by content)",
                "calibrate on another source (--opt calibration=NAME_OR_PATH, e.g. calibration=coco128 or "
                "tud-campus): calibration frames must never be scored")
