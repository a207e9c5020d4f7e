"""Scenarios: settings and sweeps, then each scenario on real models and the real PETS video.

Real frames everywhere; the only stand-in is SlowDetector (tests/helpers/stand_in_backends.py), a backend slower than
the video on purpose, where a test needs a detector that certainly can't keep up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import build_parser
from harness.commands.run import expand_jobs
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.execution.runner import run_job
from harness.core.scenario import ScenarioSpec, parse_duration, sweep_levels
from harness.suites.expand import load_suite
from tests.conftest import has_module, requires_cv2, requires_tf, requires_torch
from tests.helpers.agreement import assert_same_records
from tests.helpers.results_folders import run_cli

SLOW = "tests.helpers.stand_in_backends:SlowDetector"
requires_ort = pytest.mark.skipif(not has_module("onnxruntime"), reason="ONNX Runtime is not installed")


def jobs_of(*argv: str) -> list[JobSpec]:
    return expand_jobs(build_parser().parse_args(["run", *argv]))


# settings, ids and sweeps (no model) -----------------------------------------------------------------------

def test_single_stream_is_the_default_and_keeps_every_job_id() -> None:
    job = JobSpec(backend="tf1", source="pets09-s2l1")
    assert job.scenario == ScenarioSpec() and job.job_id == "tf1_ref_pets09-s2l1_cpu"
    # a spec saved before scenarios existed reads back as single-stream with the same id
    old = {k: v for k, v in job.to_dict().items() if k != "scenario"}
    assert JobSpec.from_dict(old) == job


def test_each_level_is_its_own_job_with_its_own_id() -> None:
    jobs = jobs_of("-b", "onnxruntime", "-b", "tf1", "--scenario", "offline", "--batch", "1,2,4,8")
    assert [j.job_id for j in jobs[:4]] == [f"onnxruntime_ref_pets09-s2l1_cpu_offline-b{b}" for b in (1, 2, 4, 8)]
    assert len(jobs) == 8 and {j.scenario.batch for j in jobs} == {1, 2, 4, 8}
    server = jobs_of("-b", "onnxruntime", "--scenario", "server", "--qps", "10,20.5", "--latency-bound", "50ms")
    assert [j.job_id.rsplit("_", 1)[1] for j in server] == ["server-10qps", "server-20.5qps"]
    assert {j.scenario.latency_bound_ms for j in server} == {50.0}
    realtime = jobs_of("-b", "tf1", "--scenario", "realtime", "--queue", "2", "--min-duration", "1.5m")
    assert realtime[0].job_id.endswith("_realtime-srcfps-q2") and realtime[0].scenario.min_duration_s == 90.0
    streams = jobs_of("-b", "opencv", "--scenario", "multi-stream", "--streams", "1,2,4")
    assert [j.scenario.stream_count for j in streams] == [1, 2, 4]


@pytest.mark.parametrize("argv, problem", [
    (["--batch", "4"], "batch is a setting of the offline scenario"),
    (["--scenario", "server"], "the server scenario needs a target rate"),
    (["--scenario", "offline", "--batch", "2,x"], "'x' is not an integer"),
    (["--scenario", "offline", "--batch", "0"], "expected a positive integer"),
    (["--scenario", "multi-stream", "--streams", "3", "--instances", "2"], "instances 2 with 3 streams"),
    (["--scenario", "server", "--qps", "10", "--latency-bound", "soon"], "not a duration"),
])
def test_a_bad_scenario_setting_is_one_clear_error(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                   problem: str) -> None:
    from harness.cli import main

    assert main(["run", "-b", "onnxruntime", *argv, "--list"]) == 2
    err = capsys.readouterr().err
    assert problem in err and "fix:" in err and "Traceback" not in err


def test_a_suite_sets_a_scenario_and_its_sweep_per_matrix_entry(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text('[matrix]\nbackends = ["tf1", { name = "onnxruntime", scenario = "server", qps = [5, 10], '
                     'latency_bound_ms = 40 }]\n')
    jobs = load_suite(suite)
    assert [j.scenario.kind for j in jobs] == ["single-stream", "server", "server"]
    assert [j.scenario.qps for j in jobs[1:]] == [5, 10] and jobs[1].scenario.latency_bound_ms == 40
    suite.write_text('[defaults]\nscenario = "offline"\nbatch = [1, "two"]\n[matrix]\nbackends = ["tf1"]\n')
    with pytest.raises(HarnessError) as err:
        load_suite(suite)
    assert "s.toml:3" in err.value.problem and "batch" in err.value.problem


def test_sweeps_and_durations_parse() -> None:
    assert sweep_levels({"batch": [1, 2], "x": 1}) == [{"batch": 1, "x": 1}, {"batch": 2, "x": 1}]
    assert sweep_levels({"qps": 5}) == [{"qps": 5}]
    assert parse_duration("50ms", default_unit="ms", flag="--x") == pytest.approx(0.05)
    assert parse_duration("2m", default_unit="s", flag="--x") == 120 and parse_duration("7", default_unit="s", flag="-x") == 7


# realtime ---------------------------------------------------------------------------------------------------

def test_realtime_at_the_video_fps_drops_what_a_slow_backend_cannot_take(assets_root: Path) -> None:
    """PETS releases a frame every 0.1 s (its 10 FPS); a backend taking 0.15 s per frame misses about every
    other one, and the row says how many."""
    r = run_job(JobSpec(backend=SLOW, source="pets09-s2l1", frames=30, warmup=1,
                        scenario=ScenarioSpec("realtime")))
    assert r.status == "ok", r.cause
    s = r.summary
    assert s["release_fps"] == 10.0 and s["released"] == 30
    assert 10 <= s["dropped"] <= 20 and s["processed"] == 30 - s["dropped"] == s["frames"] == len(r.frames)
    assert f"dropped {s['dropped']} of 30 released frames" in r.cause
    # what was processed is saved, each frame once; the dropped frames have no boxes
    processed = {f["frame"] for f in r.frames}
    assert {d["frame"] for d in r.detections} == processed and len(processed) == s["processed"]
    dropped = set(r.info["dropped_frames"])
    assert len(dropped) == s["dropped"] and not dropped & processed and 0 in processed
    assert s["e2e_p50_ms"] >= 150 and s["max_fps_no_drop"] < 10  # each result takes longer than a frame period
    # the release clock's own error is measured (its bound is benchmarks/test_scenarios.py's, on a quiet machine)
    assert 0 <= s["release_jitter_p99_ms"] <= s["release_jitter_max_ms"]


def test_realtime_with_a_queue_keeps_every_frame_but_they_come_late(assets_root: Path) -> None:
    r = run_job(JobSpec(backend=SLOW, source="pets09-s2l1", frames=12, warmup=1,
                        scenario=ScenarioSpec("realtime", queue=12)))
    s = r.summary
    assert r.status == "ok" and s["dropped"] == 0 and s["processed"] == 12
    assert s["late"] >= 6 and s["e2e_max_ms"] > s["e2e_p50_ms"]  # the queue grows: each frame waits longer


# offline ----------------------------------------------------------------------------------------------------

BATCHING = [pytest.param("tf1", marks=requires_tf), pytest.param("onnxruntime", marks=requires_ort),
            pytest.param("opencv", marks=requires_cv2), pytest.param("torch", marks=requires_torch)]


@pytest.mark.parametrize("backend", BATCHING)
def test_offline_batch_4_finds_what_batch_1_finds(assets_root: Path, backend: str) -> None:
    def job(batch: int):
        return run_job(JobSpec(backend=backend, source="pets09-s2l1", frames=10, warmup=1, preprocess="shared",
                               scenario=ScenarioSpec("offline", batch=batch)))

    one, four = job(1), job(4)
    assert one.status == four.status == "ok", (one.cause, four.cause)
    assert four.summary["batch"] == 4 and four.summary["batches"] == 3 and four.summary["frames"] == 10
    assert [f["batch_size"] for f in four.frames] == [4] * 8 + [2] * 2  # the last batch holds what was left
    assert len(one.detections) > 10
    assert_same_records(one.detections, four.detections)


@requires_tf
def test_tf2_batches_a_savedmodel_whose_batch_axis_is_free(assets_root: Path, tmp_path: Path) -> None:
    """The reference SavedModel has the OD API exporter's [1, H, W, 3] signature (its batch is fixed, and the
    row says so); a SavedModel of the same graph with a free batch axis runs batch 4 like batch 1."""
    import tensorflow as tf

    from backends.tf1 import OD_API_NAMES, read_graph_def
    from harness.data.models import DEFAULT_MODEL, resolve_model

    fixed = run_job(JobSpec(backend="tf2", source="pets09-s2l1", frames=4, warmup=1, preprocess="shared",
                            scenario=ScenarioSpec("offline", batch=4)))
    assert fixed.status == "failed" and "batch unsupported" in fixed.cause and "fixed batch of 1" in fixed.cause

    graph_def = read_graph_def(tf, resolve_model(DEFAULT_MODEL, role="graph").path)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    outs = {k: wrapped.graph.get_tensor_by_name(OD_API_NAMES[k]) for k in ("boxes", "scores", "classes", "num")}
    pruned = wrapped.prune(wrapped.graph.get_tensor_by_name(OD_API_NAMES["input"]),
                           {f"detection_{k}" if k != "num" else "num_detections": v for k, v in outs.items()})
    module = tf.Module()
    module.detect = pruned

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(input_tensor):  # type: ignore[no-untyped-def]
        return module.detect(input_tensor)

    tf.saved_model.save(module, str(tmp_path / "free"), signatures={"serving_default": serve})

    def job(batch: int):
        return run_job(JobSpec(backend="tf2", model=str(tmp_path / "free"), source="pets09-s2l1", frames=6, warmup=1,
                               options={"labels": "person"},  # native: the graph resizes the video's frames itself
                               scenario=ScenarioSpec("offline", batch=batch)))

    one, four = job(1), job(4)
    assert one.status == four.status == "ok", (one.cause, four.cause)
    assert_same_records(one.detections, four.detections)


@requires_tf
def test_a_backend_that_cannot_batch_says_so_in_its_row_and_the_run_goes_on(assets_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    proc = run_cli("run", "-b", "tflite", "-b", "onnxruntime", "--scenario", "offline", "--batch", "2", "--frames",
                   "4", "--warmup", "1", "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 1, proc.stderr[-2000:]  # one job failed, the run finished
    runs = pd.read_csv(out / "runs.csv").set_index("backend")
    assert runs.loc["onnxruntime", "status"] == "ok" and runs.loc["onnxruntime", "batch"] == 2
    assert runs.loc["tflite", "status"] == "failed"
    assert "batch unsupported" in runs.loc["tflite", "cause"] and "resize" in runs.loc["tflite", "cause"]
    assert "Traceback" not in proc.stderr


# multi-stream -----------------------------------------------------------------------------------------------

@requires_ort
@pytest.mark.parametrize("instances", [1, 2])
def test_two_streams_each_find_what_a_single_stream_finds(assets_root: Path, instances: int) -> None:
    single = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=12, warmup=1, preprocess="shared"))
    multi = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=12, warmup=1, preprocess="shared",
                            scenario=ScenarioSpec("multi-stream", streams=2, instances=instances)))
    assert single.status == multi.status == "ok", (single.cause, multi.cause)
    s = multi.summary
    assert s["streams"] == 2 and s["frames"] == 24 and s["distinct_frames"] == 12
    assert sorted({f["stream"] for f in multi.frames}) == [0, 1]
    assert all(sum(f["stream"] == k for f in multi.frames) == 12 for k in (0, 1))
    # stream 0's boxes are saved and equal the single-stream run's; stream 1 matched stream 0 on every frame
    assert_same_records(single.detections, multi.detections)
    assert s["stream_mismatch_frames"] == 0
    # both end at the last frame served; 1e-3: each is rounded to 3 decimals
    assert s["aggregate_fps"] > 0 and s["stream_fps_min"] <= s["aggregate_fps"] / 2 + 1e-3


# server -----------------------------------------------------------------------------------------------------

@requires_ort
def test_server_at_a_rate_the_model_cannot_sustain_breaks_the_bound(assets_root: Path) -> None:
    r = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=30, warmup=1, preprocess="shared",
                        scenario=ScenarioSpec("server", qps=1000, latency_bound_ms=30)))
    s = r.summary
    assert r.status == "ok" and s["queries"] == 30 and s["frames"] == 30
    assert s["e2e_p99_ms"] > 30 and s["bound_met"] is False
    assert s["qps_done"] < s["qps_offered"]  # the queue grew: fewer answers per second than questions


def test_a_server_sweep_answers_the_largest_rate_within_the_bound(assets_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    # a 0.1 s backend serves under 10 qps: at 1.5 qps it is mostly idle (a query waits for at most one other), at
    # 100 qps the 12 queries arrive within about 0.12 s and the last waits for the 11 before it (over 1 s)
    proc = run_cli("run", "-b", SLOW, "--opt", "sleep_s=0.1", "--preprocess", "shared", "--scenario", "server",
                   "--qps", "1.5,100", "--latency-bound", "800ms", "--frames", "12", "--warmup", "1", "--out", str(out),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv").set_index("qps")
    assert bool(runs.loc[100.0, "bound_met"]) is False and runs.loc[100.0, "e2e_p99_ms"] > 800
    assert bool(runs.loc[1.5, "bound_met"]) is True, runs.loc[1.5, "e2e_p99_ms"]
    sweeps = pd.read_csv(out / "scenarios.csv")
    assert len(sweeps) == 1 and sweeps.loc[0, "value"] == 1.5 and sweeps.loc[0, "levels"] == "1.5,100"
    assert sweeps.loc[0, "answer"] == "1.5 qps with p99 under 800 ms"
    page = (out / "report.html").read_text()
    assert "id='scenario-server'" in page and "1.5 qps with p99 under 800 ms" in page
    assert (out / "plots" / "scenario-server.png").stat().st_size > 10_000


# looping the source -------------------------------------------------------------------------------------------

@requires_ort
def test_min_frames_loops_the_source_and_saves_each_distinct_frame_once(assets_root: Path) -> None:
    once = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=5, warmup=1))
    looped = run_job(JobSpec(backend="onnxruntime", source="pets09-s2l1", frames=5, warmup=1,
                             scenario=ScenarioSpec(min_frames=12)))
    s = looped.summary
    assert looped.status == "ok" and s["frames"] == 12 and s["distinct_frames"] == 5 and s["loops"] == 3
    assert [f["frame"] for f in looped.frames] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert [f["loop"] for f in looped.frames] == [0] * 5 + [1] * 5 + [2] * 2
    assert_same_records(once.detections, looped.detections)  # accuracy sees each frame once
    assert "loop" not in once.frames[0]  # a run that does not loop writes frames.csv as it always did


# the report ---------------------------------------------------------------------------------------------------

def test_the_report_has_a_section_per_scenario_and_marks_invalid_rows(assets_root: Path, tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(f"""
[defaults]
frames = 8
warmup = 1
[matrix]
backends = [
  {{ name = "{SLOW}", options = {{ sleep_s = 0.02 }}, scenario = "realtime", fps = [10, 100] }},
  {{ name = "{SLOW}", options = {{ sleep_s = 0.02 }}, scenario = "multi-stream", streams = [1, 2], fps = 10 }},
  {{ name = "{SLOW}", options = {{ sleep_s = 0.02 }}, scenario = "offline", batch = 1 }},
]
""")
    out = tmp_path / "res"
    proc = run_cli("run", str(suite), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (out / "report.html").read_text()
    for kind in ("realtime", "multi-stream", "offline"):
        assert f"id='scenario-{kind}'" in page and (out / "plots" / f"scenario-{kind}.png").is_file()
    assert "id='scenario-server'" not in page
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["scenario"]) == {"realtime", "multi-stream", "offline"}
    # 8 frames can't bound a p99: the realtime and multi-stream rows are invalid, and the page says why (offline
    # answers with a throughput, no percentile: only a busy machine makes it invalid)
    timed = runs[runs["scenario"] != "offline"]
    assert not timed["valid"].any() and timed["validity_notes"].str.contains("too few samples").all()
    invalid = int((~runs["valid"].astype(bool)).sum())
    assert page.count("row-invalid") >= len(timed) and f"INVALID: {invalid} job(s)" in page
    # each p50/p90 with its bootstrap interval, as runs.csv holds it
    # (a realtime level that dropped all but one frame, as on a loaded machine, has no interval to show)
    with_interval = runs[runs["p50_ci_low_ms"].notna()]
    assert len(with_interval) >= len(runs) - 1
    assert page.count("title='95 % bootstrap interval'") == 2 * len(with_interval)
    assert (with_interval["p50_ci_low_ms"] <= with_interval["p50_ms"]).all()
    assert (with_interval["p50_ms"] <= with_interval["p50_ci_high_ms"]).all()
    sweeps = pd.read_csv(out / "scenarios.csv").set_index("scenario")
    assert sweeps.loc["realtime", "levels"] == "10,100" and sweeps.loc["multi-stream", "levels"] == "1,2"
    assert json.loads((out / "jobs.json").read_text())["jobs"][0]["spec"]["scenario"]["kind"] == "realtime"


@pytest.mark.parametrize("scenario", [ScenarioSpec("realtime", fps=50), ScenarioSpec("server", qps=50),
                                      ScenarioSpec("multi-stream", streams=2, instances=2),
                                      ScenarioSpec("offline", batch=1)], ids=lambda s: s.kind)
def test_a_backend_failing_mid_scenario_fails_its_row_without_hanging(assets_root: Path, scenario: ScenarioSpec) -> None:
    r = run_job(JobSpec(backend="tests.helpers.stand_in_backends:RaisingDetector", source="pets09-s2l1", frames=20, warmup=1,
                        options={"after": 6}, preprocess="shared", scenario=scenario))
    assert r.status == "failed" and "deliberate failure on inference" in r.cause
