"""MLPerf LoadGen driving single-stream, offline and server (``--loadgen``): LoadGen's own summary lands in the
results folder, runs.csv carries its figures and verdict, the sample library holds exactly the frames the job
scores, and the detections are those of a plain single-stream run.

Real models and the real PETS video; LoadGen is the real package. Runs are kept small (16-20 frames, no
minimum duration) so each takes seconds; the one VALID server run needs enough queries for LoadGen's early
stopping (459 with none over the bound; it runs 700, so one may pass it), so it uses the numpy frame-stats backend, fast enough to answer that
many queries in seconds on a busy machine (under a 1 s bound: a shared machine's stalls alone can pass 200 ms).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.core.jobs import JobSpec
from harness.execution.runner import run_job
from harness.core.scenario import ScenarioSpec
from tests.conftest import has_module
from tests.helpers.results_folders import run_cli

pytestmark = [
    pytest.mark.skipif(not has_module("mlperf_loadgen"), reason="MLPerf LoadGen (mlcommons-loadgen) is not installed"),
    pytest.mark.skipif(not has_module("onnxruntime"), reason="ONNX Runtime is not installed"),
]
FRAMES = 16
FAST = "tests.helpers.stand_in_backends:FrameStatsDetector"


def summary_figures(text: str) -> dict[str, float | str]:
    """LoadGen's summary file read the way a person reads it (independently of the detail log the harness
    parses): the verdict, each criterion, QPS and every latency line in milliseconds."""
    out: dict[str, float | str] = {"result": re.search(r"Result is : (\w+)", text).group(1)}
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+) percentile latency \(ns\)\s*: (\d+)", line)
        if m:
            out[f"p{m.group(1)}"] = int(m.group(2)) / 1e6
        m = re.match(r"(Min|Max|Mean) latency \(ns\)\s*: (\d+)", line)
        if m:
            out[m.group(1).lower()] = int(m.group(2)) / 1e6
        m = re.match(r"(QPS w/o loadgen overhead|Samples per second|Completed samples per second)\s*: ([\d.]+)", line)
        if m:
            out["qps"] = float(m.group(2))
        m = re.match(r"\s*(Min duration|Min queries|Early stopping|Performance constraints) satisfied\s*: (\w+)", line)
        if m:
            out[m.group(1)] = m.group(2) == "Yes"
    return out


def assert_row_is_the_summary(row: pd.Series, summary: dict) -> None:
    assert row["lg_result"] == summary["result"]
    for p, col in (("50.00", "lg_p50_ms"), ("90.00", "lg_p90_ms"), ("95.00", "lg_p95_ms"), ("99.00", "lg_p99_ms"),
                   ("99.90", "lg_p999_ms")):
        assert row[col] == pytest.approx(summary[f"p{p}"], abs=1e-4), col
    for key, col in (("min", "lg_min_ms"), ("max", "lg_max_ms"), ("mean", "lg_mean_ms")):
        assert row[col] == pytest.approx(summary[key], abs=1e-4), col
    assert row["lg_qps"] == pytest.approx(summary["qps"], rel=1e-3)
    for name, col in (("Min duration", "lg_min_duration_met"), ("Min queries", "lg_min_queries_met"),
                      ("Early stopping", "lg_early_stopping_met"), ("Performance constraints", "lg_perf_constraints_met")):
        if name in summary:
            assert str(row[col]) == str(summary[name]), col


def run_folder(out: Path, *argv: str) -> pd.DataFrame:
    proc = run_cli("run", "-b", "onnxruntime", "--frames", str(FRAMES), "--preprocess", "shared", "--warmup", "1",
                   "--loadgen", "--quiet", "--out", str(out), *argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_csv(out / "runs.csv")


def check_folder(out: Path, runs: pd.DataFrame) -> None:
    """Every row has LoadGen's summary and detail log in the folder, and its figures are the summary's."""
    import json

    jobs = {j["spec"]["job_id"]: j for j in json.loads((out / "jobs.json").read_text())["jobs"]}
    for _, row in runs.iterrows():
        assert row["status"] == "ok", row["cause"]
        files = jobs[row["job_id"]]["files"]
        summary_file, detail = out / files["loadgen_summary"], out / files["loadgen_detail"]
        assert summary_file.parent.parent == out / "loadgen" and detail.is_file()
        assert "loadgen_logs" not in jobs[row["job_id"]]["info"]  # the logs are files, not jobs.json text
        assert_row_is_the_summary(row, summary_figures(summary_file.read_text()))
        assert row["frames_arrived"] == "preloaded"


def test_single_stream_offline_and_server_through_loadgen_report_its_summary(assets_root: Path,
                                                                             tmp_path: Path) -> None:
    single = run_folder(tmp_path / "single")
    check_folder(tmp_path / "single", single)
    row = single.iloc[0]
    assert row["job_id"].endswith("_single-loadgen") and row["lg_queries"] == FRAMES
    # 16 queries are too few for LoadGen's early stopping (64): INVALID, and the row says why
    assert row["lg_result"] == "INVALID" and not row["lg_early_stopping_met"]
    assert "early stopping" in row["cause"]

    offline = run_folder(tmp_path / "offline", "--scenario", "offline", "--batch", "1,4")
    check_folder(tmp_path / "offline", offline)
    assert list(offline["batch"]) == [1, 4]
    assert offline.iloc[1]["batches"] == math.ceil(FRAMES / 4)

    rate = round(0.6 * float(row["lg_qps"]), 2)  # about 60 % of what single-stream did, bound 200 ms
    server = run_folder(tmp_path / "server", "--scenario", "server", "--qps", str(rate), "--latency-bound", "200ms")
    check_folder(tmp_path / "server", server)
    s = server.iloc[0]
    assert s["lg_latency_bound_ms"] == 200 and s["e2e_p99_ms"] == s["lg_p99_ms"] and s["qps"] == rate


def test_server_verdict_is_loadgens(assets_root: Path) -> None:
    ss = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=FRAMES, warmup=1, preprocess="shared",
                         scenario=ScenarioSpec("single-stream", loadgen=True)))
    rate = float(ss.summary["lg_qps"])
    # ten times what the model answers one at a time: the queue grows and p99 passes the 200 ms bound
    over = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=30, warmup=1, preprocess="shared",
                           scenario=ScenarioSpec("server", qps=round(10 * rate, 2), latency_bound_ms=200,
                                                 loadgen=True, seed=3)))
    o = over.summary
    assert over.status == "ok", over.cause
    assert o["lg_result"] == "INVALID" and o["lg_perf_constraints_met"] is False and o["bound_met"] is False
    assert o["lg_invalid_reason"] == "Reduce target QPS to improve latency."
    assert "Reduce target QPS" in over.cause and o["lg_p99_ms"] > 200
    assert o["lg_seed"] == 3  # --seed reached LoadGen (its detail log's effective schedule seed)

    # a rate held with a wide margin, for long enough for early stopping (700 queries: one may pass the bound): a
    # numpy backend answering in a few ms, at 60 qps under a 1 s bound (wide: on this shared machine a 200 ms
    # bound was missed by stalls of other processes, though the backend keeps up several times over). At 3.5 ms
    # of CPU a query (measured), 60 qps keeps about a fifth of a core busy, and the 700 queries take 12 s, not
    # the 18 s they take at 40 qps
    held = run_job(JobSpec(backend=FAST, source="pets09-s2l1", frames=30, warmup=1, preprocess="shared",
                           scenario=ScenarioSpec("server", qps=60, latency_bound_ms=1000, min_frames=700,
                                                 loadgen=True)))
    h = held.summary
    assert held.status == "ok", held.cause
    assert h["lg_result"] == "VALID", held.cause
    assert h["lg_perf_constraints_met"] and h["lg_early_stopping_met"] and h["lg_queries"] >= 700
    assert h["lg_invalid_reason"] == ""


def test_the_sample_library_holds_the_scored_frames_and_detections_match_single_stream(assets_root: Path) -> None:
    from harness.data.assets import resolve
    from harness.execution.scenarios.preload import frame_checksum
    from harness.data.video import open_source
    from tests.helpers.agreement import assert_same_records

    n = 12
    loadgen = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=n, warmup=1, preprocess="shared",
                              scenario=ScenarioSpec("single-stream", loadgen=True, min_frames=30)))
    plain = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=n, warmup=1, preprocess="shared"))
    assert loadgen.status == plain.status == "ok", (loadgen.cause, plain.cause)
    library = loadgen.info["loadgen"]["library"]
    fresh = list(open_source(resolve("pets09-s2l1").absolute()).frames(n))
    assert library["frame_indices"] == [f.index for f in fresh] == list(range(n))
    assert library["checksums"] == [frame_checksum(f.image) for f in fresh]
    assert len(set(library["checksums"])) == n  # distinct frames, not one frame repeated
    # LoadGen repeated samples (30 queries over 12 frames): each frame's boxes are saved once, the same as
    # the plain single-stream run's, and frames.csv has one row per query
    assert loadgen.summary["lg_queries"] == 30 and len(loadgen.frames) == 30
    assert {f["frame"] for f in loadgen.frames} <= set(range(n))
    assert_same_records(plain.detections, loadgen.detections)


def test_loadgen_is_refused_where_it_has_no_form() -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="no LoadGen form"):
        ScenarioSpec("realtime", loadgen=True)
    assert ScenarioSpec("offline", batch=2, loadgen=False) == ScenarioSpec("offline", batch=2)
    assert JobSpec(backend="onnxruntime", source="pets09-s2l1",
                   scenario=ScenarioSpec("offline", batch=2, loadgen=True)).job_id.endswith("_offline-b2-loadgen")
    assert JobSpec(backend="onnxruntime", source="pets09-s2l1", scenario=ScenarioSpec(
        "server", qps=5, loadgen=True, seed=7)).job_id.endswith("_server-5qps-loadgen-seed7")
    with pytest.raises(HarnessError, match="seed is a setting of the server scenario"):
        ScenarioSpec("offline", seed=1)


def test_frames_over_the_memory_budget_are_refused_before_decoding(assets_root: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_PRELOAD_MB", "1")  # PETS frames are 768x576: 1.3 MiB each, native
    r = run_job(JobSpec(backend=FAST, source="pets09-s2l1", frames=30, warmup=1, preprocess="native",
                        scenario=ScenarioSpec("single-stream", loadgen=True)))
    assert r.status == "failed" and "over the 1 MiB budget" in r.cause and "--frames" in r.cause
    assert "HARNESS_PRELOAD_MB" in r.cause and r.frames == []


@pytest.mark.slow
def test_fidelity_benchmark_reports_its_ratios(assets_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The harness against plain LoadGen + ONNX Runtime (benchmarks/loadgen_fidelity.py), A-B-A-B on 30 frames:
    it reports the ratios and never asserts them (they depend on the machine; the README quotes a quiet run)."""
    from benchmarks.loadgen_fidelity import FIGURES, measure

    # 30 frames, not the 300 the quoted run used: what is asserted is the benchmark's plumbing (every figure of
    # every scenario, both sides, both rounds, each measured); 30 queries give LoadGen every one of those figures
    # (its percentiles are defined for any count), and 200 frames took 4x 50's time (106 s on 2 busy cores) for
    # ratios this test does not judge
    rows = measure(frames=30, rounds=2)
    with capsys.disabled():
        print("\nLoadGen fidelity (harness / plain LoadGen + ONNX Runtime):")
        for r in rows:
            print(f"  round {r['round']} {'quiet' if r['quiet'] else 'BUSY'} {r['scenario']:13s} {r['figure']:14s} "
                  f"{r['harness']:9.2f} / {r['plain']:9.2f} = {r['ratio']:.2f}")
    expected = {(k, what) for k, figures in FIGURES.items() for what, _ in figures}
    assert {(r["scenario"], r["figure"]) for r in rows} == expected and {r["round"] for r in rows} == {1, 2}
    assert all(r["harness"] > 0 and r["plain"] > 0 for r in rows)  # both sides measured something
