"""Realtime: frames released at the source's own frame rate (or ``fps``), as a camera delivers them.

A release thread hands each frame over at ``start + i / fps`` (a precise clock: sleep, then a short spin).
A frame that arrives while the detector is busy waits if fewer than ``queue`` frames are waiting, and is
dropped otherwise (``queue = 0``, the default: a busy detector misses it, as a live camera pipeline that
keeps only the newest frame does). Reported: frames released, processed, dropped, and late (the result came
more than one frame period after the release), end-to-end latency from release to result (p50/p99), the
release clock's own error (jitter), and the highest stream FPS this run's frames could have been released at
without a drop (one over the slowest frame's end-to-end time).

Detections are saved for the frames processed; accuracy then covers those frames only (the row says so).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.execution.scenarios.context import (START_LEAD_S, ScenarioContext, ScenarioRun, clock_error, percentile_ms,
                                      sleep_until)


class _Gate:
    """The hand-over between the release clock and the detector, and what happened to each frame."""

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.cond = threading.Condition()
        self.pending: deque[tuple[int, Any, float, int]] = deque()
        self.busy = False
        self.done = False
        self.released = 0
        self.dropped: list[int] = []
        self.jitter_ns: list[int] = []
        self.seen: set[int] = set()
        self.error: BaseException | None = None
        self.stop = threading.Event()  # the detector's side failed: release nothing more

    def offer(self, item: tuple[int, Any, float, int]) -> None:
        with self.cond:
            self.released += 1
            self.seen.add(item[1].index)
            # an idle detector takes the frame at once; a busy one lets `queue` frames wait
            if len(self.pending) < self.queue + (0 if self.busy else 1):
                self.pending.append(item)
                self.cond.notify()
            else:
                self.dropped.append(item[1].index)


def _release(ctx: ScenarioContext, gate: _Gate, period: float, start: float) -> None:
    try:
        for i, (loop, frame) in enumerate(ctx.frames):
            if gate.stop.is_set() or (loop and not ctx.keep_going(loop, i, start)):
                break
            due = start + i * period
            now = sleep_until(due)
            gate.jitter_ns.append(int((now - due) * 1e9))
            gate.offer((loop, frame, now, i))
    except BaseException as exc:  # noqa: BLE001 - handed to the detector's thread
        gate.error = exc
    finally:
        with gate.cond:
            gate.done = True
            gate.cond.notify()


def run(ctx: ScenarioContext) -> ScenarioRun:
    sc = ctx.spec.scenario
    fps = sc.fps or ctx.source.info.fps
    if not fps:
        raise HarnessError(f"{ctx.spec.source} has no frame rate to release frames at (an image folder?)",
                           "give the release rate with --fps N (suite: fps = N)")
    period = 1.0 / float(fps)
    gate = _Gate(sc.queue_depth)
    rec = ctx.recorder()
    e2e: list[int] = []
    late = 0
    start = time.perf_counter() + START_LEAD_S
    releaser = threading.Thread(target=_release, args=(ctx, gate, period, start), name="harness-release", daemon=True)
    releaser.start()
    try:
        while True:
            with gate.cond:
                while not gate.pending and not gate.done:
                    gate.cond.wait()
                if not gate.pending:
                    break
                loop, frame, released_at, _ = gate.pending.popleft()
                gate.busy = True
            dets, stages = ctx.detect(ctx.detector, frame.image)
            finished = time.perf_counter()
            with gate.cond:
                gate.busy = False
            took = int((finished - released_at) * 1e9)
            e2e.append(took)
            late += took > period * 1e9
            rec.add(frame, dets, stages, loop, extra={"e2e_ms": round(took / 1e6, 4)})
            ctx.tick(rec.timed, start)
    finally:
        gate.stop.set()
    releaser.join()
    wall_s = time.perf_counter() - start
    if gate.error is not None:
        raise gate.error
    ctx.tick(rec.timed, start, force=True)
    slowest = max(e2e) if e2e else 0
    jitter = np.abs(np.asarray(gate.jitter_ns, dtype=np.float64))
    columns = {
        "release_fps": round(float(fps), 4), "queue": sc.queue_depth, "released": gate.released,
        "processed": rec.timed, "dropped": len(gate.dropped), "late": int(late),
        "e2e_p50_ms": percentile_ms(e2e, 50), "e2e_p90_ms": percentile_ms(e2e, 90), "e2e_p99_ms": percentile_ms(e2e, 99),
        "e2e_max_ms": round(slowest / 1e6, 4) if e2e else float("nan"),
        "release_jitter_p99_ms": percentile_ms(jitter, 99),
        "release_jitter_max_ms": round(float(jitter.max()) / 1e6, 4) if jitter.size else float("nan"),
        "max_fps_no_drop": round(1e9 / slowest, 3) if slowest else float("nan"),
    }
    notes = []
    if gate.dropped:
        notes.append(f"realtime dropped {len(gate.dropped)} of {gate.released} released frames; detections are saved "
                     f"for the {rec.timed} processed, and accuracy covers those")
    return rec.result(wall_s, frames_seen=len(gate.seen), columns=columns, notes=notes, headline="e2e_p99",
                      e2e_ns=np.asarray(e2e, dtype=np.int64), info={"dropped_frames": gate.dropped[:1000]},
                      invalid=clock_error(gate.jitter_ns, period, "release"))
