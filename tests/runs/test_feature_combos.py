"""Where the four merged features meet (environments, the Ray executor, scenarios, precision): the defects
found by using them together, each pinned by a test that failed before its fix. Fabricated results where the
defect is in the bookkeeping (fast); the real-model checks live in each feature's own test file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.core.jobs import JobResult, JobSpec
from harness.core.scenario import ScenarioSpec


class _Saved:
    """The parts of a SavedJob that settings_changes reads."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.source_path = spec.source
        self.model_path = None
        self.status = "ok"


# resume: a scenario setting given at its default is the same measurement ------------------------------------

def test_a_scenario_setting_given_at_its_default_does_not_rerun() -> None:
    """`--scenario offline` then `--scenario offline --batch 1` is the same job id and the same measurement:
    it used to rerun, saying `scenario changed (ScenarioSpec(kind='offline', batch=1, ...) -> ...)`."""
    from harness.results.writer import settings_changes

    pairs = [
        (ScenarioSpec("offline", batch=1), ScenarioSpec("offline")),
        (ScenarioSpec("multi-stream", streams=2, instances=1), ScenarioSpec("multi-stream", streams=2)),
        (ScenarioSpec("multi-stream"), ScenarioSpec("multi-stream", streams=1)),
        (ScenarioSpec("realtime", queue=0), ScenarioSpec("realtime")),
        (ScenarioSpec("server", qps=10, instances=1), ScenarioSpec("server", qps=10)),
    ]
    for saved, given in pairs:
        old, new = JobSpec("opencv", "pets09-s2l1", scenario=saved), JobSpec("opencv", "pets09-s2l1", scenario=given)
        assert old.job_id == new.job_id
        assert settings_changes(_Saved(old), new) == [], (saved, given)


def test_a_changed_scenario_setting_reruns_and_says_what_changed_readably(tmp_path: Path) -> None:
    from harness.results.writer import Plan, ResultsWriter

    old = JobSpec("opencv", "pets09-s2l1", scenario=ScenarioSpec("offline", batch=2))
    new = JobSpec("opencv", "pets09-s2l1", scenario=ScenarioSpec("offline", batch=2, min_frames=100))
    with ResultsWriter(tmp_path) as writer:
        writer.plan([old])
        writer.add(_result(old, "fp32", 10.0))
    with ResultsWriter(tmp_path) as writer:
        plan: Plan = writer.plan([new])
    why = plan.reruns[new.job_id]
    assert "ScenarioSpec(" not in why, why
    assert "min_frames" in why and "100" in why, why


# scenarios x precision: two sweeps that differ only in precision ----------------------------------------------

def _result(spec: JobSpec, effective: str, fps: float) -> JobResult:
    summary = {"job_id": spec.job_id, "backend": spec.backend, "model": "ssdlite-pedestrian", "status": "ok",
               "frames": 20, "p50_ms": 1000 / fps, "p90_ms": 1200 / fps, "model_fps": fps, "valid": True,
               "scenario": spec.scenario.kind, "level": spec.scenario.level(), "batch": spec.scenario.batch_size,
               "precision_requested": spec.precision or "", "precision": effective}
    frames = [{"job_id": spec.job_id, "frame": k, "decode_ms": 0, "pre_ms": 0, "infer_ms": 1, "post_ms": 0,
               "n_dets": 0} for k in range(20)]
    info = {"source": {}, "model": {"model": "ssdlite-pedestrian", "precision": {"effective": effective}}}
    return JobResult(spec, "ok", summary, frames, [], info)


def _two_precision_sweeps(folder: Path) -> list[JobSpec]:
    from harness.results import ResultsWriter

    specs = [JobSpec("onnxruntime", "pets09-s2l1", precision=p, scenario=ScenarioSpec("offline", batch=b))
             for p in ("fp32", "int8") for b in (1, 4)]
    with ResultsWriter(folder) as writer:
        writer.plan(specs)
        for spec in specs:
            writer.add(_result(spec, spec.precision or "fp32", 20.0 if spec.precision == "fp32" else 30.0))
    return specs


def test_scenarios_csv_says_which_precision_each_sweep_ran(tmp_path: Path) -> None:
    """`--precision fp32,int8 --scenario offline --batch 1,4`: two sweeps, and scenarios.csv used to give them
    the same backend/model/video/device/env cells with no precision column: only the job ids told them apart."""
    from harness.measure.sweeps import SWEEP_COLUMNS, sweep_rows
    from harness.results import load_run

    _two_precision_sweeps(tmp_path)
    rows = sweep_rows(load_run(tmp_path))
    assert len(rows) == 2
    assert "precision" in SWEEP_COLUMNS
    assert sorted((r["precision"], r["value"]) for r in rows) == [("fp32", 20.0), ("int8", 30.0)]


def test_the_report_labels_sweeps_of_two_precisions_apart(tmp_path: Path) -> None:
    """The scenario section named both sweeps `onnxruntime cpu`: two identical answers and legend entries."""
    from harness.report.load import load_results
    from harness.report.scenarios import scenario_sections

    _two_precision_sweeps(tmp_path)
    (tmp_path / "plots").mkdir(exist_ok=True)
    sections = scenario_sections(load_results(tmp_path), tmp_path / "plots")
    assert [s.scenario for s in sections] == ["offline"]
    page = sections[0].html
    assert "<b>onnxruntime cpu int8</b>" in page and "<b>onnxruntime cpu fp32</b>" in page, page


def test_scenarios_csv_written_by_a_run_has_the_precision_column(tmp_path: Path) -> None:
    from harness.results import ResultsWriter
    from harness.measure.sweeps import write_sweeps

    _two_precision_sweeps(tmp_path)
    with ResultsWriter(tmp_path) as writer:
        write_sweeps(tmp_path, writer)
    with open(tmp_path / "scenarios.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["precision"] for r in rows) == ["fp32", "int8"]


# report: a precision fallback in a scenario whose row carries notes -------------------------------------------

def test_a_precision_fallback_with_scenario_notes_is_not_called_a_gpu_fallback(tmp_path: Path) -> None:
    """`-b tflite --precision fp16 --scenario multi-stream --streams 2`: the worker puts the scenario's notes in
    front of the cause (`note: detections saved from stream 0; ...; precision fallback: ...`), and the report
    used to match only causes *starting* with `precision fallback`: the row landed in the banner `asked for a
    GPU and ran on the CPU`, for a CPU job, and the precision banner was missing."""
    from harness.report.html import render_html
    from harness.report.load import load_results
    from harness.results import ResultsWriter

    spec = JobSpec("tflite", "pets09-s2l1", precision="fp16", scenario=ScenarioSpec("multi-stream", streams=2))
    gpu = JobSpec("onnxruntime", "pets09-s2l1", device="gpu")
    both = JobSpec("torch", "pets09-s2l1", device="gpu", precision="bf16")
    precision_cause = "precision fallback: requested fp16, ran fp32: TFLite tensors: 88 convolutions take fp32"
    device_cause = "requested gpu, ran on cpu: session providers ['CPUExecutionProvider']"
    causes = {
        spec.job_id: ("note: detections saved from stream 0; the other 1 stream(s) were compared with it frame "
                      f"by frame; {precision_cause}"),
        gpu.job_id: device_cause,
        both.job_id: f"precision fallback: requested bf16, ran fp32: autocast off on cpu; {device_cause}",
    }
    with ResultsWriter(tmp_path) as writer:
        writer.plan([spec, gpu, both])
        for s in (spec, gpu, both):
            r = _result(s, "fp32", 10.0)
            r.status = r.summary["status"] = "fallback"
            r.cause = r.summary["cause"] = causes[s.job_id]
            r.summary["device_requested"] = s.device
            r.summary["device_actual"] = "cpu"
            writer.add(r)
    page = render_html(load_results(tmp_path), [])
    precision_banner = page.split("PRECISION FALLBACK: ", 1)[1].split("</div>", 1)[0]
    device_banner = page.split("FALLBACK: ", 2)[2].split("</div>", 1)[0] if page.count("FALLBACK: ") > 1 else ""
    assert precision_banner.startswith("2 job(s)"), precision_banner
    assert spec.job_id in precision_banner and both.job_id in precision_banner
    assert "asked for a GPU" in device_banner and device_banner.split(".", 1)[0].endswith("2 job(s) asked for a GPU and ran on the CPU"), device_banner
    assert gpu.job_id in device_banner and both.job_id in device_banner and spec.job_id not in device_banner


# precision x scenarios x environments: which fp32 job a variant is held against -------------------------------

class _Job:
    """The parts of a SavedJob that the accuracy floor's baseline choice reads."""

    def __init__(self, spec: JobSpec, effective: str) -> None:
        self.spec, self.job_id, self.backend = spec, spec.job_id, spec.backend
        self.source_path, self.decoded_frames, self.label_space = "/v.avi", list(range(20)), "person"
        self.model_info = {"model": "ssdlite-pedestrian", "precision": {"effective": effective}}


def test_the_floor_holds_a_variant_against_fp32_of_its_own_level_and_environment() -> None:
    """`--precision fp32,int8 --scenario offline --batch 1,4`: int8 at batch 4 was held against fp32 at batch 1
    (the first fp32 job of equal rank), though fp32 at batch 4 ran the same batched path beside it; likewise a
    variant in environment `ocv4` against the default environment's fp32 when ocv4 had its own."""
    from harness.measure.metrics.floor import baseline_for

    def spec(precision: str, batch: int, env: str = "default") -> JobSpec:
        return JobSpec("onnxruntime", "pets09-s2l1", precision=precision, env=env,
                       scenario=ScenarioSpec("offline", batch=batch))

    fp32 = [_Job(spec("fp32", b, e), "fp32") for e in ("default", "ocv4") for b in (1, 4)]
    for batch in (1, 4):
        for env in ("default", "ocv4"):
            chosen = baseline_for(_Job(spec("int8", batch, env), "int8"), fp32)
            assert chosen is not None and chosen.job_id == spec("fp32", batch, env).job_id, (batch, env, chosen.job_id)


# multi-stream / server x precision: every model instance must run what the row says ------------------------

UNEVEN = "tests.helpers.stand_in_backends:UnevenInstancesDetector"


def test_an_extra_instance_at_another_precision_or_device_fails_the_job_saying_so() -> None:
    """`--scenario multi-stream --streams 2 --instances 2 --precision fp32`: the row's precision and placement
    were read from instance 0 only; an instance that ran another precision (or landed on another device) was
    silently mixed into the aggregate FPS of a row that says fp32 on cpu."""
    from harness.execution.runner import run_job
    from tests.helpers.stand_in_backends import UnevenInstancesDetector

    for uneven, words in (("precision", "ran fp16"), ("placement", "ran on cuda:0")):
        spec = JobSpec(UNEVEN, "pets09-s2l1", frames=6, warmup=1, precision="fp32", options={"uneven": uneven},
                       scenario=ScenarioSpec("multi-stream", streams=2, instances=2))
        UnevenInstancesDetector.loaded = 0  # run_job runs in this process: instance 1 is the next one loaded
        result = run_job(spec)
        assert result.status == "failed", (uneven, result.status, result.cause)
        assert "instance 2" in result.cause and words in result.cause and "instance 1" in result.cause, result.cause
        assert "fix:" in result.cause

    same = JobSpec(UNEVEN, "pets09-s2l1", frames=6, warmup=1, precision="fp32", options={"uneven": "none"},
                   scenario=ScenarioSpec("server", qps=50, instances=2))
    UnevenInstancesDetector.loaded = 0
    result = run_job(same)
    assert result.status == "ok", result.cause


# suites: [[exclude]] on scenario and precision -----------------------------------------------------------------

def test_an_exclude_on_scenario_and_precision_drops_only_those_jobs(tmp_path: Path) -> None:
    from harness.suites.expand import load_suite

    text = """
[defaults]
frames = 20

[matrix]
videos = ["pets09-s2l1"]
backends = ["onnxruntime", { name = "onnxruntime", scenario = "offline", batch = [1, 4] }]
precisions = ["fp32", "int8"]

[[exclude]]
backend = "onnxruntime"
scenario = "offline"
precision = "int8"
"""
    path = tmp_path / "s.toml"
    path.write_text(text)
    ids = sorted(spec.job_id for spec in load_suite(path, text=text))
    assert ids == sorted([
        "onnxruntime_ref_pets09-s2l1_cpu_fp32", "onnxruntime_ref_pets09-s2l1_cpu_int8",
        "onnxruntime_ref_pets09-s2l1_cpu_fp32_offline-b1", "onnxruntime_ref_pets09-s2l1_cpu_fp32_offline-b4",
    ]), ids


# compare: the same job id at another effective precision -------------------------------------------------------

def test_compare_says_when_a_job_ran_at_another_precision_in_b(tmp_path: Path) -> None:
    """`-b openvino --precision auto` (or no --precision on a uint8 model) keeps one job id whatever precision
    the framework picks: a run on an AMX machine (bf16) against one without (fp32) compared their timings with
    no word about it, while a device change gets a note."""
    from harness.report.compare import compare_results, format_comparison
    from harness.results import ResultsWriter

    spec = JobSpec("onnxruntime", "pets09-s2l1", precision="auto", scenario=ScenarioSpec("offline", batch=4))
    for folder, effective, fps in (("a", "bf16", 30.0), ("b", "fp32", 20.0)):
        with ResultsWriter(tmp_path / folder) as writer:
            writer.plan([spec])
            writer.add(_result(spec, effective, fps))
    text = format_comparison(compare_results(tmp_path / "a", tmp_path / "b"))
    assert f"note: {spec.job_id}: ran bf16 in A, fp32 in B" in text, text
    same = format_comparison(compare_results(tmp_path / "a", tmp_path / "a"))
    assert "ran bf16 in A" not in same


# Ray x precision: an int8 job's calibration frames given as a local path ------------------------------------

def test_a_local_calibration_folder_reaches_a_node_that_lacks_it(tmp_path: Path) -> None:
    """`--executor ray --precision int8 --opt calibration=/data/calib`: the driver shipped the job's video and
    model to nodes that lack them, but not the calibration frames, so the node quantized from a path it does
    not have (or from another folder at that path). Now the folder is shipped like a video: used in place when
    the node's copy has the same sha256, fetched otherwise, the job's option pointing at the node's copy."""
    from harness.execution.ray.inputs import Shipper, place_inputs

    calib = tmp_path / "driver" / "calib"
    calib.mkdir(parents=True)
    for k in range(3):
        (calib / f"{k:03d}.jpg").write_bytes(bytes([k]) * 100)
    spec = JobSpec("onnxruntime", "pets09-s2l1", precision="int8",
                   options={"calibration": str(calib), "calibration_frames": 3})
    shipments = [s.to_payload() for s in Shipper(put=lambda data: data).shipments(spec)]
    assert [s["role"] for s in shipments] == ["calibration"]

    calib_copy = calib.parent / "moved"
    calib.rename(calib_copy)  # the node does not have the folder at that path
    node_spec, notes = place_inputs(spec, shipments, "node-b", tmp_path / "node-cache", fetch=lambda ref: ref)
    placed = Path(node_spec.options["calibration"])
    assert placed != calib and sorted(p.name for p in placed.iterdir()) == ["000.jpg", "001.jpg", "002.jpg"]
    assert node_spec.options["calibration_frames"] == 3 and node_spec.job_id == spec.job_id
    assert "shipped" in notes["calibration"]["used"]

    calib_copy.rename(calib)  # the node has the same folder: used in place
    same_spec, notes = place_inputs(spec, shipments, "node-a", tmp_path / "node-cache", fetch=lambda ref: ref)
    assert same_spec.options["calibration"] == str(calib) and "in place" in notes["calibration"]["used"]

    # the row the driver writes names the driver's folder, not the node's copy
    from harness.execution.ray.executor import _driver_path

    result = JobResult(spec, "ok", {"calibration": f"{placed} frames 0-2"}, [], [],
                       {"model": {"calibration": {"source": str(placed), "path": str(placed), "frames": 3}}})
    _driver_path(result, str(placed), str(calib))
    assert result.summary["calibration"] == f"{calib} frames 0-2"
    assert result.info["model"]["calibration"]["path"] == str(calib)


# a streams sweep with instances ------------------------------------------------------------------------------

def test_instances_in_a_streams_sweep_is_an_error_that_says_what_to_do() -> None:
    """`--streams 1,2 --instances 2` said `fix: give instances = 1 or instances = 1`."""
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError) as err:
        ScenarioSpec("multi-stream", streams=1, instances=2)
    assert "instances = 1 or instances = 1" not in err.value.fix
    assert "--streams 2 --instances 2" in err.value.fix, err.value.fix


def test_a_kept_level_and_a_new_level_given_at_the_default_form_one_sweep(tmp_path: Path) -> None:
    """`--scenario server --qps 10` then `--qps 10,20 --instances 1` into the same folder: the 10 qps job is
    kept (the same measurement), and its saved spec has no instances while the new level says 1; the sweep
    must still be one, not two of one level each."""
    from harness.results import ResultsWriter, load_run
    from harness.measure.sweeps import find_sweeps

    kept = JobSpec("onnxruntime", "pets09-s2l1", scenario=ScenarioSpec("server", qps=10))
    new = JobSpec("onnxruntime", "pets09-s2l1", scenario=ScenarioSpec("server", qps=20, instances=1))
    with ResultsWriter(tmp_path) as writer:
        writer.plan([kept])
        writer.add(_result(kept, "fp32", 10.0))
    with ResultsWriter(tmp_path) as writer:
        plan = writer.plan([JobSpec("onnxruntime", "pets09-s2l1", scenario=ScenarioSpec("server", qps=10, instances=1)),
                            new])
        assert plan.kept == [kept.job_id]
        writer.add(_result(new, "fp32", 20.0))
    sweeps = find_sweeps(load_run(tmp_path))
    assert [[j.job_id for j in s.jobs] for s in sweeps] == [[kept.job_id, new.job_id]]


def test_sweeps_on_two_videos_or_models_get_two_labels(tmp_path: Path) -> None:
    from harness.report.load import load_results
    from harness.report.scenarios import scenario_sections
    from harness.results import ResultsWriter

    specs = [JobSpec("onnxruntime", video, model=model, scenario=ScenarioSpec("offline", batch=b))
             for video, model in (("pets09-s2l1", None), ("tud-campus", None), ("pets09-s2l1", "/m/other.onnx"))
             for b in (1, 2)]
    with ResultsWriter(tmp_path) as writer:
        writer.plan(specs)
        for spec in specs:
            writer.add(_result(spec, "fp32", 10.0))
    (tmp_path / "plots").mkdir()
    page = scenario_sections(load_results(tmp_path), tmp_path / "plots")[0].html
    labels = [item.split("</b>", 1)[0] for item in page.split("<li><b>")[1:]]
    assert len(labels) == 3 and len(set(labels)) == 3, labels
    assert "[other.onnx]" in " ".join(labels) and any("tud-campus" in lab for lab in labels), labels
