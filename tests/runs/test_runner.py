"""The runner and the results folder, end to end on the real TF1 backend and PETS video."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.core.jobs import JobSpec
from harness.measure.metrics.latency import latency_stats
from harness.execution.runner import run_job
from tests.conftest import requires_tf

pytestmark = requires_tf


def test_latency_stats_known_values() -> None:
    ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    s = latency_stats(ns)
    assert s.frames == 100 and s.min_ms == 1 and s.max_ms == 100
    # LoadGen's method: the sorted sample at index int(n * p), never an interpolation
    assert s.p50_ms == 51 and s.p90_ms == 91 and s.p95_ms == 96 and s.p99_ms == 100
    assert s.mean_ms == pytest.approx(50.5)


@pytest.fixture(scope="module")
def tf1_result(assets_root):
    return run_job(JobSpec(backend="tf1", source="pets09-s2l1", frames=40, warmup=3))


def test_job_summary_has_every_measure(tf1_result) -> None:
    r = tf1_result
    assert r.status == "ok", r.cause
    s = r.summary
    assert s["frames"] == 40 and len(r.frames) == 40
    for key in ("load_s", "first_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms",
                "max_ms", "model_fps", "pipeline_fps", "peak_rss_mb", "pre_ms", "infer_ms", "post_ms"):
        assert np.isfinite(s[key]) and s[key] >= 0, key
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["device_actual"] == "cpu" and "CPU" in s["placement_evidence"]
    # the cold first inference is reported apart and is slower than a warm one
    assert s["first_ms"] > s["p50_ms"]
    # model FPS comes from pre+infer+post of the timed frames
    total_ms = sum(f["pre_ms"] + f["infer_ms"] + f["post_ms"] for f in r.frames)
    assert s["model_fps"] == pytest.approx(40 / (total_ms / 1000), rel=0.01)
    assert [f["frame"] for f in r.frames] == list(range(40))  # every frame timed, none eaten by warm-up


def test_detections_are_saved_for_every_frame_in_pixels(tf1_result) -> None:
    dets = tf1_result.detections
    frames = {d["frame"] for d in dets}
    assert frames == set(range(40))
    for d in dets:
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 768.01 and y + h <= 576.01
        assert d["score"] >= 0.01 and d["category_id"] == 1


def test_shared_mode_boxes_are_in_original_frame_pixels(assets_root, tf1_result) -> None:
    shared = run_job(JobSpec(backend="tf1", source="pets09-s2l1", frames=5, warmup=1, preprocess="shared"))
    assert shared.status == "ok", shared.cause
    a = [d for d in tf1_result.detections if d["frame"] == 0 and d["score"] > 0.5]
    b = [d for d in shared.detections if d["frame"] == 0 and d["score"] > 0.5]
    assert len(a) == len(b) >= 2
    for da, db in zip(sorted(a, key=lambda d: d["bbox"][0]), sorted(b, key=lambda d: d["bbox"][0])):
        assert np.allclose(da["bbox"], db["bbox"], atol=12)  # same people, same pixel space


def test_a_gpu_request_on_this_machine_is_a_loud_fallback(assets_root) -> None:
    r = run_job(JobSpec(backend="tf1", source="pets09-s2l1", frames=3, warmup=1, device="gpu"))
    assert r.status == "fallback"
    assert r.summary["device_requested"] == "gpu" and r.summary["device_actual"] == "cpu"
    assert "ran on cpu" in r.cause and "GPU" in r.cause
    strict = run_job(JobSpec(backend="tf1", source="pets09-s2l1", frames=3, warmup=1, device="gpu",
                             strict_device=True))
    assert strict.status == "failed" and "DeviceFallback" in strict.cause


def test_cli_run_writes_a_complete_results_folder(assets_root, tmp_path) -> None:
    out = tmp_path / "res"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--backend", "tf1", "--frames", "12", "--warmup", "2",
         "--executor", "inline", "--out", str(out), "--quiet", "--no-report"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv")
    needed = ["job_id", "backend", "model", "video", "device_requested", "device_actual", "status", "frames",
              "load_s", "first_ms", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "model_fps",
              "pipeline_fps", "peak_rss_mb"]
    assert all(c in runs.columns for c in needed)
    assert runs.loc[0, "status"] == "ok" and runs.loc[0, "frames"] == 12
    frames = pd.read_csv(out / "frames.csv")
    assert list(frames.columns[:7]) == ["job_id", "frame", "decode_ms", "pre_ms", "infer_ms", "post_ms", "n_dets"]
    assert len(frames) == 12
    job_id = runs.loc[0, "job_id"]
    dets = json.loads((out / "detections" / f"{job_id}.json").read_text())
    assert dets and set(dets[0]) == {"frame", "bbox", "score", "category_id"}
    env = json.loads((out / "env.json").read_text())
    assert "tensorflow" in env["packages"] and "harness" in env["command"]
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    assert jobs[0]["info"]["placement"]["actual"] == "cpu"
    assert not list(out.rglob("*.tmp"))  # no half-written files left behind


def test_cli_list_and_bad_flags(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--backend", "tf1", "--device", "cpu",
                           "--device", "gpu", "--list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "2 job(s)" in proc.stdout and "device=gpu" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--backend", "tf9", "--frames", "2",
                           "--executor", "inline", "--out", str(tmp_path / "x"), "--quiet", "--no-report"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2  # refused before the run: no folder, no FAILED row
    assert "unknown backend 'tf9'" in proc.stderr and "tf1" in proc.stderr
    assert not (tmp_path / "x").exists()
