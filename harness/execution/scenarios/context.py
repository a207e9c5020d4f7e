"""What every scenario shares: the loaded job (:class:`ScenarioContext`), the per-frame bookkeeping
(:class:`Recorder`), looping the source, precise release clocks, and what a scenario hands back
(:class:`ScenarioRun`).

The rules every scenario keeps (so accuracy and agreement work the same for all of them): a frame's
detections are saved once per distinct frame (the first time it is processed; a looped source repeats frames,
and a dropped frame has none), ``frames.csv`` gets one row per timed frame, and the stage times are measured
exactly as the single-stream loop measures them (the shared resize counts as preprocessing).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from harness.core.detections import Detections
from harness.core.detector import Detector
from harness.core.jobs import JobSpec
from harness.data.preprocess import shared_resize
from harness.data.video import Frame, FrameSource, Prefetcher

#: (pass number, frame): pass 0 is the source itself, later passes repeat it (``--min-duration``)
LoopedFrame = tuple[int, Frame]
Progress = Callable[[int, "int | None", float], None]
Stages = tuple[int, int, int]  # pre, infer, post nanoseconds
#: the release clock sleeps until this long before a deadline and spins the rest (time.sleep wakes late by
#: 50-100 us on Linux, a spin costs the CPU only this long per release)
SPIN_S = 0.0005
#: a scenario that releases frames on a clock starts it this long after setting up, so the first release is on time
START_LEAD_S = 0.05
#: a release clock late by more than this share of the interval between releases (p99) did not hold the rate
#: the row claims: the row is invalid (realtime: the frame period; server: the mean time between arrivals)
RELEASE_JITTER_MAX_SHARE = 0.1


def clock_error(jitter_ns: list[int] | np.ndarray, interval_s: float, what: str) -> list[str]:
    """The release clock's validity: its p99 lateness against :data:`RELEASE_JITTER_MAX_SHARE` of the interval."""
    late = np.abs(np.asarray(jitter_ns, dtype=np.float64))
    if not late.size:
        return []
    p99_ms = percentile_ms(late, 99)
    limit_ms = RELEASE_JITTER_MAX_SHARE * interval_s * 1000
    if p99_ms <= limit_ms:
        return []
    return [f"the {what} clock ran late: p99 {p99_ms:.1f} ms behind schedule, over {limit_ms:.1f} ms "
            f"({RELEASE_JITTER_MAX_SHARE:.0%} of the {interval_s * 1000:.0f} ms between {what}s): the machine was too "
            "busy to hold the rate"]


def sleep_until(deadline: float) -> float:
    """Sleep until ``time.perf_counter()`` reaches ``deadline``; return the time it woke (never before)."""
    clock = time.perf_counter
    while True:
        now = clock()
        remaining = deadline - now
        if remaining <= 0:
            return now
        if remaining > SPIN_S:
            time.sleep(remaining - SPIN_S)


def frame_passes(source: FrameSource, limit: int | None, loops: bool) -> Iterator[LoopedFrame]:
    """The source's frames (at most ``limit`` per pass), then again and again when ``loops``; the consumer
    decides when it has enough (:meth:`ScenarioContext.keep_going`)."""
    loop = 0
    while True:
        seen = 0
        for frame in source.frames(limit):
            seen += 1
            yield loop, frame
        if not loops or seen == 0:
            return
        loop += 1


@dataclass
class ScenarioRun:
    """What a scenario measured, for the runner to turn into a row (:func:`harness.execution.runner.run_job`).

    ``samples_ns`` holds one (pre, infer, post) row per timed model call: a frame, or a batch (offline); the
    row's latency percentiles come from their sums. ``e2e_ns`` holds end-to-end latencies where frames wait
    (realtime, server: release or arrival to result), and ``headline`` names the percentile the scenario's
    answer rests on, which the validity rules check has enough samples behind it.
    """

    samples_ns: np.ndarray
    frames_timed: int
    decode_ns: np.ndarray
    wall_s: float
    frame_rows: list[dict[str, Any]]
    records: list[dict[str, Any]]
    n_dets: list[int]
    frames_seen: int  # distinct frames taken from the source (processed or dropped)
    columns: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    headline: str = "p90"  # "p90" | "p99" | "e2e_p99" | "" (offline: throughput, no percentile)
    e2e_ns: np.ndarray | None = None
    invalid: list[str] = field(default_factory=list)  # the scenario's own reasons its row can't be trusted


class Recorder:
    """Collects per-frame rows, timings and detections; safe to call from several serving threads."""

    def __init__(self, spec: JobSpec, *, loop_column: bool) -> None:
        self.spec = spec
        self.loop_column = loop_column
        self.samples: list[Stages] = []
        self.decode: list[int] = []
        self.rows: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.n_dets: list[int] = []
        self.saved: set[int] = set()
        self.timed = 0
        self.loops_seen = 0
        self._lock = threading.Lock()

    def add(self, frame: Frame, dets: Detections, stages: Stages, loop: int = 0, *,
            extra: dict[str, Any] | None = None, sample: bool = True, save: bool = True) -> Detections:
        """Record one processed frame; returns the boxes it saved (``policy.record``), for comparisons.
        ``sample=False``: the frame belongs to a batch whose timing was added once (:meth:`add_sample`);
        ``save=False``: its boxes are not saved (another stream of a multi-stream run is saved instead)."""
        policy = self.spec.policy
        kept = policy.record(dets)
        n_shown = len(policy.apply(kept))
        pre, infer, post = stages
        row = {
            "job_id": self.spec.job_id,
            "frame": frame.index,
            "decode_ms": round(frame.decode_ns / 1e6, 4),
            "pre_ms": round(pre / 1e6, 4),
            "infer_ms": round(infer / 1e6, 4),
            "post_ms": round(post / 1e6, 4),
            "n_dets": n_shown,
        }
        if self.loop_column:
            row["loop"] = loop
        # per-frame columns a backend measures beyond the three stages (the v2 client: the server's own times)
        row.update(dets.extra.get("columns") or {})
        if extra:
            row.update(extra)
        with self._lock:
            if sample:
                self.samples.append(stages)
            self.decode.append(frame.decode_ns)
            self.n_dets.append(n_shown)
            self.rows.append(row)
            self.timed += 1
            self.loops_seen = max(self.loops_seen, loop + 1)
            if save and frame.index not in self.saved:
                self.saved.add(frame.index)
                self.records.extend(kept.to_coco_records(frame.index))
        return kept

    def add_sample(self, stages: Stages) -> None:
        with self._lock:
            self.samples.append(stages)

    def result(self, wall_s: float, frames_seen: int, **kwargs: Any) -> ScenarioRun:
        columns = {"distinct_frames": len(self.saved), "loops": self.loops_seen}
        columns.update(kwargs.pop("columns", {}))
        return ScenarioRun(
            samples_ns=np.array(self.samples, dtype=np.int64).reshape(-1, 3),
            frames_timed=self.timed,
            decode_ns=np.array(self.decode, dtype=np.int64),
            wall_s=wall_s,
            frame_rows=self.rows,
            records=self.records,
            n_dets=self.n_dets,
            frames_seen=frames_seen,
            columns=columns,
            **kwargs,
        )


@dataclass
class ScenarioContext:
    """A loaded, warmed-up job ready for its timed part.

    ``frames`` yields the source's (pass, frame) pairs, the first frame (used for warm-up) included;
    ``open_stream`` gives another independent decoder of the same source (multi-stream);
    ``new_detector`` loads and warms another instance of the job's model (multi-stream and server
    instances). ``progress`` is the worker's progress callback.
    """

    spec: JobSpec
    detector: Detector
    source: FrameSource
    frames: Iterator[LoopedFrame]
    first: Frame
    new_detector: Callable[[], Detector]
    progress: Progress | None = None
    total: int | None = None  # frames a pass holds, as far as known (progress bars)
    _opened: list[Prefetcher] = field(default_factory=list)
    _last_report: float = 0.0

    @property
    def shared(self) -> bool:
        return self.spec.preprocess == "shared"

    @property
    def loops(self) -> bool:
        return self.spec.scenario.loops

    def recorder(self) -> Recorder:
        return Recorder(self.spec, loop_column=self.loops)

    def prepared(self, image: np.ndarray, detector: Detector | None = None) -> np.ndarray:
        det = detector or self.detector
        return shared_resize(image, det.input_size) if self.shared else image  # type: ignore[arg-type]

    def detect(self, detector: Detector, image: np.ndarray) -> tuple[Detections, Stages]:
        """One frame through the model exactly as the single-stream loop always timed it: the shared resize
        is part of preprocessing, and boxes come back in the original frame's pixels."""
        clock = time.perf_counter_ns
        t0 = clock()
        inputs = self.prepared(image, detector)
        t_resize = clock() - t0
        dets, st = detector.detect(inputs)
        if self.shared:
            dets = dets.rescaled((image.shape[1], image.shape[0]))
        return dets, (st.pre_ns + t_resize, st.infer_ns, st.post_ns)

    def keep_going(self, loop: int, timed: int, started: float) -> bool:
        """Whether a frame of pass ``loop`` is still wanted: the first pass always is (every frame of the source
        is timed); repeats only until the minimum frames and duration are reached."""
        if loop == 0:
            return True
        sc = self.spec.scenario
        if sc.min_frames and timed < sc.min_frames:
            return True
        return bool(sc.min_duration_s) and time.perf_counter() - started < float(sc.min_duration_s)

    def open_stream(self) -> Iterator[LoopedFrame]:
        """Another decoder of the job's source, in its own thread (closed by :meth:`close_streams`)."""
        prefetch = Prefetcher(frame_passes(self.source, self.spec.frames, self.loops))  # type: ignore[arg-type]
        self._opened.append(prefetch)
        return iter(prefetch)  # type: ignore[return-value]

    def close_streams(self) -> None:
        for prefetch in self._opened:
            prefetch.close()

    def tick(self, done: int, started: float, *, force: bool = False) -> None:
        """Report progress at most every 0.25 s (and once at the end with ``force``)."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if force or now - self._last_report >= 0.25:
            elapsed = now - started
            total = None if self.loops else self.total
            self.progress(done, total, done / elapsed if elapsed > 0 else 0.0)
            self._last_report = now


def percentile_ms(values_ns: list[int] | np.ndarray, q: float) -> float:
    """A percentile in milliseconds by LoadGen's method (harness.measure.metrics.latency.loadgen_percentile)."""
    from harness.measure.metrics.latency import loadgen_percentile

    arr = np.asarray(values_ns, dtype=np.float64)
    return round(float(loadgen_percentile(arr, q)) / 1e6, 4) if arr.size else float("nan")


def same_detections(a: Detections, b: Detections, *, box_px: float = 0.01, score: float = 1e-4) -> bool:
    """The same boxes (to a hundredth of a pixel), scores and classes, in any order."""
    if len(a) != len(b):
        return False
    if not len(a):
        return True
    ia, ib = np.lexsort((a.boxes[:, 0], -a.scores)), np.lexsort((b.boxes[:, 0], -b.scores))
    return (np.allclose(a.boxes[ia], b.boxes[ib], atol=box_px) and np.allclose(a.scores[ia], b.scores[ib], atol=score)
            and bool(np.array_equal(a.class_ids[ia], b.class_ids[ib])))
