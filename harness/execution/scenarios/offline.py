"""Offline (MLPerf's Offline): the frames are all there; run them in batches of N for throughput.

Each model call takes ``batch`` consecutive frames (the last batch of a pass may be smaller). The row's
latency percentiles are per batch (what a frame waits for its result); ``model_fps`` is frames over the summed
batch time, the throughput the question is about. ``frames.csv`` gives every frame its batch's stage times,
marked ``timing`` = ``batch``, with ``batch_index`` and ``batch_size``. A backend that cannot take a batch of that size fails the job with "batch unsupported" and
its own reason, never a crash of the run.
"""

from __future__ import annotations

import time

from harness.core.errors import HarnessError
from harness.execution.scenarios.context import LoopedFrame, ScenarioContext, ScenarioRun


def _batch_unsupported(ctx: ScenarioContext, size: int) -> None:
    reason = ctx.detector.batch_unsupported(size)
    if reason:
        raise HarnessError(f"batch unsupported: {reason}",
                           "run this backend at --batch 1 (or in another scenario); see docs/scenarios.md")


def run(ctx: ScenarioContext) -> ScenarioRun:
    size = ctx.spec.scenario.batch_size
    _batch_unsupported(ctx, size)
    warm = [ctx.prepared(ctx.first.image)] * size
    for _ in range(max(ctx.spec.warmup, 1)):  # the batched path has its own first-call costs (shapes, buffers)
        ctx.detector.detect_batch(warm)

    rec = ctx.recorder()
    clock = time.perf_counter_ns
    loop_start = time.perf_counter()
    batch_index = 0
    pending: list[LoopedFrame] = []
    exhausted = False
    frames = iter(ctx.frames)
    while not exhausted:
        pending.clear()
        while len(pending) < size:
            item = next(frames, None)
            if item is None or (item[0] and not ctx.keep_going(item[0], rec.timed + len(pending), loop_start)):
                exhausted = True
                break
            pending.append(item)
        if not pending:
            break
        t0 = clock()
        inputs = [ctx.prepared(frame.image) for _, frame in pending]
        t_resize = clock() - t0
        dets, st = ctx.detector.detect_batch(inputs)
        stages = (st.pre_ns + t_resize, st.infer_ns, st.post_ns)
        rec.add_sample(stages)
        for (loop, frame), found in zip(pending, dets):
            if ctx.shared:
                found = found.rescaled((frame.image.shape[1], frame.image.shape[0]))
            rec.add(frame, found, stages, loop, sample=False,  # timing=batch: the call's times, on each frame
                    extra={"batch_index": batch_index, "batch_size": len(pending), "timing": "batch"})
        batch_index += 1
        ctx.tick(rec.timed, loop_start)
    wall_s = time.perf_counter() - loop_start
    ctx.tick(rec.timed, loop_start, force=True)
    return rec.result(wall_s, frames_seen=len(rec.saved), headline="",
                      columns={"batch": size, "batches": batch_index})
