"""The sample library of a LoadGen-driven job: every frame the job scores, decoded and preprocessed into memory
before timing starts.

MLPerf LoadGen times a query from its scheduled issue to its completion and assumes the sample is already in
memory (its QuerySampleLibrary loads samples before the timed part); a harness that decoded the video while
serving would charge the model for decoding that competes with it for the CPU. So the LoadGen path decodes
the job's frames (``--frames N`` of the source, or all of it) once, applies the shared resize when the job
uses shared preprocessing, and keeps the results here. LoadGen then asks for sample indices, repeating
them (``--min-duration``, ``--min-frames``) as often as it wants: the library loops, the source is read once.

The library has a stated memory budget (:data:`BUDGET_MB`, or ``HARNESS_PRELOAD_MB``); a job whose frames
would not fit is refused before anything is decoded, with the frame count that would fit.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field

import numpy as np

from harness.core.errors import HarnessError
from harness.execution.scenarios.context import ScenarioContext
from harness.data.video import Frame

#: the default memory the preloaded frames may take (MiB); the environment variable overrides it
BUDGET_MB = 2048
BUDGET_ENV = "HARNESS_PRELOAD_MB"


def budget_mb() -> float:
    raw = os.environ.get(BUDGET_ENV)
    if raw is None:
        return float(BUDGET_MB)
    try:
        value = float(raw)
    except ValueError:
        raise HarnessError(f"{BUDGET_ENV}={raw!r} is not a number", f"set {BUDGET_ENV} to a size in MiB, e.g. 4096") from None
    if value <= 0:
        raise HarnessError(f"{BUDGET_ENV}={raw!r} must be positive", f"set {BUDGET_ENV} to a size in MiB, e.g. 4096")
    return value


def frame_checksum(image: np.ndarray) -> str:
    """The decoded frame's identity (its pixels, shape included): what the tests compare with a fresh decode."""
    digest = hashlib.sha256()
    digest.update(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Sample:
    """One preloaded frame: the model's input (resized when preprocessing is shared), the original frame's
    size (to put boxes back in its pixels), and what preparing it cost (reported, not timed)."""

    frame: Frame  # index and decode time; ``image`` is the model input
    original_size: tuple[int, int]  # width, height of the decoded frame
    resize_ns: int
    checksum: str


@dataclass
class SampleLibrary:
    samples: list[Sample] = field(default_factory=list)
    bytes: int = 0
    load_s: float = 0.0
    budget_mb: float = float(BUDGET_MB)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> dict:
        return {"frames": len(self.samples), "mb": round(self.bytes / 2**20, 1), "budget_mb": self.budget_mb,
                "load_s": round(self.load_s, 3), "checksums": [s.checksum for s in self.samples],
                "frame_indices": [s.frame.index for s in self.samples]}


def _estimate_mb(ctx: ScenarioContext) -> float | None:
    """The library's size from what the source declares, before decoding (None when it declares no size)."""
    info = ctx.source.info
    count = ctx.total
    if not count:
        return None
    if ctx.shared and ctx.detector.input_size:
        w, h = ctx.detector.input_size
    else:
        w, h = getattr(info, "width", 0) or ctx.first.image.shape[1], getattr(info, "height", 0) or ctx.first.image.shape[0]
    return count * w * h * 3 / 2**20


def _too_big(mb: float, per_frame_mb: float, budget: float) -> HarnessError:
    fits = max(int(budget // per_frame_mb), 1) if per_frame_mb > 0 else 0
    return HarnessError(
        f"the preloaded frames would take {mb:.0f} MiB, over the {budget:.0f} MiB budget of the LoadGen sample "
        "library", f"score fewer frames (--frames {fits} fits), use --preprocess shared (frames kept at the "
        f"network's input size), or raise {BUDGET_ENV}")


def preload(ctx: ScenarioContext) -> SampleLibrary:
    """Decode and prepare the first pass of the job's frames (the ones it scores), within the budget."""
    budget = budget_mb()
    estimate = _estimate_mb(ctx)
    if estimate is not None and estimate > budget:
        raise _too_big(estimate, estimate / max(ctx.total or 1, 1), budget)
    lib = SampleLibrary(budget_mb=budget)
    started = time.perf_counter()
    clock = time.perf_counter_ns
    frames = ctx.frames
    try:
        for loop, frame in frames:
            if loop:  # LoadGen repeats samples itself: the source is read once
                break
            t0 = clock()
            image = ctx.prepared(frame.image)
            resize_ns = clock() - t0 if ctx.shared else 0
            original = (frame.image.shape[1], frame.image.shape[0])
            sample = Sample(Frame(frame.index, image, frame.decode_ns, frame.name), original, resize_ns,
                            frame_checksum(frame.image))
            lib.samples.append(sample)
            lib.bytes += image.nbytes
            if lib.bytes / 2**20 > budget:
                raise _too_big(lib.bytes / 2**20 * (ctx.total or len(lib)) / len(lib), lib.bytes / 2**20 / len(lib),
                               budget)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:  # stops the decoder thread: nothing decodes while LoadGen times the model
            close()
    if not lib.samples:
        raise HarnessError(f"{ctx.spec.source} yielded no frames", "check the video/image folder")
    lib.load_s = time.perf_counter() - started
    return lib
