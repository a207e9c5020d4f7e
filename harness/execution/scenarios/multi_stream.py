"""Multi-stream: N sources decoded at once feeding the model, as N cameras on one box.

Each stream is its own decoder of the job's source in its own thread (N cameras showing the same scene: the
decoding load is real, and every stream's detections can be checked against every other's). With one model
instance (the default) the streams are served in turn, one inference at a time; with ``instances = N`` each
stream gets its own loaded model in its own thread. Nothing paces the streams: the answer is the FPS each one
gets, and whether that is at least the target rate (``fps``, default the source's own), which is "how many
cameras can this box serve at F FPS" once a sweep over ``streams`` is drawn.

Stream 0's detections are saved (each distinct frame once, as always); every other stream's are compared
with stream 0's on the same frame, and ``stream_mismatch_frames`` counts the frames where they differ.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import numpy as np

from harness.core.detections import Detections
from harness.core.detector import Detector
from harness.execution.scenarios.context import LoopedFrame, ScenarioContext, ScenarioRun, same_detections


class _Streams:
    """Per-stream counts and the first-pass detections of each stream, for the comparison."""

    def __init__(self, n: int) -> None:
        self.count = [0] * n
        self.last_done = [0.0] * n
        self.found: list[dict[int, Detections]] = [{} for _ in range(n)]
        self.lock = threading.Lock()


def _serve(ctx: ScenarioContext, det: Detector, k: int, item: LoopedFrame, rec: Any, state: _Streams) -> None:
    loop, frame = item
    dets, stages = ctx.detect(det, frame.image)
    kept = rec.add(frame, dets, stages, loop, extra={"stream": k}, save=(k == 0))
    done = time.perf_counter()
    with state.lock:
        state.count[k] += 1
        state.last_done[k] = done
        if loop == 0:
            state.found[k][frame.index] = kept


def _wanted(ctx: ScenarioContext, item: LoopedFrame | None, k: int, state: _Streams, started: float) -> bool:
    return item is not None and (item[0] == 0 or ctx.keep_going(item[0], state.count[k], started))


def _round_robin(ctx: ScenarioContext, streams: list[Iterator[LoopedFrame]], rec: Any, state: _Streams,
                 started: float) -> None:
    active = list(range(len(streams)))
    while active:
        for k in list(active):
            item = next(streams[k], None)
            if not _wanted(ctx, item, k, state, started):
                active.remove(k)
                continue
            _serve(ctx, ctx.detector, k, item, rec, state)  # type: ignore[arg-type]
        ctx.tick(rec.timed, started)


def _instance_threads(ctx: ScenarioContext, streams: list[Iterator[LoopedFrame]], detectors: list[Detector],
                      rec: Any, state: _Streams, started: float) -> None:
    errors: list[BaseException] = []

    def serve(k: int) -> None:
        try:
            for item in streams[k]:
                if not _wanted(ctx, item, k, state, started):
                    break
                _serve(ctx, detectors[k], k, item, rec, state)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the job's thread below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(k,), name=f"harness-stream-{k}", daemon=True)
               for k in range(1, len(streams))]
    for t in threads:
        t.start()
    serve(0)
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.25)
        ctx.tick(rec.timed, started)
    if errors:
        raise errors[0]


def _mismatches(state: _Streams) -> int:
    reference = state.found[0]
    bad = set()
    for k in range(1, len(state.found)):
        for index, dets in state.found[k].items():
            ref = reference.get(index)
            if ref is None or not same_detections(ref, dets):
                bad.add(index)
    return len(bad)


def run(ctx: ScenarioContext) -> ScenarioRun:
    sc = ctx.spec.scenario
    n = sc.stream_count
    extra: list[Detector] = []
    load_started = time.perf_counter()
    try:
        if sc.instance_count > 1:
            extra = [ctx.new_detector() for _ in range(n - 1)]
        extra_load_s = time.perf_counter() - load_started
        streams = [ctx.frames] + [ctx.open_stream() for _ in range(n - 1)]
        rec = ctx.recorder()
        state = _Streams(n)
        started = time.perf_counter()
        if extra:
            _instance_threads(ctx, streams, [ctx.detector, *extra], rec, state, started)
        else:
            _round_robin(ctx, streams, rec, state, started)
        wall_s = time.perf_counter() - started
    finally:
        ctx.close_streams()
        for det in extra:
            det.close()
    ctx.tick(rec.timed, started, force=True)
    # the streams' own rates end at their last frame, so the aggregate does too (not at the wall clock's end,
    # which adds finding every stream exhausted): the slowest stream then never reads above aggregate / n
    served_s = max(state.last_done) - started if any(state.count) else 0.0
    per_stream = np.array([c / (t - started) if t > started else 0.0 for c, t in zip(state.count, state.last_done)])
    target = sc.fps or ctx.source.info.fps
    columns: dict[str, Any] = {
        "streams": n, "instances": sc.instance_count,
        "aggregate_fps": round(rec.timed / served_s, 3) if served_s > 0 else float("nan"),
        "stream_fps_min": round(float(per_stream.min()), 3), "stream_fps_mean": round(float(per_stream.mean()), 3),
        "target_fps": target, "target_met": bool(target) and bool(per_stream.min() >= float(target or 0)),
        "stream_mismatch_frames": _mismatches(state),
    }
    if extra:
        columns["extra_load_s"] = round(extra_load_s, 3)
    notes = []
    if n > 1:
        notes.append(f"detections saved from stream 0; the other {n - 1} stream(s) were compared with it frame by frame")
    return rec.result(wall_s, frames_seen=len(state.found[0]) or len(rec.saved), columns=columns, notes=notes,
                      headline="p99")
