"""Single-stream (the default, MLPerf's SingleStream): one frame at a time, each as soon as the last is done.

This is the loop the harness always ran, moved here unchanged: decoding runs ahead in a thread, every frame of
the source is timed (pre + infer + post) and its detections saved. ``--min-duration`` / ``--min-frames`` loop
the source for more samples; frames then repeat, and detections are saved for each distinct frame once.
"""

from __future__ import annotations

import time

from harness.execution.scenarios.context import ScenarioContext, ScenarioRun


def run(ctx: ScenarioContext) -> ScenarioRun:
    rec = ctx.recorder()
    loop_start = time.perf_counter()
    for loop, frame in ctx.frames:
        if loop and not ctx.keep_going(loop, rec.timed, loop_start):
            break
        dets, stages = ctx.detect(ctx.detector, frame.image)
        rec.add(frame, dets, stages, loop)
        ctx.tick(rec.timed, loop_start)
    wall_s = time.perf_counter() - loop_start
    ctx.tick(rec.timed, loop_start, force=True)
    return rec.result(wall_s, frames_seen=len(rec.saved), headline="p90")
