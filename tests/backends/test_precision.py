"""Precision as a measured axis: the vocabulary, precision in job ids, suites and flags, the
effective precision each backend reads from its framework, the calibration split that is never scored, the
accuracy floor against fp32, and model facts. Unit tests on small objects first, then real models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.core.jobs import JobResult, JobSpec
from harness.core.precision import (PrecisionReport, check_accuracy_floor, cpu_flags, cpu_has_bf16, dominant,
                               parse_precision, parse_precisions, precision_of_type)
from tests.conftest import has_module

ROOT = Path(__file__).resolve().parents[2]
OPENVINO = "backends.openvino_ov:OpenVINODetector"


# the vocabulary ----------------------------------------------------------------------------------------------

def test_precision_words_and_their_aliases() -> None:
    assert [parse_precision(w) for w in ("FP32", "float16", "half", "BFloat16", "u8", "Auto")] == \
        ["fp32", "fp16", "fp16", "bf16", "int8", "auto"]
    assert parse_precisions(["fp32,bf16", "int8", "fp32"]) == ("fp32", "bf16", "int8")
    with pytest.raises(HarnessError) as err:
        parse_precision("int4")
    assert "unknown precision 'int4'" in err.value.problem and "fp32, fp16, bf16, int8, auto" in err.value.fix
    with pytest.raises(HarnessError) as err:
        parse_precisions(["fp32,,int8"])
    assert "empty precision" in err.value.problem


def test_element_types_as_frameworks_spell_them() -> None:
    assert precision_of_type("tensor(float16)") == "fp16"
    assert precision_of_type("<Type: 'bfloat16'>") == "bf16"
    assert precision_of_type("torch.bfloat16") == "bf16"
    assert precision_of_type("<class 'numpy.int8'>") == "int8"
    assert precision_of_type("u8") == "int8" and precision_of_type("int32") is None


def test_the_dominant_precision_and_ties() -> None:
    assert dominant({"int8": 55, "fp32": 33}) == ("int8", {"int8": 55 / 88, "fp32": 33 / 88})
    assert dominant({"fp32": 1, "int8": 1})[0] == "int8"  # a tie goes to the narrower precision
    assert dominant({}) == ("unknown", {})


def test_a_fallback_is_a_request_the_framework_did_not_honour() -> None:
    assert PrecisionReport("bf16", "fp32", "x").fallback
    assert not PrecisionReport(None, "int8", "x").fallback  # nothing asked (a uint8 model file runs as stored)
    assert not PrecisionReport("auto", "bf16", "x").fallback  # auto takes what the framework picks
    assert not PrecisionReport("fp16", "unknown", "x").fallback  # a backend that reads nothing
    assert PrecisionReport("bf16", "fp32", "why").cause() == "precision fallback: requested bf16, ran fp32: why"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n")
    flags = cpu_flags(info)
    assert flags == {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
    assert cpu_has_bf16(flags) and not cpu_has_bf16({"avx2", "fma"})


def test_the_accuracy_floor_is_a_share() -> None:
    assert check_accuracy_floor(0.99) == 0.99
    for bad in (0, 1.5, "x", -0.1):
        with pytest.raises(HarnessError):
            check_accuracy_floor(bad)


# precision in jobs, flags and suites ----------------------------------------------------------------------

def test_precision_is_part_of_the_job_id_when_asked() -> None:
    assert JobSpec("tf1", "pets09-s2l1").job_id == "tf1_ref_pets09-s2l1_cpu"
    job = JobSpec("onnxruntime", "pets09-s2l1", precision="INT8", preprocess="shared")
    assert job.precision == "int8" and job.job_id == "onnxruntime_ref_pets09-s2l1_cpu_shared_int8"
    assert JobSpec.from_dict(job.to_dict()) == job
    old = job.to_dict()
    for key in ("precision", "strict_precision"):  # a jobs.json written before precision existed
        old.pop(key)
    assert JobSpec.from_dict({**old, "job_id": ""}).precision is None
    with pytest.raises(HarnessError) as err:
        JobSpec("tf1", "pets09-s2l1", precision="int4")
    assert "int4" in err.value.problem


def test_precision_flags_are_a_matrix_axis() -> None:
    from harness.suites.overrides import RunOverrides
    from harness.suites.expand import jobs_from_flags

    jobs = jobs_from_flags(RunOverrides(backends=("onnxruntime", "tf1"), precisions=("fp32", "int8"),
                                        strict_precision=True))
    assert [j.job_id for j in jobs] == ["onnxruntime_ref_pets09-s2l1_cpu_fp32", "onnxruntime_ref_pets09-s2l1_cpu_int8",
                                        "tf1_ref_pets09-s2l1_cpu_fp32", "tf1_ref_pets09-s2l1_cpu_int8"]
    assert all(j.strict_precision for j in jobs)


def test_a_suite_sweeps_precisions(tmp_path: Path) -> None:
    from harness.suites.overrides import RunOverrides
    from harness.suites.expand import SuiteError, load_suite

    suite = tmp_path / "s.toml"
    suite.write_text('[matrix]\nbackends = ["onnxruntime"]\n'
                     'precisions = ["fp32", { name = "int8", options = { calibration = "tud-campus" } }]\n'
                     '\n[[job]]\nbackend = "tf1"\nprecision = "fp32"\n')
    jobs = load_suite(suite)
    assert [(j.job_id, j.precision, j.options) for j in jobs] == [
        ("onnxruntime_ref_pets09-s2l1_cpu_fp32", "fp32", {}),
        ("onnxruntime_ref_pets09-s2l1_cpu_int8", "int8", {"calibration": "tud-campus"}),
        ("tf1_ref_pets09-s2l1_cpu_fp32", "fp32", {}),
    ]
    flagged = load_suite(suite, RunOverrides(precisions=("bf16",)))  # the command line replaces the axis
    assert [j.job_id for j in flagged] == ["onnxruntime_ref_pets09-s2l1_cpu_bf16", "tf1_ref_pets09-s2l1_cpu_bf16"]
    suite.write_text('[matrix]\nbackends = ["onnxruntime"]\nprecisions = ["fp32",\n  "int4"]\n')
    with pytest.raises(SuiteError) as err:
        load_suite(suite)
    assert f"{suite}:4: matrix.precisions[1]" in err.value.problem and "int4" in err.value.problem
    suite.write_text('[matrix]\nbackends = ["onnxruntime"]\nprecision = ["fp32"]\n')
    with pytest.raises(SuiteError) as err:
        load_suite(suite)
    assert "unknown matrix axis" in err.value.problem and "precisions" in err.value.problem


def test_bad_precision_flags_are_one_clear_error() -> None:
    for args, expected in ((["--precision", "int4"], "unknown precision 'int4'"),
                           (["--accuracy-floor", "1.5"], "--accuracy-floor must be within (0, 1]")):
        out = subprocess.run([sys.executable, "-m", "harness", "run", "-b", "onnxruntime", "--list", *args],
                             capture_output=True, text=True, cwd=ROOT, timeout=120,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HARNESS_OFFLINE": "1"})
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"error: {expected}") and "\n  fix: " in out.stderr
        assert "Traceback" not in out.stderr


def test_a_changed_precision_reruns_a_saved_job(tmp_path: Path) -> None:
    from harness.results.writer import settings_changes

    class Saved:
        spec = JobSpec("onnxruntime", "pets09-s2l1", precision="fp32")
        source_path = "pets09-s2l1"
        model_path = None
        status = "ok"

    changes = settings_changes(Saved(), JobSpec("onnxruntime", "pets09-s2l1", precision="int8"))
    assert ("precision", "fp32", "int8") in changes


# the calibration split ------------------------------------------------------------------------------------

def test_calibration_frames_are_never_scored(tmp_path: Path) -> None:
    from harness.data.calibration import CalibrationSplit, check_not_scored

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    record = {"source": "v", "path": str(video), "frames": 100}
    with pytest.raises(HarnessError) as err:
        check_not_scored(record, tmp_path / "." / "v.mp4")  # the same file, however spelled
    assert "calibrated on v frames 0-99" in err.value.problem and "calibration=" in err.value.fix
    check_not_scored(record, tmp_path / "other.mp4")
    check_not_scored(None, video)
    with pytest.raises(HarnessError):
        CalibrationSplit.from_options({"calibration_frames": 0})
    assert CalibrationSplit.from_options({"calibration": "tud-campus", "calibration_frames": 50}).describe() == \
        "tud-campus frames 0-49"


# the accuracy floor on fabricated results -----------------------------------------------------------------

def _result(spec: JobSpec, records: list[dict], frames: list[int], precision: dict, source: str,
            p50_ms: float = 10.0) -> JobResult:
    summary = {"job_id": spec.job_id, "backend": spec.backend, "model": "ssdlite-pedestrian", "status": "ok",
               "frames": len(frames), "p50_ms": p50_ms, "p90_ms": p50_ms * 1.2,
               "precision_requested": spec.precision or "", "precision": precision["effective"]}
    rows = [{"job_id": spec.job_id, "frame": k, "decode_ms": 0, "pre_ms": 0, "infer_ms": 1, "post_ms": 0, "n_dets": 1}
            for k in frames]
    info = {"source": {"path": source}, "frame_size": [768, 576],
            "model": {"model": "ssdlite-pedestrian", "label_space": "person", "labels": {1: "person"},
                      "precision": precision}}
    return JobResult(spec, "ok", summary, rows, records, info)


def test_a_variant_below_the_floor_is_marked(tmp_path: Path, assets_root: Path) -> None:
    """fp32 = the ground truth itself; int8 keeps the boxes of every other frame: AP50 drops well below 99 %."""
    from harness.data.assets import resolve
    from harness.data.groundtruth import load_ground_truth
    from harness.measure.metrics.evaluate import evaluate_results
    from harness.results import ResultsWriter

    truth = load_ground_truth("pets09-s2l1")
    frames = list(range(30))
    records = [{"frame": k, "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": 0.9,
                "category_id": 1} for k in frames for (x1, y1, x2, y2), ign in
               zip(truth.frames[k].boxes, truth.frames[k].ignore) if not ign]
    source = str(resolve("pets09-s2l1").absolute())
    fp32 = JobSpec("onnxruntime", "pets09-s2l1", precision="fp32")
    int8 = JobSpec("onnxruntime", "pets09-s2l1", precision="int8")
    bf16 = JobSpec("onnxruntime", "pets09-s2l1", precision="bf16")
    with ResultsWriter(tmp_path) as writer:
        writer.plan([fp32, int8, bf16])
        writer.add(_result(fp32, records, frames, {"effective": "fp32"}, source))
        writer.add(_result(int8, [r for r in records if r["frame"] % 2 == 0], frames, {"effective": "int8"}, source, 6.0))
        writer.add(_result(bf16, records, frames, {"effective": "fp32"}, source))  # a fallback: as good as fp32
    result = evaluate_results(tmp_path, accuracy_floor=0.99)
    checks = {c.job_id: c for c in result.floor}
    assert set(checks) == {int8.job_id, bf16.job_id}
    low = checks[int8.job_id]
    assert low.fp32_job == fp32.job_id and low.below_floor and 0.3 < low.ap50_vs_fp32 < 0.7
    assert 0.4 < low.agree_fp32 < 0.6 and low.score_shift == 0.0
    same = checks[bf16.job_id]
    assert not same.below_floor and same.ap50_vs_fp32 == 1.0 and same.agree_fp32 == 1.0
    import pandas as pd

    runs = pd.read_csv(tmp_path / "runs.csv").set_index("job_id")
    assert bool(runs.loc[int8.job_id, "below_floor"]) and runs.loc[int8.job_id, "fp32_job"] == fp32.job_id
    assert pd.isna(runs.loc[fp32.job_id, "ap50_vs_fp32"])  # the baseline itself
    assert not evaluate_results(tmp_path, accuracy_floor=0.4, write=False).floor[0].below_floor

    # the report: the speed-accuracy plot marks the variant below the floor; the page says so first
    from harness.report import plots
    from harness.report.html import render_html
    from harness.report.load import load_results

    results = load_results(tmp_path)
    fig = plots.speed_accuracy(results)
    assert fig is not None
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(text.endswith("int8 (below floor)") for text in legend), legend
    assert any(text.endswith("bf16->fp32") for text in legend), legend
    plots.save_figure(fig, tmp_path / "speed_accuracy.png")
    page = render_html(results, [])
    assert "BELOW THE ACCURACY FLOOR: 1 precision variant(s)" in page and "AP50 / fp32" in page


# real models: effective precision and model facts ---------------------------------------------------------

pytestmark_real = pytest.mark.skipif(not has_module("onnxruntime"), reason="onnxruntime is not installed")


@pytestmark_real
def test_the_same_weights_cost_the_same_in_every_backend(assets_root: Path) -> None:
    """Parameters and MACs counted from each framework's own graph of the reference SSD."""
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector

    names = ["onnxruntime", "tflite"] + ([OPENVINO] if has_module("openvino") else [])
    costs = {}
    for name in names:
        det = create_detector(name, DetectorConfig(precision="fp32" if name == "tflite" else None))
        det.load()
        costs[name] = det.model_cost()
        det.close()
    print({k: (c.params, c.macs) for k, c in costs.items()})
    assert {c.macs for c in costs.values()} == {616_952_240}  # 1.23 GFLOPs per 300x300 frame
    assert all(2.9e6 < c.params < 3.3e6 for c in costs.values())


@pytestmark_real
def test_onnxruntime_reads_int8_from_its_optimized_graph(assets_root: Path) -> None:
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector

    det = create_detector("onnxruntime", DetectorConfig(precision="int8", threads=2))
    det.load()
    report = det.precision_report()
    assert report.effective == "int8" and not report.fallback
    assert "QLinearConv" in report.evidence and report.shares == {"int8": 1.0}
    assert det.describe()["calibration"]["describe"] == "coco128 frames 0-99"
    fp16 = create_detector("onnxruntime", DetectorConfig(precision="fp16"))
    fp16.load()
    assert fp16.precision_report().fallback and fp16.precision_report().effective == "fp32"


@pytest.mark.skipif(not has_module("tensorflow"), reason="TensorFlow is not installed")
def test_tflite_fp16_weights_compute_in_fp32_on_this_cpu(assets_root: Path) -> None:
    """TFLite's fp16 conversion stores float16 weights that DEQUANTIZE expands: fp32 compute, a fallback."""
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector

    det = create_detector("tflite", DetectorConfig(precision="fp16", threads=2))
    det.load()
    report = det.precision_report()
    assert report.effective == "fp32" and report.weights_precision == "fp16" and report.fallback
    assert "dequantized to fp32" in report.evidence
    assert det.describe()["layout"] == "encoded"
    int8 = create_detector("tflite", DetectorConfig(precision="int8", threads=2))
    int8.load()
    assert int8.precision_report().effective == "int8" and not int8.precision_report().fallback


def test_a_job_on_its_calibration_source_fails_before_scoring(assets_root: Path) -> None:
    """The int8 variant is calibrated on coco128 images 0-99: a job scoring coco128 is refused, clearly."""
    pytest.importorskip("onnxruntime")
    from harness.execution.runner import run_job

    result = run_job(JobSpec("onnxruntime", "coco128", precision="int8", frames=3, warmup=1))
    assert result.status == "failed" and not result.frames and not result.detections
    assert "calibrated on coco128 frames 0-99" in result.cause and "calibration=" in result.cause


@pytest.mark.slow
def test_int8_variants_against_the_floor_on_pets(tmp_path: Path, assets_root: Path) -> None:
    """A real run: fp32 and int8 on ONNX Runtime and OpenVINO over 40 PETS frames, then the floor. The int8
    jobs are within the floor or marked below it, consistently with their AP50; calibration frames come from
    another source than the one scored, and the results say which. (40 frames: what is checked is that the
    mark follows the AP50 ratio and the calibration record, whatever the ratio; the first 40 PETS frames hold 163
    ground-truth people, enough for an AP50 of each job.)"""
    pytest.importorskip("onnxruntime")
    import pandas as pd

    backends = ["-b", "onnxruntime"] + (["-b", OPENVINO] if has_module("openvino") else [])
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "run", *backends, "--precision", "fp32,int8", "--frames", "40",
           "--preprocess", "shared", "--threads", "2", "--out", str(out), "-q", "--no-report"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv").set_index("job_id")
    print(runs[["precision", "p50_ms", "ap50", "ap50_vs_fp32", "below_floor", "agree_fp32", "calibration"]])
    int8 = runs[runs["precision_requested"] == "int8"]
    assert len(int8) == len(backends) // 2 and set(int8["precision"]) == {"int8"}
    for job_id, row in int8.iterrows():
        assert row["below_floor"] == (row["ap50_vs_fp32"] < 0.99), job_id
        assert row["fp32_job"] == job_id.replace("_int8", "_fp32")
        assert row["calibration"] == "coco128 frames 0-99"
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    for entry in jobs:
        calibration = entry["info"]["model"].get("calibration")
        if calibration:
            assert Path(calibration["path"]).resolve() != Path(entry["info"]["source"]["path"]).resolve()


def test_harness_convert_makes_precision_variants(assets_root: Path, capsys) -> None:
    """`harness convert --precision int8` builds (or finds) the very variant a run loads; backends that make
    none say so."""
    pytest.importorskip("onnxruntime")
    import argparse

    from harness.commands import convert
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector

    parser = argparse.ArgumentParser()
    convert.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", "--backend", "onnxruntime", "--backend", "tf1", "--precision", "int8",
                              "--no-generated"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("onnxruntime int8"))
    det = create_detector("onnxruntime", DetectorConfig(precision="int8"))
    det.load()
    assert line.split()[2] == str(det.model_path)  # the same cache entry as a run
    assert "tf1 int8          no variant made" in out


def test_the_calibration_source_is_fetched_before_the_first_job() -> None:
    from harness.data.assets.preflight import needs_of

    names = lambda jobs: {(n.manifest.name, n.spec.role) for n in needs_of(jobs)}  # noqa: E731
    int8 = names([JobSpec("onnxruntime", "pets09-s2l1", precision="int8")])
    assert ("coco128", "images") in int8 and ("pets09-s2l1", "video") in int8
    assert not {n for n in names([JobSpec("onnxruntime", "pets09-s2l1")]) if n[0] == "coco128"}
    other = names([JobSpec("openvino", "pets09-s2l1", precision="int8", options={"calibration": "tud-campus"})])
    assert ("tud-campus", "video") in other
    # tflite's precision variants are the reference SSD's, not the hosted COCO model
    lite = names([JobSpec("tflite", "pets09-s2l1", precision="fp16")])
    assert ("ssdlite-pedestrian", "graph") in lite and not any(n[0].startswith("tflite-coco") for n in lite)
