"""Server (MLPerf's Server): queries arrive as a Poisson process at a target rate; each query is one frame.

Arrival times come from a seeded exponential clock (the same arrivals in every run at that rate), an issue
thread hands each query to a FIFO at its time, and the model instances (one by default, ``instances = N``
for more) serve the FIFO in order. A query's end-to-end latency runs from its scheduled arrival to its result
(LoadGen's definition: a late issue counts against the system, and the issue clock's lateness is reported
apart as ``issue_jitter_p99_ms``), queueing included, so a rate the model can't sustain shows as a p99 that
grows with the run. Percentiles use LoadGen's method; ``--loadgen`` hands the whole scenario to LoadGen. The answer MLPerf's
Server asks: whether the p99 stays under ``latency_bound_ms``; over a sweep of rates, the largest rate that
does (``scenarios.csv``).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

from harness.core.detector import Detector
from harness.execution.scenarios.context import (START_LEAD_S, ScenarioContext, ScenarioRun, clock_error, percentile_ms,
                                      sleep_until)

#: the arrival clock's default seed (``--seed`` changes it): every run at one rate sees the same arrivals
ARRIVAL_SEED = 0
_STOP = object()


class _Issued:
    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.jitter_ns: list[int] = []
        self.seen: set[int] = set()
        self.error: BaseException | None = None
        self.stop = threading.Event()  # a serving thread failed: issue nothing more


def _issue(ctx: ScenarioContext, fifo: queue.Queue, qps: float, start: float, workers: int, issued: _Issued) -> None:
    rng = np.random.default_rng(ARRIVAL_SEED if ctx.spec.scenario.seed is None else ctx.spec.scenario.seed)
    due = start
    try:
        for loop, frame in ctx.frames:
            if issued.stop.is_set() or (loop and not ctx.keep_going(loop, issued.count, start)):
                break
            due += float(rng.exponential(1.0 / qps))
            now = sleep_until(due)
            issued.jitter_ns.append(int((now - due) * 1e9))
            fifo.put((loop, frame, due))  # latency runs from the scheduled arrival, as in LoadGen
            issued.count += 1
            issued.last = now
            issued.seen.add(frame.index)
    except BaseException as exc:  # noqa: BLE001 - handed to the serving thread
        issued.error = exc
    finally:
        for _ in range(workers):
            fifo.put(_STOP)


def run(ctx: ScenarioContext) -> ScenarioRun:
    sc = ctx.spec.scenario
    qps = float(sc.qps or 0)
    extra: list[Detector] = [ctx.new_detector() for _ in range(sc.instance_count - 1)]
    fifo: queue.Queue = queue.Queue()
    issued = _Issued()
    rec = ctx.recorder()
    e2e: list[int] = []
    done_at: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = time.perf_counter() + START_LEAD_S

    def serve(det: Detector) -> None:
        try:
            while True:
                item = fifo.get()
                if item is _STOP:
                    return
                loop, frame, scheduled = item
                dets, stages = ctx.detect(det, frame.image)
                finished = time.perf_counter()
                took = int((finished - scheduled) * 1e9)
                with lock:
                    e2e.append(took)
                    done_at.append(finished)
                rec.add(frame, dets, stages, loop, extra={"e2e_ms": round(took / 1e6, 4)})
                ctx.tick(rec.timed, start)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the job's thread below
            errors.append(exc)
            issued.stop.set()

    issuer = threading.Thread(target=_issue, args=(ctx, fifo, qps, start, 1 + len(extra), issued),
                              name="harness-arrivals", daemon=True)
    helpers = [threading.Thread(target=serve, args=(det,), name=f"harness-server-{i + 1}", daemon=True)
               for i, det in enumerate(extra)]
    try:
        issuer.start()
        for t in helpers:
            t.start()
        serve(ctx.detector)
        for t in helpers:
            t.join()
        issuer.join()
    finally:
        for det in extra:
            det.close()
    wall_s = time.perf_counter() - start
    for exc in [issued.error, *errors]:
        if exc is not None:
            raise exc
    ctx.tick(rec.timed, start, force=True)
    return rec.result(wall_s, frames_seen=len(issued.seen), columns=_columns(sc, qps, issued, e2e, done_at, start),
                      headline="e2e_p99", e2e_ns=np.asarray(e2e, dtype=np.int64),
                      invalid=clock_error(issued.jitter_ns, 1.0 / qps, "arrival"))


def _columns(sc: Any, qps: float, issued: _Issued, e2e: list[int], done_at: list[float], start: float) -> dict:
    p99 = percentile_ms(e2e, 99)
    bound = sc.latency_bound_ms
    jitter = np.abs(np.asarray(issued.jitter_ns, dtype=np.float64))
    return {
        "qps": qps, "instances": sc.instance_count, "queries": issued.count,
        "qps_offered": round(issued.count / (issued.last - start), 3) if issued.last > start else float("nan"),
        "qps_done": round(len(done_at) / (max(done_at) - start), 3) if done_at else float("nan"),
        "e2e_p50_ms": percentile_ms(e2e, 50), "e2e_p90_ms": percentile_ms(e2e, 90), "e2e_p99_ms": p99,
        "e2e_max_ms": round(max(e2e) / 1e6, 4) if e2e else float("nan"),
        "issue_jitter_p99_ms": percentile_ms(jitter, 99),
        "latency_bound_ms": bound,
        "bound_met": (None if bound is None else bool(p99 <= bound)),
    }
