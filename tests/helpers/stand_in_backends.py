"""Deliberately misbehaving detectors, used through the ``package.module:Class`` backend spec, e.g.
``harness run --backend tests.helpers.stand_in_backends:SegfaultDetector``.

They stand in for a broken framework, never for a real model: every suite that uses them also runs a real
backend (tf1 on PETS) to show that the suite survives. Options (``--opt key=value``) pick the frame where
each misbehaves and where it reports its process id (so a test can check the worker is gone).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.core.detections import Detections
from harness.core.detector import Detector, Placement
from harness.core.errors import HarnessError


class FrameStatsDetector(Detector):
    """A deterministic stand-in: one "person" box per frame from the frame's brightest 10% of pixels.

    Its output depends on the pixels only, so two runs on the same frames must agree exactly; ``delay_s``
    makes it slow enough for a test to interrupt it in the middle of a suite.
    """

    name = "frame-stats"
    known_options = {
        "pid_dir": "folder where load() writes <Class>.pid",
        "delay_s": "seconds each inference sleeps",
        "after": "the inference on which a misbehaving subclass breaks (default 3)",
        "ignore_sigterm": "HangDetector: ignore SIGTERM so the executor must escalate to SIGKILL",
    }

    def load(self) -> None:
        pid_dir = self.config.option("pid_dir")
        if pid_dir:  # <pid_dir>/<Class>.pid: lets a test find (and check the end of) this worker process
            Path(pid_dir, f"{type(self).__name__}.pid").write_text(str(os.getpid()))
        self.input_size = (300, 300)
        self.frames_seen = 0

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        return frame_bgr.mean(axis=2)

    def infer(self, inputs: np.ndarray) -> Any:
        self.frames_seen += 1
        self.misbehave(self.frames_seen)
        delay = float(self.config.option("delay_s", 0.0))
        if delay:
            time.sleep(delay)
        ys, xs = np.nonzero(inputs >= np.percentile(inputs, 90))
        return xs, ys, float(inputs.mean())

    def misbehave(self, frame_number: int) -> None:
        """Subclasses break here, on the frame_number-th inference (warm-up included)."""

    def postprocess(self, raw: Any, frame_size: tuple[int, int]) -> Detections:
        xs, ys, mean = raw
        if not len(xs):
            return Detections.empty(frame_size)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
        return Detections.from_boxes(box, np.array([min(mean / 255.0, 1.0)]), np.array([1]), frame_size)

    def placement(self) -> Placement:
        return Placement(self.config.device, "cpu", "test backend: numpy on the CPU")


def _after(detector: Detector) -> int:
    return int(detector.config.option("after", 3))


class SegfaultDetector(FrameStatsDetector):
    """Dies by SIGSEGV, as a native library with a memory bug does."""

    def misbehave(self, frame_number: int) -> None:
        if frame_number >= _after(self):
            print(f"SegfaultDetector: crashing on inference {frame_number}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)


class OOMKilledDetector(FrameStatsDetector):
    """Dies by SIGKILL from "outside", as the kernel's out-of-memory killer does it."""

    def misbehave(self, frame_number: int) -> None:
        if frame_number >= _after(self):
            os.kill(os.getpid(), signal.SIGKILL)


class ExitDetector(FrameStatsDetector):
    """A library that calls exit() (some do on a fatal CUDA error)."""

    def misbehave(self, frame_number: int) -> None:
        if frame_number >= _after(self):
            print("ExitDetector: fatal error, calling exit(3)", file=sys.stderr, flush=True)
            os._exit(3)


class RaisingDetector(FrameStatsDetector):
    """An ordinary Python exception from inside the framework."""

    def misbehave(self, frame_number: int) -> None:
        if frame_number >= _after(self):
            raise RuntimeError(f"deliberate failure on inference {frame_number}")


class HangDetector(FrameStatsDetector):
    """Never finishes: a deadlocked driver call. ``ignore_sigterm`` makes the executor escalate to SIGKILL."""

    def load(self) -> None:
        if self.config.option("ignore_sigterm", False):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        super().load()

    def misbehave(self, frame_number: int) -> None:
        if frame_number >= _after(self):
            while True:
                time.sleep(1)


class MissingFrameworkDetector(FrameStatsDetector):
    """A backend whose framework is not installed."""

    modules = ("harness_no_such_framework",)

    def load(self) -> None:
        import harness_no_such_framework  # type: ignore[import-not-found]  # noqa: F401

        super().load()


class OptionCheckingDetector(FrameStatsDetector):
    """A backend that declares its options, to test that ``harness run`` lets a backend refuse unknown
    ``--opt`` keys before anything runs (``validate_options``, called at job expansion)."""

    OPTIONS = ("after", "delay_s", "pid_dir")

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise HarnessError(f"unknown option(s) for this backend: {', '.join(unknown)}",
                               f"use: {', '.join(cls.OPTIONS)}")


class SlowDetector(FrameStatsDetector):
    """A detector slower than the video: it sleeps ``sleep_s`` (default 0.15 s) in every inference on the
    real frames it is given, then finds its one box from their pixels. For the realtime and server scenarios:
    PETS at its 10 FPS releases a frame every 0.1 s, so this backend must miss some (the realtime scenario)."""

    name = "slow"
    known_options = {**FrameStatsDetector.known_options, "sleep_s": "seconds each inference sleeps (default 0.15)"}

    def infer(self, inputs: np.ndarray) -> Any:
        time.sleep(float(self.config.option("sleep_s", 0.15)))
        return super().infer(inputs)


class UnevenInstancesDetector(FrameStatsDetector):
    """Every instance after the first in one process reports another precision (fp16 for fp32) or, with
    ``--opt uneven=placement``, another device: what a second model instance of multi-stream or server can meet
    for real (a GPU already full, a plugin that compiles differently), made certain for a test."""

    name = "uneven-instances"
    known_options = {**FrameStatsDetector.known_options, "uneven": "precision (default) or placement"}
    loaded = 0  # instances loaded in this process

    def load(self) -> None:
        super().load()
        type(self).loaded += 1
        self.ordinal = type(self).loaded

    def _uneven(self, what: str) -> bool:
        return self.ordinal > 1 and self.config.option("uneven", "precision") == what

    def placement(self) -> Placement:
        if self._uneven("placement"):
            return Placement(self.config.device, "cuda:0", "test backend: a later instance on another device")
        return super().placement()

    def precision_report(self) -> Any:
        from harness.core.precision import PrecisionReport

        effective = "fp16" if self._uneven("precision") else "fp32"
        return PrecisionReport(self.config.precision, effective, f"test backend: instance {self.ordinal}")


class LeavesChildDetector(FrameStatsDetector):
    """Forks a child that outlives the worker (as OpenVINO's telemetry sender did with no network): the
    child detaches from the worker (double fork, re-parented to init) and sleeps; ``pid_dir`` gets its pid."""

    def load(self) -> None:
        super().load()
        first = os.fork()
        if first == 0:  # the intermediate child: fork the sleeper, then leave it an orphan
            if os.fork() == 0:
                pid_dir = self.config.option("pid_dir")
                if pid_dir:
                    Path(pid_dir, "orphan.pid").write_text(str(os.getpid()))
                os.closerange(3, 1024)  # hold none of the worker's pipes (the executor must not wait on them)
                time.sleep(600)
                os._exit(0)
            os._exit(0)
        os.waitpid(first, 0)
