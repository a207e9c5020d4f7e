"""OpenCV 5.1 (no TensorFlow importer) in a real environment: the reference SSD runs through its ONNX
conversion and agrees with TF1 on 200 shared PETS frames at IoU 0.95 (>= 99 % of the boxes both ways); a
user's ``.pb`` gets one error naming the OpenCV version and the fixes; the doctor in that environment lists
its importers and says the TensorFlow one is missing.

Needs the package registry to build the environment (skips, saying so, where it cannot be reached); the
reference's ONNX conversion comes from the user's conversion cache when it is there, else ``harness convert``
makes it once into the test's cache (tf2onnx, minutes). The TF1 side of the comparison is the session's
``harness run -b tf1`` (tests/helpers/envs.py), copied into the test's results folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.data.assets import cache_dir
from harness.envs import EnvSpec, ensure
from tests.helpers.agreement import agreement
from tests.conftest import requires_cv2, requires_tf
from tests.helpers.envs import FRAMES, SCORE, TF1_JOB, harness, online, saved_per_frame, with_tf1

pytestmark = [requires_tf, requires_cv2, pytest.mark.slow,
              pytest.mark.skipif(not __import__("importlib").util.find_spec("tf2onnx"),
                                 reason="tf2onnx is not installed (the reference's ONNX conversion needs it)")]

OCV51 = ["opencv-python==5.1.*"]
CONVERTER = "onnxruntime-reference"


@pytest.fixture(scope="module")
def ocv51(store, registry: None, env_cache: Path) -> str:
    """OpenCV 5.1 beside the harness, and the reference's ONNX conversion in the test's cache."""
    store.define(EnvSpec.make("ocv51", OCV51))
    with online():
        ensure("ocv51", store)
    mine = cache_dir() / "artifacts" / CONVERTER
    theirs = env_cache / "artifacts" / CONVERTER
    if mine.is_dir() and not theirs.exists():  # content-keyed: a copy is what a conversion here would make
        shutil.copytree(mine, theirs, ignore=shutil.ignore_patterns(".*"))
    made = harness(env_cache, "convert", "--backend", "onnxruntime", "--no-generated")
    assert made.returncode == 0, made.stderr[-2000:]
    return "ocv51"


def test_the_reference_runs_through_onnx_on_opencv_51_and_agrees_with_tf1(ocv51: str, env_cache: Path,
                                                                           tf1_results: Path, tmp_path: Path) -> None:
    out = with_tf1(tf1_results, tmp_path / "results")
    common = ("--frames", str(FRAMES), "--preprocess", "shared", "--out", str(out), "--quiet", "--no-report")
    proc = harness(env_cache, "run", "-b", "opencv", "--env", ocv51, *common)
    runs = pd.read_csv(out / "runs.csv", dtype=str).set_index("job_id")
    print(runs[["env", "framework_version", "status", "cause"]].to_string())
    assert proc.returncode == 0, proc.stderr[-2000:]
    tf1, ocv = TF1_JOB, "opencv_ref_pets09-s2l1_cpu_shared_env-ocv51"
    assert runs.loc[ocv, "status"] == "ok" and runs.loc[ocv, "framework_version"].startswith("5.1.")

    job = next(j for j in json.loads((out / "jobs.json").read_text())["jobs"] if j["spec"]["job_id"] == ocv)
    model = job["info"]["model"]
    assert model["importer"].startswith("ONNX (the reference's ONNX conversion") and model["decode"] == "od_api"
    assert "Tensorflow" not in model["importers"] and "ONNX" in model["importers"]
    assert model["conversions"][0]["converter"] == CONVERTER and model["conversions"][0]["built"] is False

    size = (768, 576)
    stats = agreement(saved_per_frame(out, tf1, size), saved_per_frame(out, ocv, size), iou=0.95)
    print(f"OpenCV 5.1 (ONNX route) vs TF1, {FRAMES} shared PETS frames, score>={SCORE}, IoU 0.95: {stats}")
    assert stats["ref_boxes"] > 500
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99, stats


def test_a_users_pb_on_opencv_51_is_one_error_with_the_version_and_the_fixes(ocv51: str, env_cache: Path,
                                                                               tmp_path: Path) -> None:
    from harness.data.models import DEFAULT_MODEL, resolve_model

    users = tmp_path / "my_model.pb"  # the reference's bytes under another name: a user's own graph
    shutil.copyfile(resolve_model(DEFAULT_MODEL, role="graph").path, users)
    out = tmp_path / "results"
    proc = harness(env_cache, "run", "-b", "opencv", "--env", ocv51, "--model", str(users), "--frames", "3",
                   "--opt", "size=300x300", "--out", str(out), "--quiet", "--no-report")
    runs = pd.read_csv(out / "runs.csv", dtype=str)
    cause = runs.loc[0, "cause"]
    print(cause)
    assert runs.loc[0, "status"] == "failed"
    assert "my_model.pb is a TensorFlow model, and OpenCV 5.1." in cause and "has no TensorFlow importer" in cause
    assert "give the .onnx" in cause and "opencv-python<5.1" in cause and "AttributeError" not in cause


def test_the_doctor_lists_the_importers_and_says_the_tensorflow_one_is_missing(ocv51: str, env_cache: Path) -> None:
    proc = harness(env_cache, "doctor", "--env", ocv51, "--backend", "opencv", "--allow-cpu")
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # the table wraps long reasons
    assert "importers: ONNX, TFLite, OpenVINO IR" in text
    assert "OpenCV 5.1.0 has no TensorFlow importer" in text and "harness convert" in text
