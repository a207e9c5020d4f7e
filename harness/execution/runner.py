"""One job: load, warm up, measure placement, then the timed loop over every frame.

Rules (DESIGN.md): ``perf_counter_ns``; decode runs ahead in a thread and is not inside the timed stages;
warm-up runs on the first frame and is not counted; load time and the first (cold) inference are reported
apart; every frame of the source is timed and its detections saved, so accuracy covers all frames.
The timed part is the job's scenario (:mod:`harness.execution.scenarios`; single-stream by default), watched by the
machine-state monitor (:mod:`harness.measure.machine_state`) whose readings decide the row's validity.
A job never raises for its own failure: it returns a :class:`JobResult` with status and cause, holding
whatever was measured before the failure.
"""

from __future__ import annotations

import resource
import sys
import time
import traceback
from typing import Callable

import numpy as np

from harness.data.assets import resolve
from harness.data.calibration import check_not_scored
from harness.core.detector import Detector, DetectorConfig, Placement
from harness.envs.missing import in_environment
from harness.core.registry import backend_class, create_detector
from harness.core.errors import BackendUnavailable, DeviceFallback, HarnessError
from harness.core.jobs import JobResult, JobSpec
from harness.measure.machine_state import SAMPLE_INTERVAL_S, MachineMonitor, MachineState
from harness.measure.metrics.latency import bootstrap_ci, fps, latency_stats
from harness.data.preprocess import shared_resize
from harness.execution.scenarios import run_scenario
from harness.execution.scenarios.context import ScenarioContext, ScenarioRun, frame_passes
from harness.core.settings import logical_cpus, oversubscription_note
from harness.measure.validity import judge
from harness.data.video import FrameSource, Prefetcher, open_source

#: ``progress(done, total, fps, phase="")``: ``phase`` names what the job is doing before its timed frames
#: ("loading opencv", "warming up", "timing"), so a progress display never shows load time as frame time
Progress = Callable[..., None]


def report_phase(progress: Progress | None, phase: str, total: int | None = None) -> None:
    """Tell the progress display what the job does now (no frame counted yet)."""
    if progress is not None:
        progress(0, total, 0.0, phase)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (the job's own when it runs in a worker process)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _threads_text(threads: object) -> str:
    """What the framework reports as its thread settings (0 = its own default)."""
    if isinstance(threads, dict):
        return " ".join(f"{k}={v}" for k, v in threads.items())
    return "" if threads is None else str(threads)


def _framework_version(detector: Detector | None) -> str:
    """The backend's framework version as the worker's own environment has it (its first installed
    distribution: opencv-python, tensorflow, torch...); empty when no detector was made."""
    if detector is None:
        return ""
    try:
        return next(iter(detector.versions().values()), "")
    except Exception:  # noqa: BLE001 - a version lookup must not cost the row
        return ""


def _summary(
    spec: JobSpec,
    placement: Placement | None,
    load_s: float,
    first_ms: float,
    times: np.ndarray,
    decode_ns: np.ndarray,
    wall_s: float,
    n_dets: list[int],
    detector: Detector | None,
    frame_size: tuple[int, int] | None,
    model_facts: dict | None,
    frames_timed: int | None = None,
) -> dict:
    """The runs.csv row. ``times`` holds (pre, infer, post) per timed model call: a frame, or a batch (offline:
    ``frames_timed`` then counts the frames, and the latencies are per batch)."""
    model_facts = model_facts or {}
    total = times.sum(axis=1) if len(times) else np.zeros(0)
    stats = latency_stats(total)
    frames = stats.frames if frames_timed is None else frames_timed
    infer = latency_stats(times[:, 1]) if len(times) else latency_stats([])
    mean = (lambda col: float(times[:, col].mean() / 1e6)) if len(times) else (lambda col: float("nan"))
    row = {
        "job_id": spec.job_id,
        "backend": spec.backend,
        "model": model_facts.get("model") or spec.model or "reference",
        "video": spec.source,
        "device_requested": spec.device,
        "device_actual": placement.actual if placement else "",
        "env": spec.env_label,
        "framework_version": _framework_version(detector),
        "preprocess": spec.preprocess,
        "frames": frames,
        "load_s": round(load_s, 4),
        "first_ms": round(first_ms, 3),
        **{k: round(v, 4) for k, v in stats.to_dict().items() if k != "frames"},
        "decode_ms": round(float(decode_ns.mean() / 1e6), 4) if len(decode_ns) else float("nan"),
        "pre_ms": round(mean(0), 4),
        "infer_ms": round(mean(1), 4),
        "post_ms": round(mean(2), 4),
        "infer_p50_ms": round(infer.p50_ms, 4),
        "infer_p90_ms": round(infer.p90_ms, 4),
        "model_fps": round(fps(frames, float(total.sum()) / 1e9), 3) if len(total) else float("nan"),
        "pipeline_fps": round(fps(frames, wall_s), 3) if frames else float("nan"),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_gpu_mb": (detector.peak_gpu_memory_mb() if detector else None),
        "threads": spec.threads,
        "threads_in_effect": _threads_text(model_facts.get("threads")),
        "threads_configured": _threads_text(model_facts.get("threads_configured")),
        "conversion_s": model_facts.get("conversion_s"),
        "score_threshold": spec.policy.score_threshold,
        "dets_per_frame": round(float(np.mean(n_dets)), 3) if n_dets else float("nan"),
        "frame_width": frame_size[0] if frame_size else None,
        "frame_height": frame_size[1] if frame_size else None,
        "placement_evidence": placement.evidence if placement else "",
        "device_fallback": placement.fallback if placement else None,
        **_precision_columns(spec, model_facts),
    }
    return row


# precision ---------------------------------------------------------------------------------------

def _precision_columns(spec: JobSpec, model_facts: dict) -> dict:
    """runs.csv's precision and model-fact cells: what was asked, what ran (read from the framework), the
    calibration split of an int8 variant, and the graph's size and cost."""
    from harness.core.model_facts import fact_columns

    report = model_facts.get("precision") or {}
    calibration = model_facts.get("calibration") or {}
    return {
        "precision_requested": spec.precision or "",
        "precision": report.get("effective", ""),
        "precision_evidence": report.get("evidence", ""),
        "precision_fallback": report.get("fallback") if report else None,
        "calibration": calibration.get("describe", ""),
        **fact_columns(model_facts.get("facts")),
    }


def _model_facts(detector: Detector) -> dict:
    """Parameters, GFLOPs, file and input size of the loaded model; a counter that fails costs the facts,
    never the job (the reason is kept)."""
    from harness.core.model_facts import model_facts

    try:
        cost, why = detector.model_cost(), ""
    except Exception as exc:  # noqa: BLE001 - a fact, not a measurement
        cost, why = None, f"{type(exc).__name__}: {exc}"
    facts = model_facts(cost, detector.model_file(), detector.input_size)
    if why:
        facts["cost_error"] = why[:300]
    return facts


def _read_precision(detector: Detector, spec: JobSpec, info: dict) -> str:
    """The precision the framework ran at, read after warm-up like placement; a request it did not honour is
    a fallback (its cause returned), or a failure under ``--strict-precision``."""
    from harness.core.precision import PrecisionFallback

    report = detector.precision_report()
    info["model"]["precision"] = report.to_dict()
    if not report.fallback:
        return ""
    if spec.strict_precision:
        raise PrecisionFallback(report.cause(), "drop --strict-precision to measure what the framework ran, ask "
                                "for a precision this backend and CPU/GPU provide (docs/precision.md), or use "
                                "--precision auto to take the framework's own choice")
    return report.cause()


def failure_result(
    spec: JobSpec, status: str, cause: str, info: dict | None = None, peak_rss: float | None = None
) -> JobResult:
    """The result of a job that produced nothing usable (its process crashed, hung or never started).

    The summary has every column a normal row has (timings NaN, zero frames), so ``runs.csv`` stays one
    table; ``peak_rss`` is the dead worker's peak memory when the executor could measure it.
    """
    empty = np.zeros((0, 3), dtype=np.int64)
    summary = _summary(spec, None, 0.0, float("nan"), empty, np.zeros(0, np.int64), 0.0, [], None, None, {})
    summary["peak_rss_mb"] = round(peak_rss, 1) if peak_rss is not None else None
    summary["scenario"], summary["level"] = spec.scenario.kind, spec.scenario.level()
    summary["status"] = status
    summary["cause"] = cause
    info = {"source": {}, "model": {}, "versions": {}, **(info or {}), "policy": spec.policy.to_dict()}
    return JobResult(spec, status, summary, [], [], info, cause)


def _load(spec: JobSpec, config: DetectorConfig, on_phase: Callable[[str], None] | None = None,
          ) -> tuple[Detector, float]:
    """A loaded detector and its load time; an unknown option or a missing framework is one clear error."""
    backend_class(spec.backend).validate_options(spec.options)  # an unknown --opt is an error, not ignored
    missing = backend_class(spec.backend).missing_modules()
    if missing:  # say so before the backend's own import fails with a bare ModuleNotFoundError
        raise BackendUnavailable(
            f"backend {spec.backend!r} needs {', '.join(missing)}, which is not installed",
            f"pip install {' '.join(missing)} (or the project's extra for it, e.g. pip install -e '.[all]')",
        )
    detector = create_detector(spec.backend, config)
    detector.on_phase = on_phase  # a conversion inside load() says so on the progress line
    t0 = time.perf_counter_ns()
    detector.load()
    return detector, (time.perf_counter_ns() - t0) / 1e9


def _warm_up(spec: JobSpec, detector: Detector, image: np.ndarray) -> float:
    """``spec.warmup`` inferences on one frame, none counted; returns the first (cold) one's milliseconds."""
    warm_input = shared_resize(image, detector.input_size) if spec.preprocess == "shared" else image  # type: ignore[arg-type]
    t0 = time.perf_counter_ns()
    detector.detect(warm_input)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(max(spec.warmup - 1, 0)):
        detector.detect(warm_input)
    return first_ms


def _another_instance(spec: JobSpec, config: DetectorConfig, image: np.ndarray,
                      first: Placement, first_precision: str) -> Callable[[], Detector]:
    """What multi-stream and server call for each extra model instance: loaded and warmed like the first, and
    read like the first. The row's placement and precision are instance 1's; an instance that landed on another
    device (a GPU already full) or ran another precision would be mixed into the same aggregate FPS, so the
    job fails naming both instead."""
    made = [1]

    def make() -> Detector:
        detector, _ = _load(spec, config)
        made[0] += 1
        try:
            _warm_up(spec, detector, image)
            here, precision = detector.placement(), detector.precision_report().effective
            differs = []
            if here.actual != first.actual:
                differs.append(f"instance {made[0]} ran on {here.actual}, instance 1 on {first.actual}")
            if precision != first_precision:
                differs.append(f"instance {made[0]} ran {precision}, instance 1 {first_precision}")
            if differs:
                raise HarnessError(
                    f"the model instances of this {spec.scenario.kind} job did not run alike: {'; '.join(differs)}",
                    "run it with instances = 1 (one model serving every stream or query), or free the device / "
                    "choose a precision every instance gets (harness doctor; docs/precision.md)")
        except BaseException:
            detector.close()
            raise
        return detector

    return make


def _trust_columns(run: ScenarioRun | None, state: MachineState | None, status: str) -> dict:
    """Scenario, level, validity and the bootstrap intervals of p50/p90 for a measured row."""
    spec_cols: dict = {}
    if run is None or status not in ("ok", "fallback"):
        return spec_cols
    samples_ms = run.samples_ns.sum(axis=1) / 1e6 if len(run.samples_ns) else np.zeros(0)
    for q in (50, 90):
        lo, hi = bootstrap_ci(samples_ms, q)
        spec_cols[f"p{q}_ci_low_ms"], spec_cols[f"p{q}_ci_high_ms"] = round(lo, 4), round(hi, 4)
    headline_ms = run.e2e_ns / 1e6 if run.headline.startswith("e2e") and run.e2e_ns is not None else samples_ms
    validity = judge(state, run.headline, headline_ms, interval_s=SAMPLE_INTERVAL_S, scenario_invalid=run.invalid)
    spec_cols.update(validity.columns())
    if state is not None:
        spec_cols.update(state.columns())
    return spec_cols


def run_job(spec: JobSpec, progress: Progress | None = None) -> JobResult:
    """Run one job to completion or failure; never raises except for KeyboardInterrupt."""
    detector: Detector | None = None
    placement: Placement | None = None
    info: dict = {"source": {}, "model": {}, "versions": {}}
    load_s = 0.0
    first_ms = float("nan")
    run: ScenarioRun | None = None
    frame_size: tuple[int, int] | None = None
    status, cause = "ok", ""
    oversubscribed: str | None = None
    monitor: MachineMonitor | None = None
    state: MachineState | None = None

    try:
        monitor = _start_monitor(spec)
        source, declared, total = _open(spec, info)
        oversubscribed = oversubscription_note(spec.threads)
        if oversubscribed:
            info["threads_oversubscribed"] = {"threads": spec.threads, "logical_cpus": logical_cpus()}

        config = DetectorConfig(model=spec.model, device=spec.device, threads=spec.threads, options=spec.options,
                                precision=spec.precision)
        report_phase(progress, f"loading {spec.backend}", total)
        detector, load_s = _load(spec, config, lambda phase: report_phase(progress, phase, total))
        info["model"] = detector.describe()
        info["versions"] = detector.versions()
        # precision: an int8 variant never scores its calibration frames; the model's facts
        check_not_scored(info["model"].get("calibration"), resolve(spec.source).absolute())
        info["model"]["facts"] = _model_facts(detector)
        if spec.preprocess == "shared" and not detector.input_size:
            raise HarnessError(
                f"backend {spec.backend} does not know its network input size, so shared preprocessing can't work",
                "pass --opt input_size=WxH, or use --preprocess native",
            )

        prefetch = Prefetcher(frame_passes(source, spec.frames, spec.scenario.loops))  # type: ignore[arg-type]
        frames_iter = iter(prefetch)
        try:
            first = next(frames_iter, None)
            if first is None:
                raise HarnessError(f"{spec.source} yielded no frames", "check the video/image folder")
            frame_size = (first[1].image.shape[1], first[1].image.shape[0])
            report_phase(progress, "warming up", total)
            first_ms = _warm_up(spec, detector, first[1].image)

            placement = detector.placement()
            info["placement"] = placement.to_dict()
            if placement.fallback:
                status, cause = "fallback", _fallback_cause(spec, placement)
            precision_cause = _read_precision(detector, spec, info)
            if precision_cause:
                status, cause = "fallback", precision_cause + (f"; {cause}" if cause else "")

            def frames_with_first():  # type: ignore[no-untyped-def]
                yield first
                yield from frames_iter

            ctx = ScenarioContext(spec, detector, source, frames_with_first(), first[1],
                                  _another_instance(spec, config, first[1].image, placement,
                                                    info["model"]["precision"].get("effective", "")),
                                  progress, total)
            if monitor is not None:
                monitor.begin_timed()
            report_phase(progress, "timing", total)  # the display's clock starts here: rate and ETA exclude load
            run = run_scenario(ctx)
            state = monitor.stop() if monitor is not None else None
            if declared and total and run.frames_seen < total:  # a truncated or damaged file: measure what decodes
                cause = (f"note: the source ended after {run.frames_seen} of the {declared} frames it declares "
                         "(truncated or damaged file?)") + (f"; {cause}" if cause else "")
                info["source_short"] = {"decoded": run.frames_seen, "declared": declared, "requested": spec.frames}
        finally:
            prefetch.close()
    except KeyboardInterrupt:
        raise
    except HarnessError as exc:
        exc = in_environment(exc, spec)
        status, cause = "failed", f"{type(exc).__name__}: {exc.problem}" + (f" (fix: {exc.fix})" if exc.fix else "")
    except Exception as exc:  # noqa: BLE001 - a crashing backend must not take the suite down
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        status, cause = "failed", f"{type(exc).__name__}: {exc}"
        info["traceback"] = "".join(tb[-6:])
    finally:
        if monitor is not None:
            state = monitor.stop()
        if detector is not None:
            try:
                detector.close()
            except Exception:  # noqa: BLE001
                pass
    return _result(spec, status, cause, info, run, state, placement, load_s, first_ms, detector, frame_size,
                   oversubscribed)


def _open(spec: JobSpec, info: dict) -> tuple[FrameSource, int | None, int | None]:
    """The job's source, the frame count its file declares, and how many of them this job will time."""
    source: FrameSource = open_source(resolve(spec.source).absolute())
    info["source"] = dict(source.info.__dict__)
    declared = source.info.frame_count or None  # what the file says it holds
    total = declared  # what this job will time: the declared count cut to --frames
    if spec.frames is not None:
        total = min(spec.frames, declared) if declared else spec.frames
    return source, declared, total


def _fallback_cause(spec: JobSpec, placement: Placement) -> str:
    """The FALLBACK row's cause; under --strict-device the job fails with it instead."""
    cause = f"requested {spec.device}, ran on {placement.actual}: {placement.evidence}"
    if spec.strict_device:
        raise DeviceFallback(cause, "drop --strict-device to measure the CPU run anyway, "
                             "or run `harness doctor` to see why the GPU is not usable")
    return cause


def _start_monitor(spec: JobSpec) -> MachineMonitor | None:
    """The machine-state sampler for this job (NVML on the job's GPU when it asks for one); None if psutil
    can't run here (the row then says its state was not recorded)."""
    try:
        return MachineMonitor(gpu_index=spec.device.index if spec.device.is_accelerator else None)
    except Exception:  # noqa: BLE001 - a monitor problem must never cost the job
        return None


def _result(spec: JobSpec, status: str, cause: str, info: dict, run: ScenarioRun | None, state: MachineState | None,
            placement: Placement | None, load_s: float, first_ms: float, detector: Detector | None,
            frame_size: tuple[int, int] | None, oversubscribed: str | None) -> JobResult:
    empty = np.zeros((0, 3), dtype=np.int64)
    summary = _summary(
        spec, placement, load_s, first_ms,
        run.samples_ns if run is not None else empty,
        run.decode_ns if run is not None else np.zeros(0, np.int64),
        run.wall_s if run is not None else 0.0,
        run.n_dets if run is not None else [],
        detector, frame_size, info["model"],
        frames_timed=run.frames_timed if run is not None else None,
    )
    summary["scenario"] = spec.scenario.kind
    summary["level"] = spec.scenario.level()
    if run is not None:
        summary["frames_arrived"] = "decoded"  # in a thread, overlapped with the model (LoadGen: "preloaded")
        summary.update(run.columns)
        info.update(run.info)
        notes = "; ".join(run.notes)
        if notes and status in ("ok", "fallback"):
            cause = f"note: {notes}" + (f"; {cause}" if cause else "")
    summary.update(_trust_columns(run, state, status))
    if state is not None:
        info["machine_state"] = state.to_dict()
    if oversubscribed and status in ("ok", "fallback"):
        cause = f"note: {oversubscribed}" + (f"; {cause}" if cause else "")
    summary["status"] = status
    summary["cause"] = cause
    if frame_size:
        info["frame_size"] = list(frame_size)
    info["policy"] = spec.policy.to_dict()
    return JobResult(spec, status, summary, run.frame_rows if run else [], run.records if run else [], info, cause)
