"""Single-stream, offline and server driven by MLPerf LoadGen (``--loadgen``): LoadGen issues the queries, the
job's backend answers them, and the row carries LoadGen's own figures and verdict.

How the pieces map:

* the query sample library (QSL) is :class:`harness.execution.scenarios.preload.SampleLibrary`: the job's frames,
  decoded and preprocessed into memory before ``StartTest`` (LoadGen's load callbacks find them there);
* the system under test (SUT) is generic: ``issue_query`` puts the samples on a FIFO, ``instances`` serving
  threads (one by default) take them in order, call the job's detector (``detect``, or ``detect_batch`` in
  offline at ``--batch``) and complete them. Nothing here knows which backend answers, so a backend that
  forwards to a server answers concurrent server-scenario queries the same way;
* LoadGen's settings come from the harness's: ``--qps`` -> ``server_target_qps``, ``--latency-bound`` ->
  ``server_target_latency_ns`` (at LoadGen's 99th percentile), ``--min-duration`` -> ``min_duration_ms``,
  ``--min-frames`` (default: every frame once) -> ``min_query_count``, the seeds -> :data:`SEED`; the expected
  latency / rate LoadGen plans with comes from timing a few warm calls;
* its summary and detail logs are kept in the results folder (``loadgen/<job>/``), and runs.csv takes their
  figures (``lg_*`` columns: percentiles by LoadGen's method, QPS, early-stopping estimates, VALID/INVALID and
  each criterion).

Frames LoadGen never asked for (it draws sample indices at random) are run once after the test, untimed, so
detections and accuracy still cover every frame the job scores.
"""

from __future__ import annotations

import json
import math
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.detector import Detector
from harness.core.errors import HarnessError
from harness.execution.scenarios.context import ScenarioContext, ScenarioRun
from harness.execution.scenarios.preload import SampleLibrary, preload

#: LoadGen's three seeds (QSL, sample index, schedule) unless ``--seed`` is given: the harness's arrival seed, so
#: a run is repeatable
SEED = 0
#: warm calls timed to tell LoadGen the expected latency / rate it plans its queries with
PLAN_CALLS = 3
#: the log files kept in the results folder (LoadGen's trace is off: it grows with every query)
KEPT_LOGS = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
_STOP = object()


def _lg() -> Any:
    try:
        import mlperf_loadgen
    except ImportError:
        raise HarnessError("--loadgen needs MLPerf LoadGen's Python bindings (mlperf_loadgen), which are not "
                           "installed", "pip install 'mlcommons-loadgen==6.0.*' (or the project's [scenarios] extra)") from None
    return mlperf_loadgen


def _plan_seconds(ctx: ScenarioContext, lib: SampleLibrary, batch: int) -> float:
    """Seconds per model call over a few warm calls (LoadGen's expected latency / offline rate)."""
    inputs = [s.frame.image for s in lib.samples[:batch]]
    inputs += [inputs[0]] * (batch - len(inputs))
    t0 = time.perf_counter()
    for _ in range(PLAN_CALLS):
        if batch > 1:
            ctx.detector.detect_batch(inputs)
        else:
            ctx.detector.detect(inputs[0])
    return max((time.perf_counter() - t0) / PLAN_CALLS, 1e-4)


def seed_of(sc: Any) -> int:
    return SEED if sc.seed is None else int(sc.seed)


def loadgen_settings(ctx: ScenarioContext, n_samples: int, call_s: float) -> Any:
    """LoadGen's TestSettings from the job's scenario settings."""
    lg = _lg()
    sc = ctx.spec.scenario
    s = lg.TestSettings()
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = int(round((sc.min_duration_s or 0) * 1000))
    s.min_query_count = max(int(sc.min_frames or 0), n_samples)
    s.performance_sample_count_override = n_samples
    s.qsl_rng_seed = s.sample_index_rng_seed = s.schedule_rng_seed = seed_of(sc)
    if sc.kind == "single-stream":
        s.scenario = lg.TestScenario.SingleStream
        s.single_stream_expected_latency_ns = int(call_s * 1e9)
    elif sc.kind == "offline":
        s.scenario = lg.TestScenario.Offline
        s.offline_expected_qps = sc.batch_size / call_s
    else:
        s.scenario = lg.TestScenario.Server
        s.server_target_qps = float(sc.qps or 0)
        if sc.latency_bound_ms:
            s.server_target_latency_ns = int(round(sc.latency_bound_ms * 1e6))
    return s


class _SUT:
    """The system under test: a FIFO of issued samples served by the job's model instances."""

    def __init__(self, ctx: ScenarioContext, lib: SampleLibrary, detectors: list[Detector], batch: int) -> None:
        self.ctx, self.lib, self.batch = ctx, lib, batch
        self.rec = ctx.recorder()
        self.fifo: queue.Queue = queue.Queue()
        self.errors: list[BaseException] = []
        self.uses: dict[int, int] = {}  # sample index -> times issued (loop column, frames never asked for)
        self._lock = threading.Lock()
        self.batches = 0
        self.started = time.perf_counter()
        self.threads = [threading.Thread(target=self._serve, args=(d,), name=f"harness-loadgen-sut-{i + 1}",
                                         daemon=True) for i, d in enumerate(detectors)]

    # LoadGen's callbacks (its threads) ------------------------------------------------------------------
    def issue_query(self, samples: list[Any]) -> None:
        for start in range(0, len(samples), self.batch):  # offline: the one big query, cut into batches
            self.fifo.put(list(samples[start:start + self.batch]))

    def flush_queries(self) -> None:
        """Nothing is held back: every sample is queued when issued."""

    # serving ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.started = time.perf_counter()
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for _ in self.threads:
            self.fifo.put(_STOP)
        for t in self.threads:
            t.join()

    def _loop(self, index: int) -> int:
        with self._lock:
            n = self.uses.get(index, 0)
            self.uses[index] = n + 1
        return n

    def _serve(self, det: Detector) -> None:
        lg = _lg()
        while True:
            item = self.fifo.get()
            if item is _STOP:
                return
            try:
                self._answer(det, item)
            except BaseException as exc:  # noqa: BLE001 - raised in the job's thread after the test
                self.errors.append(exc)
            finally:
                # every issued sample is completed, even after a failure: LoadGen waits for all of them
                lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in item])

    def _answer(self, det: Detector, query: list[Any]) -> None:
        if self.errors:
            return
        ctx = self.ctx
        picked = [self.lib.samples[q.index] for q in query]
        if self.batch == 1:
            dets, st = det.detect(picked[0].frame.image)
            found = [dets]
        else:
            found, st = det.detect_batch([s.frame.image for s in picked])
        # the shared resize was done when the library was loaded: its time is reported with the frame
        stages = (st.pre_ns, st.infer_ns, st.post_ns)
        with self._lock:
            batch_index = self.batches
            self.batches += 1
        if self.batch > 1:
            self.rec.add_sample(stages)
        for q, sample, dets in zip(query, picked, found):
            if ctx.shared:
                dets = dets.rescaled(sample.original_size)
            extra: dict[str, Any] = {"sample": q.index}
            if self.batch > 1:
                extra.update(batch_index=batch_index, batch_size=len(query))
            self.rec.add(sample.frame, dets, stages, self._loop(q.index), extra=extra, sample=self.batch == 1)
        ctx.tick(self.rec.timed, self.started)

    def score_the_rest(self) -> int:
        """Frames LoadGen never asked for, run once untimed so that every scored frame has detections."""
        missing = [s for i, s in enumerate(self.lib.samples) if i not in self.uses]
        for sample in missing:
            dets, _ = self.ctx.detector.detect(sample.frame.image)
            if self.ctx.shared:
                dets = dets.rescaled(sample.original_size)
            if sample.frame.index not in self.rec.saved:
                self.rec.saved.add(sample.frame.index)
                self.rec.records.extend(self.ctx.spec.policy.record(dets).to_coco_records(sample.frame.index))
        return len(missing)


def read_detail(path: Path) -> dict[str, Any]:
    """LoadGen's detail log as {key: value} (its ``:::MLLOG {json}`` lines; the last value of a key wins)."""
    out: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                entry = json.loads(line[len(":::MLLOG "):])
            except json.JSONDecodeError:
                continue
            out[entry.get("key")] = entry.get("value")
    return out


def _ms(ns: Any) -> float:
    try:
        value = float(ns)
    except (TypeError, ValueError):
        return math.nan
    return round(value / 1e6, 4) if value > 0 else math.nan


#: LoadGen's reported percentiles and the runs.csv column each goes to
PERCENTILE_KEYS = {"50.00": "lg_p50_ms", "90.00": "lg_p90_ms", "95.00": "lg_p95_ms", "97.00": "lg_p97_ms",
                   "99.00": "lg_p99_ms", "99.90": "lg_p999_ms"}


def loadgen_columns(detail: dict[str, Any], kind: str) -> dict[str, Any]:
    """runs.csv's ``lg_*`` columns from the detail log: the figures LoadGen's summary prints."""
    qps_key = {"single-stream": "result_qps_without_loadgen_overhead", "offline": "result_samples_per_second",
               "server": "result_completed_samples_per_sec"}[kind]
    cols: dict[str, Any] = {
        "lg_result": detail.get("result_validity", ""),
        "lg_invalid_reason": str(detail.get("result_invalid_reason") or "").strip(),
        "lg_min_duration_met": detail.get("result_min_duration_met"),
        "lg_min_queries_met": detail.get("result_min_queries_met"),
        "lg_early_stopping_met": detail.get("early_stopping_met"),
        "lg_perf_constraints_met": detail.get("result_perf_constraints_met"),  # server only
        "lg_qps": detail.get(qps_key, math.nan),
        "lg_scheduled_qps": detail.get("result_scheduled_samples_per_sec", math.nan),  # server only
        "lg_queries": detail.get("result_query_count"),
        "lg_mean_ms": _ms(detail.get("result_mean_latency_ns")),
        "lg_min_ms": _ms(detail.get("result_min_latency_ns")),
        "lg_max_ms": _ms(detail.get("result_max_latency_ns")),
        **{col: _ms(detail.get(f"result_{p}_percentile_latency_ns")) for p, col in PERCENTILE_KEYS.items()},
        # single-stream's early-stopping estimates of its 90th and 99th percentiles (0 = not enough queries)
        "lg_early_stopping_p90_ms": _ms(detail.get("early_stopping_latency_ss")),
        "lg_early_stopping_p99_ms": _ms(detail.get("early_stopping_latency_ms")),
        "lg_early_stopping": " ".join(str(detail.get("early_stopping_result") or "").split()),
        "lg_latency_bound_ms": _ms(detail.get("effective_target_latency_ns")) if kind == "server" else math.nan,
        "lg_seed": detail.get("effective_schedule_rng_seed", SEED),
    }
    return cols


def _reasons(cols: dict[str, Any]) -> str:
    """LoadGen's INVALID in words: each unmet criterion, then its recommendation."""
    unmet = [name for key, name in (("lg_perf_constraints_met", "latency bound (perf constraints)"),
                                    ("lg_min_duration_met", "min duration"), ("lg_min_queries_met", "min queries"),
                                    ("lg_early_stopping_met", "early stopping")) if cols.get(key) is False]
    text = "not met: " + ", ".join(unmet) if unmet else ""
    extra = cols.get("lg_invalid_reason") or (cols.get("lg_early_stopping") if cols.get("lg_early_stopping_met") is False
                                              else "")
    return "; ".join(filter(None, [text, extra]))


def run(ctx: ScenarioContext) -> ScenarioRun:
    lg = _lg()
    sc = ctx.spec.scenario
    batch = sc.batch_size if sc.kind == "offline" else 1
    if batch > 1:
        reason = ctx.detector.batch_unsupported(batch)
        if reason:
            raise HarnessError(f"batch unsupported: {reason}",
                               "run this backend at --batch 1 (or in another scenario); see docs/scenarios.md")
    lib = preload(ctx)
    call_s = _plan_seconds(ctx, lib, batch)
    detectors = [ctx.detector] + [ctx.new_detector() for _ in range(sc.instance_count - 1 if sc.kind == "server" else 0)]
    sut = _SUT(ctx, lib, detectors, batch)
    settings = loadgen_settings(ctx, len(lib), call_s)
    handle_sut = lg.ConstructSUT(sut.issue_query, sut.flush_queries)
    # the samples are in memory already: LoadGen's load / unload callbacks have nothing left to do
    handle_qsl = lg.ConstructQSL(len(lib), len(lib), lambda _idx: None, lambda _idx: None)
    logs: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="harness-loadgen-") as tmp:
            log_settings = lg.LogSettings()
            log_settings.log_output.outdir = tmp
            log_settings.log_output.copy_summary_to_stdout = False
            log_settings.enable_trace = False
            sut.start()
            try:
                lg.StartTestWithLogSettings(handle_sut, handle_qsl, settings, log_settings)
            finally:
                sut.stop()
            wall_s = time.perf_counter() - sut.started
            for name in KEPT_LOGS:
                path = Path(tmp) / name
                if path.is_file():
                    logs[name] = path.read_text(errors="replace")
            detail = read_detail(Path(tmp) / "mlperf_log_detail.txt")
    finally:
        lg.DestroyQSL(handle_qsl)
        lg.DestroySUT(handle_sut)
        for det in detectors[1:]:
            det.close()
    if sut.errors:
        raise sut.errors[0]
    if not detail:
        raise HarnessError("LoadGen wrote no detail log: its figures are missing",
                           "rerun the job; if it repeats, run `harness doctor` and report the LoadGen version")
    ctx.tick(sut.rec.timed, sut.started, force=True)
    unasked = sut.score_the_rest()
    cols = loadgen_columns(detail, sc.kind)
    cols.update(frames_arrived="preloaded", preload_mb=lib.describe()["mb"], preload_budget_mb=lib.budget_mb,
                preload_s=round(lib.load_s, 3), lg_unissued_frames=unasked)
    cols.update(_harness_columns(sc, cols, batch, sut.batches))
    notes = []
    if cols["lg_result"] != "VALID":
        notes.append(f"LoadGen: {cols['lg_result'] or 'no result'} ({_reasons(cols)})")
    if unasked:
        notes.append(f"LoadGen never asked for {unasked} of the {len(lib)} frames: they were run once untimed "
                     "so accuracy covers them")
    resize = np.array([s.resize_ns for s in lib.samples], dtype=np.int64)
    info = {"loadgen": {"version": detail.get("loadgen_version", ""), "library": lib.describe(),
                        "resize_ms_mean": round(float(resize.mean()) / 1e6, 4) if resize.size else 0.0,
                        "settings": {k: v for k, v in detail.items() if str(k).startswith("effective_")}},
            "loadgen_logs": logs}
    headline = {"single-stream": "p90", "offline": "", "server": "e2e_p99"}[sc.kind]
    return sut.rec.result(wall_s, frames_seen=len(lib), columns=cols, notes=notes, info=info, headline=headline,
                          e2e_ns=None)


def _harness_columns(sc: Any, cols: dict[str, Any], batch: int, batches: int) -> dict[str, Any]:
    """The harness's own scenario columns filled from LoadGen's figures, so sweeps and reports read a LoadGen row
    like any other (server: end-to-end latency is LoadGen's, from each query's scheduled time)."""
    if sc.kind == "offline":
        return {"batch": batch, "batches": batches}
    if sc.kind != "server":
        return {}
    bound = cols.get("lg_latency_bound_ms")
    return {"qps": float(sc.qps or 0), "instances": sc.instance_count, "queries": cols.get("lg_queries"),
            "qps_offered": cols.get("lg_scheduled_qps"), "qps_done": cols.get("lg_qps"),
            "e2e_p50_ms": cols.get("lg_p50_ms"), "e2e_p90_ms": cols.get("lg_p90_ms"),
            "e2e_p99_ms": cols.get("lg_p99_ms"), "e2e_max_ms": cols.get("lg_max_ms"),
            "latency_bound_ms": bound, "bound_met": cols.get("lg_perf_constraints_met")}
