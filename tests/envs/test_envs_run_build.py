"""The same backend in two environments through the command line and a suite file, with real builds: OpenCV
4.14 (an environment built with uv from the registry) and the default environment's OpenCV 5 on the same 200
shared PETS frames, both agreeing with TF1; runs.csv with both versions, env.json with each environment's
packages, agreement.csv's pairs across environments, and the report's labels (``opencv @ ocv4``).

Needs the package registry (skips, saying so, where it cannot be reached); the ``ocv4`` environment and the
TF1 reference run are the session's (tests/helpers/envs.py: made once for every module that uses them); each
test adds its OpenCV jobs to a copy of that TF1 results folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.agreement import agreement
from tests.conftest import requires_cv2, requires_tf
from tests.helpers.envs import FRAMES, OCV4, SCORE, TF1_JOB, harness, online, saved_per_frame, with_tf1

pytestmark = [requires_tf, requires_cv2]


def check_side_by_side(out: Path, tf1: str, default: str, in_ocv4: str) -> None:
    """What both ways of running must show: both OpenCVs agree with TF1, and every file says which is which."""
    runs = pd.read_csv(out / "runs.csv", dtype=str).set_index("job_id")
    print(runs[["env", "framework_version", "status", "p50_ms"]].to_string())
    assert (runs.loc[[tf1, default, in_ocv4], "status"] == "ok").all()
    assert runs.loc[in_ocv4, "env"] == "ocv4" and runs.loc[default, "env"] == "default"
    assert runs.loc[in_ocv4, "framework_version"].startswith("4.14.")
    assert runs.loc[default, "framework_version"].split(".")[0] != "4"

    size = (768, 576)
    reference = saved_per_frame(out, tf1, size)
    for job in (default, in_ocv4):
        stats = agreement(reference, saved_per_frame(out, job, size), iou=0.95)
        print(f"{job} vs {tf1}, {FRAMES} shared PETS frames, score>={SCORE}, IoU 0.95: {stats}")
        assert stats["ref_boxes"] > 500
        assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99, stats

    pairs = pd.read_csv(out / "agreement.csv").set_index(["job_a", "job_b"])
    across = pairs.loc[(default, in_ocv4)] if (default, in_ocv4) in pairs.index else pairs.loc[(in_ocv4, default)]
    assert {across["env_a"], across["env_b"]} == {"default", "ocv4"}
    assert across["matched_share_a"] >= 0.99 and across["matched_share_b"] >= 0.99

    environments = json.loads((out / "env.json").read_text())["environments"]
    assert environments["ocv4"]["packages"]["opencv-python"].startswith("4.14.")
    assert environments["ocv4"]["key"] and environments["ocv4"]["requirements"] == OCV4
    assert in_ocv4 in environments["ocv4"]["jobs"] and default in environments["default"]["jobs"]
    assert not environments["default"]["packages"]["opencv-python"].startswith("4.")

    page = (out / "report.html").read_text()
    assert "opencv @ ocv4" in page and "opencv @ default" in page and "tf1 @ default" in page
    for plot in ("latency", "fps", "agreement", "frames"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 10_000, plot


def test_harness_run_with_env(ocv4: dict, env_cache: Path, tf1_results: Path, tmp_path: Path) -> None:
    """``harness run -b opencv --env default --env ocv4`` beside a TF1 run in the same results folder (the
    session's ``harness run -b tf1``, copied)."""
    out = with_tf1(tf1_results, tmp_path / "results")
    common = ("--frames", str(FRAMES), "--preprocess", "shared", "--out", str(out), "--quiet")
    proc = harness(env_cache, "run", "-b", "opencv", "--env", "default", "--env", "ocv4", *common)
    assert proc.returncode == 0, proc.stderr
    # the environment was checked once, before the first job, and said so
    assert re.search(r"environment 'ocv4': ready in [\d.]+ s, Python 3\.\d+", proc.stderr), proc.stderr
    assert proc.stderr.index("environment 'ocv4': ready") < proc.stderr.index("results: ")
    check_side_by_side(out, TF1_JOB, "opencv_ref_pets09-s2l1_cpu_shared", "opencv_ref_pets09-s2l1_cpu_shared_env-ocv4")


SUITE = f"""
name = "opencv 4 and 5"
[envs.ocv4]
requirements = ["opencv-python==4.14.*"]

[defaults]
frames = {FRAMES}
preprocess = "shared"

[matrix]
backends = ["tf1", "opencv"]
envs = ["default", "ocv4"]

[[exclude]]
backend = "tf1"
env = "ocv4"
"""


def test_a_suite_with_an_envs_table_and_axis(ocv4: dict, env_cache: Path, tf1_results: Path, tmp_path: Path) -> None:
    """The suite's [envs.ocv4] is the spec `harness env create ocv4 'opencv-python==4.14.*'` made: the same
    key, so the session's build is reused (offline, nothing is built). The suite's TF1 job is the session's
    `harness run -b tf1` (same id and settings): run into a copy of that folder, the suite keeps it and runs
    its two OpenCV jobs."""
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = with_tf1(tf1_results, tmp_path / "results")
    listed = harness(env_cache, "run", str(suite), "--list")
    assert listed.returncode == 0 and listed.stdout.startswith("3 job(s):"), listed.stderr
    proc = harness(env_cache, "run", str(suite), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "environment 'ocv4': ready in" in proc.stderr and "building environment" not in proc.stderr
    check_side_by_side(out, TF1_JOB, "opencv_ref_pets09-s2l1_cpu_shared", "opencv_ref_pets09-s2l1_cpu_shared_env-ocv4")


def test_a_suite_environment_that_does_not_resolve_stops_the_run_before_any_job(
        registry: None, env_cache: Path, tmp_path: Path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace("opencv-python==4.14.*", "opencv-python==0.0.1").replace("ocv4", "ocvbad"))
    out = tmp_path / "results"
    proc = harness(env_cache, "run", str(suite), "--out", str(out), "--quiet", offline=False)
    assert proc.returncode == 2, proc.stderr
    assert "error: environment 'ocvbad', needed by opencv_ref_pets09-s2l1_cpu_shared_env-ocvbad, cannot be used: " \
           "the requirements of environment 'ocvbad' do not resolve" in proc.stderr, proc.stderr
    assert "no job was run" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "runs.csv").exists()
    listed = harness(env_cache, "env", "list")
    assert "ocvbad" not in listed.stdout  # a definition that does not build is not left registered


@pytest.mark.skipif(not __import__("importlib").util.find_spec("tf2onnx"), reason="tf2onnx is not installed")
def test_an_environment_without_the_converter_uses_the_conversion_made_elsewhere(
        registry: None, store, env_cache: Path, tmp_path: Path) -> None:
    """ort-gpu and torch-gpu have no TensorFlow, so they cannot convert the reference graph: a job there must
    read the artifact the default environment converted (same graph, same options), not fail trying to
    convert. Here with ONNX Runtime's CPU wheel in an environment of its own (the GPU one cannot run here)."""
    from harness.envs import EnvSpec, ensure
    store.define(EnvSpec.make("ortcpu", ["onnxruntime"]))
    with online():
        ensure("ortcpu", store)
    out = tmp_path / "results"
    proc = harness(env_cache, "run", "-b", "onnxruntime", "--env", "default", "--env", "ortcpu", "--frames", "20",
                   "--preprocess", "shared", "--out", str(out), "--quiet", "--no-report")
    runs = pd.read_csv(out / "runs.csv", dtype=str).set_index("job_id")
    print(runs[["env", "framework_version", "status", "cause"]].to_string())
    assert proc.returncode == 0, runs["cause"].to_dict()
    jobs = {j["spec"]["env"]: j for j in json.loads((out / "jobs.json").read_text())["jobs"]}
    made, used = (jobs[e]["info"]["model"]["conversions"] for e in ("default", "ortcpu"))
    assert made[0]["path"] == used[0]["path"] and used[0]["built"] is False
    pairs = pd.read_csv(out / "agreement.csv").iloc[0]
    assert pairs["matched_share_a"] == 1.0 and pairs["matched_share_b"] == 1.0 and pairs["boxes_a"] > 50
