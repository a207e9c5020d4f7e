"""Does the harness measure what MLPerf LoadGen measures? The harness (``--loadgen``) against a plain LoadGen +
ONNX Runtime script on the same frames and settings, in A-B-A-B rounds; prints the ratios, asserts nothing.

    HARNESS_ASSETS=../shared/assets python -m benchmarks.loadgen_fidelity --frames 300 --rounds 2

Both sides:

* the same ONNX file (the onnxruntime backend's reference model) and the same session options (the plain side
  copies the harness session's own ``get_session_options()``: threads, ``ORT_ENABLE_ALL``, spinning off);
* the same frames: the first ``--frames`` of PETS09-S2L1, decoded and resized to the network input once,
  in memory before timing (the plain side converts them to its ready input, RGB ``[1, H, W, 3]`` uint8, before
  timing too);
* the same LoadGen settings: every frame once at least (``min_query_count`` = frames), no minimum duration,
  seed 0; server at 60 % of the plain side's single-stream rate with a 200 ms bound.

A is the harness: :func:`harness.execution.runner.run_job` of a ``--loadgen`` job (its SUT, its detector's
pre + infer + post, boxes built and saved). B is the plain script: a SUT whose ``issue_query`` runs
``session.run`` on the ready input and completes the query, nothing else. The ratios are A / B of LoadGen's own
figures; a ratio above 1 is what the harness adds (its ~1 ms of preprocessing and detection building per
frame) or noise, which the rounds show.

Quiet-machine check: before each round the machine is sampled for a second (other processes' CPU use and the
load average); a round on a busy machine is marked BUSY and its ratios are not for quoting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: a round counts as quiet when other processes used less than this share of the CPUs and the 1-minute load
#: average stays under this many runnable processes per CPU
QUIET_CPU_SHARE = 0.10
QUIET_LOAD_PER_CPU = 0.5
SERVER_SHARE = 0.6
BOUND_MS = 200.0
SCENARIOS = ("single-stream", "offline", "server")


def machine_quiet() -> tuple[bool, str]:
    """Whether the machine is quiet enough to quote (one second of psutil, and the load average)."""
    import psutil

    me = psutil.Process()
    cpus = psutil.cpu_count() or 1
    mine0, t0 = sum(me.cpu_times()[:2]), time.perf_counter()
    total = psutil.cpu_percent(interval=1.0) / 100 * cpus
    mine = (sum(me.cpu_times()[:2]) - mine0) / (time.perf_counter() - t0)
    others = max(total - mine, 0.0) / cpus
    load = os.getloadavg()[0] / cpus
    quiet = others < QUIET_CPU_SHARE and load < QUIET_LOAD_PER_CPU
    return quiet, f"others {others:.0%} of {cpus} CPUs, load {load * cpus:.2f}"


def _settings(lg: Any, kind: str, n: int, qps: float, call_s: float) -> Any:
    s = lg.TestSettings()
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = 0
    s.min_query_count = n
    s.performance_sample_count_override = n
    s.qsl_rng_seed = s.sample_index_rng_seed = s.schedule_rng_seed = 0
    if kind == "single-stream":
        s.scenario = lg.TestScenario.SingleStream
        s.single_stream_expected_latency_ns = int(call_s * 1e9)
    elif kind == "offline":
        s.scenario = lg.TestScenario.Offline
        s.offline_expected_qps = 1.0 / call_s
    else:
        s.scenario = lg.TestScenario.Server
        s.server_target_qps = qps
        s.server_target_latency_ns = int(BOUND_MS * 1e6)
    return s


def plain_loadgen(session: Any, ready: list[Any], kind: str, qps: float = 0.0) -> dict[str, Any]:
    """B: LoadGen + ONNX Runtime and nothing else; returns LoadGen's figures (the harness's own parser of the
    detail log, so both sides are read alike)."""
    import queue

    import mlperf_loadgen as lg

    from harness.execution.scenarios.loadgen import loadgen_columns, read_detail

    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    t0 = time.perf_counter()
    for x in ready[:3]:
        session.run(names, {input_name: x})
    call_s = (time.perf_counter() - t0) / 3
    fifo: queue.Queue = queue.Queue()

    def serve() -> None:
        while True:
            samples = fifo.get()
            if samples is None:
                return
            for q in samples:
                session.run(names, {input_name: ready[q.index]})
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in samples])

    def issue(samples: list[Any]) -> None:
        for q in samples:
            fifo.put([q])

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(ready), len(ready), lambda _i: None, lambda _i: None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = lg.LogSettings()
            log.log_output.outdir = tmp
            log.log_output.copy_summary_to_stdout = False
            log.enable_trace = False
            lg.StartTestWithLogSettings(sut, qsl, _settings(lg, kind, len(ready), qps, call_s), log)
            detail = read_detail(Path(tmp) / "mlperf_log_detail.txt")
    finally:
        fifo.put(None)
        worker.join()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return loadgen_columns(detail, kind)


def harness_loadgen(frames: int, kind: str, threads: int, qps: float = 0.0) -> dict[str, Any]:
    """A: the harness's own ``--loadgen`` job on the same frames."""
    from harness.core.jobs import JobSpec
    from harness.execution.runner import run_job
    from harness.core.scenario import ScenarioSpec

    extra: dict[str, Any] = {"qps": qps, "latency_bound_ms": BOUND_MS} if kind == "server" else {}
    if kind == "offline":
        extra["batch"] = 1
    r = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=frames, warmup=3, preprocess="shared",
                        threads=threads, scenario=ScenarioSpec(kind, loadgen=True, **extra)))
    if r.status != "ok":
        raise RuntimeError(f"the harness job failed: {r.cause}")
    return r.summary


#: (what, the column both sides have) per scenario
FIGURES = {"single-stream": [("p50", "lg_p50_ms"), ("p90", "lg_p90_ms"), ("mean", "lg_mean_ms")],
           "offline": [("frames/s", "lg_qps")],
           "server": [("p99", "lg_p99_ms"), ("completed qps", "lg_qps")]}


def measure(frames: int = 300, rounds: int = 2, threads: int = 2, print_fn: Any = print) -> list[dict[str, Any]]:
    """Run the A-B rounds; return one row per (round, scenario, figure) with both sides and their ratio."""
    import cv2

    from harness.data.assets import resolve
    from harness.core.detector import DetectorConfig
    from harness.data.preprocess import shared_resize
    from harness.core.registry import create_detector
    from harness.data.video import open_source

    det = create_detector("onnxruntime", DetectorConfig(threads=threads))
    det.load()
    import onnxruntime as ort

    session = ort.InferenceSession(str(det.model_file()), sess_options=det._session.get_session_options(),
                                   providers=["CPUExecutionProvider"])
    size = det.input_size
    det.close()
    decoded = [f.image for f in open_source(resolve("pets09-s2l1").absolute()).frames(frames)]
    ready = [cv2.cvtColor(shared_resize(img, size), cv2.COLOR_BGR2RGB)[None] for img in decoded]
    rows: list[dict[str, Any]] = []
    single_rate = 0.0
    for rnd in range(rounds):
        quiet, how = machine_quiet()
        print_fn(f"round {rnd + 1}: machine {'QUIET' if quiet else 'BUSY'} ({how})")
        for kind in SCENARIOS:
            qps = round(SERVER_SHARE * single_rate, 2) if kind == "server" else 0.0
            a = harness_loadgen(len(ready), kind, threads, qps)
            b = plain_loadgen(session, ready, kind, qps)
            if kind == "single-stream" and not single_rate:
                single_rate = float(b["lg_qps"])
            for what, col in FIGURES[kind]:
                ratio = float(a[col]) / float(b[col]) if float(b[col]) else float("nan")
                rows.append({"round": rnd + 1, "quiet": quiet, "scenario": kind, "figure": what,
                             "harness": float(a[col]), "plain": float(b[col]), "ratio": ratio,
                             "harness_result": a["lg_result"], "plain_result": b["lg_result"]})
                print_fn(f"  {kind:13s} {what:14s} harness {float(a[col]):9.2f}  plain {float(b[col]):9.2f}  "
                         f"ratio {ratio:5.2f}  ({a['lg_result']} / {b['lg_result']})")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2, help="A-B rounds (2 = A-B-A-B)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rows = measure(args.frames, args.rounds, args.threads)
    quiet = all(r["quiet"] for r in rows)
    print(f"\n{'quiet machine: these ratios may be quoted' if quiet else 'BUSY machine: do not quote these ratios'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
