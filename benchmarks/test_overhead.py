"""Does the harness's inference time hold only the framework's work? Two checks per installed backend.

1. Stage attribution: the infer time ``Detector.detect`` reports (what the runner writes as ``infer_ms``)
   against a bare loop that calls the framework directly, on the same loaded session, with a *ready* input
   made by the bare loop's own code (:mod:`benchmarks.bare_loops`: the framework's layout, channel order,
   dtype and memory, nothing left for it to convert). Both run in this one process, interleaved frame by
   frame in an ABBA order (bare, harness, harness, bare, ...) so that load from other processes, CPU
   frequency and cache warmth fall on both sides alike, over the same PETS frames (decoded and resized once;
   the bare side's ready input made once per frame, outside its timing). A conversion the adapter leaves
   to the framework (e.g. a reversed-channel view TensorFlow must copy) shows as a ratio above 1.
   Pass: median within 3 %, p90 within 5 %.
2. Pipeline: a real :func:`harness.execution.runner.run_job` over the same frames; where decoding is cheaper than
   inference, the decode thread must keep inference fed: pipeline FPS >= 0.95 x model FPS.

pytest-benchmark times the harness-path ``detect()`` calls (and, for 2, the whole job); the ratios go into
each benchmark's ``extra_info`` and into the table printed at the end.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from benchmarks.bare_loops import bare_call, ready_input
from benchmarks.conftest import (
    BACKENDS,
    FRAMES,
    MEDIAN_TOLERANCE,
    P90_TOLERANCE,
    PIPELINE_MIN_RATIO,
    OverheadRow,
    PipelineRow,
    Results,
)

PASSES = 2  # each frame is measured twice per side
WARMUP = 10

IDS = [b for b, _ in BACKENDS]


def loaded_detector(backend: str, model: str | None) -> Any:
    from harness.core.detector import DetectorConfig
    from harness.core.registry import available_backends, backend_class
    from harness.core.errors import BackendUnavailable

    if backend not in available_backends():
        pytest.skip(f"backend {backend} is not registered (pip install -e . after adding it)")
    try:
        cls = backend_class(backend)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    missing = cls.missing_modules()
    if missing:
        pytest.skip(f"backend {backend} needs {', '.join(missing)}")
    det = cls(DetectorConfig(model=model))
    det.load()
    return det


@pytest.mark.parametrize(("backend", "model"), BACKENDS, ids=IDS)
def test_infer_overhead(benchmark: Any, backend: str, model: str | None, pets_frames: list[np.ndarray],
                        results: Results) -> None:
    from harness.data.preprocess import shared_resize

    det = loaded_detector(backend, model)
    try:
        frames = [shared_resize(f, det.input_size) for f in pets_frames]  # what the default suite feeds
        inputs = [ready_input(backend, det, f) for f in frames]  # the bare side's ready input, made once
        bare = bare_call(backend, det)
        for f, x in zip(frames[:WARMUP], inputs[:WARMUP]):
            det.detect(f)
            bare(x)

        n = len(frames)
        rounds = n * PASSES
        clock = time.perf_counter_ns
        harness_ns: list[int] = []
        bare_ns: list[int] = []
        state = {"k": 0}

        def time_bare(k: int) -> None:
            x = inputs[k % n]
            t0 = clock()
            bare(x)
            bare_ns.append(clock() - t0)

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            # ABBA: round 2j runs bare(2j-1) [after harness(2j-1)] then bare(2j) [before harness(2j)]
            k = state["k"]
            if k % 2 == 0:
                if k > 0:
                    time_bare(k - 1)
                time_bare(k)
            state["k"] = k + 1
            return (frames[k % n],), {}

        def harness_path(frame: np.ndarray) -> None:
            _, stages = det.detect(frame)
            harness_ns.append(stages.infer_ns)

        benchmark.pedantic(harness_path, setup=setup, rounds=rounds, iterations=1)
        if rounds % 2 == 0:
            time_bare(rounds - 1)
    finally:
        det.close()

    assert len(harness_ns) == len(bare_ns) == rounds
    h = np.asarray(harness_ns, dtype=np.float64) / 1e6
    b = np.asarray(bare_ns, dtype=np.float64) / 1e6
    row = OverheadRow(backend, model or "reference", n, *(float(np.percentile(h, 50)), float(np.percentile(b, 50)),
                                                            float(np.percentile(h, 90)), float(np.percentile(b, 90))))
    results.overhead[backend] = row
    benchmark.extra_info.update({
        "harness_infer_p50_ms": row.harness_p50, "bare_p50_ms": row.bare_p50,
        "harness_infer_p90_ms": row.harness_p90, "bare_p90_ms": row.bare_p90,
        "median_ratio": row.median_ratio, "p90_ratio": row.p90_ratio, "samples_per_side": rounds,
    })
    assert abs(row.median_ratio - 1) <= MEDIAN_TOLERANCE, (
        f"{backend}: harness median {row.harness_p50:.2f} ms vs bare {row.bare_p50:.2f} ms")
    assert abs(row.p90_ratio - 1) <= P90_TOLERANCE, (
        f"{backend}: harness p90 {row.harness_p90:.2f} ms vs bare {row.bare_p90:.2f} ms")


@pytest.mark.parametrize(("backend", "model"), BACKENDS, ids=IDS)
def test_pipeline_keeps_inference_fed(benchmark: Any, backend: str, model: str | None,
                                      pets_frames: list[np.ndarray], results: Results) -> None:
    from harness.core.jobs import JobSpec
    from harness.core.policy import PostprocessPolicy
    from harness.execution.runner import run_job

    loaded_detector(backend, model).close()  # skips cleanly where the backend can't load
    spec = JobSpec(backend=backend, source="pets09-s2l1", model=model, frames=FRAMES, warmup=WARMUP,
                   preprocess="shared", policy=PostprocessPolicy(classes=(1,) if backend == "tflite" else None))
    result = benchmark.pedantic(run_job, args=(spec,), rounds=1, iterations=1)
    assert result.status == "ok", result.cause
    s = result.summary
    assert s["frames"] == FRAMES
    row = PipelineRow(backend, s["frames"], float(s["decode_ms"]), 1000.0 / float(s["model_fps"]),
                      float(s["model_fps"]), float(s["pipeline_fps"]))
    results.pipeline[backend] = row
    benchmark.extra_info.update({"model_fps": row.model_fps, "pipeline_fps": row.pipeline_fps,
                                 "decode_ms": row.decode_ms, "pipeline_over_model": row.ratio})
    if row.decode_ms < row.model_ms:
        assert row.ratio >= PIPELINE_MIN_RATIO, (
            f"{backend}: pipeline {row.pipeline_fps:.1f} FPS < {PIPELINE_MIN_RATIO} x model {row.model_fps:.1f} FPS "
            f"(decode {row.decode_ms:.2f} ms/frame, model {row.model_ms:.2f} ms/frame)")
