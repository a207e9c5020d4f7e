"""A run killed with SIGKILL in the middle leaves only whole, parseable files; ``harness run --resume``
finishes it, keeps the jobs that were done, and ends with exactly the results of a run never interrupted."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.results import SCHEMA_VERSION, ResultsWriter
from tests.conftest import requires_tf

ROOT = Path(__file__).resolve().parents[2]
FS = "tests.helpers.stand_in_backends:FrameStatsDetector"
# 4 jobs: a slow deterministic stand-in then the real TF1 model, each on two spellings of the CPU.
# The stand-in's FRAMES x delay_s (1.5 s of sleep, no CPU) is the window the kill must land in; the frame count
# itself only sets how many real TF1 inferences the four runs of a tf1 job cost.
FRAMES = 15
RUN_ARGS = ["--backend", FS, "--backend", "tf1", "--device", "cpu", "--device", "cpu:0", "--video", "pets09-s2l1",
            "--frames", str(FRAMES), "--warmup", "2", "--opt", "delay_s=0.1", "-q", "--no-report"]
# columns that must not depend on timing or on which process ran the job
STABLE = ["job_id", "backend", "model", "video", "device_requested", "device_actual", "status", "cause", "preprocess",
          "frames", "dets_per_frame", "frame_width", "frame_height", "score_threshold"]


def harness_cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "harness", "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def assert_every_file_parses(out: Path) -> None:
    """The results folder after a kill: whole files only (no half-written CSV/JSON, no temp files)."""
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) >= 1 and runs.job_id.is_unique
    frames = pd.read_csv(out / "frames.csv")
    assert set(frames.columns) >= {"job_id", "frame", "decode_ms", "pre_ms", "infer_ms", "post_ms", "n_dets"}
    jobs = json.loads((out / "jobs.json").read_text())
    assert jobs["schema_version"] == SCHEMA_VERSION and len(jobs["jobs"]) == 4
    env = json.loads((out / "env.json").read_text())
    assert "packages" in env
    for f in (out / "detections").glob("*.json"):
        assert isinstance(json.loads(f.read_text()), list), f
    for f in (out / "frames").glob("*.csv"):
        pd.read_csv(f)
    for f in out.rglob("*"):
        if f.is_file() and f.suffix == ".json":
            json.loads(f.read_text())
        elif f.is_file() and f.suffix == ".csv":
            list(csv.reader(f.open()))
    # a temp file a kill left behind is removed on resume; it must never be mistaken for a result
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp") and not f.name.startswith(".")]


@requires_tf
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, assets_root) -> None:
    out, ref = tmp_path / "killed", tmp_path / "reference"
    first_job = "FrameStatsDetector_ref_pets09-s2l1_cpu"

    proc = harness_cli(*RUN_ARGS, "--out", str(out))
    try:
        deadline = time.monotonic() + 120
        while not (out / "runs.csv").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the first job never finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no handler can run: the hardest kind of interruption
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    assert_every_file_parses(out)
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.job_id) == [first_job]  # killed in the middle of the second job
    kept = out / "detections" / f"{first_job}.json"
    kept_state = (kept.stat().st_mtime_ns, kept.read_bytes())

    # resume and the reference run (one process, so TensorFlow is imported once) run side by side
    resumed = harness_cli("--resume", str(out))
    reference = harness_cli(*RUN_ARGS, "--executor", "inline", "--out", str(ref))
    r_out, r_err = resumed.communicate(timeout=400)
    f_out, f_err = reference.communicate(timeout=400)
    assert resumed.returncode == 0, r_err
    assert reference.returncode == 0, f_err
    assert "3 job(s) to run, 1 kept" in r_err
    assert (kept.stat().st_mtime_ns, kept.read_bytes()) == kept_state  # the finished job was not rerun

    assert_every_file_parses(out)
    a = pd.read_csv(out / "runs.csv", keep_default_na=False)
    b = pd.read_csv(ref / "runs.csv", keep_default_na=False)
    assert list(a.status) == ["ok"] * 4
    pd.testing.assert_frame_equal(a[STABLE], b[STABLE])
    assert list(a.frames) == [FRAMES] * 4

    specs = lambda d: [j["spec"] for j in json.loads((d / "jobs.json").read_text())["jobs"]]  # noqa: E731
    assert specs(out) == specs(ref)

    for job_id in b.job_id:
        mine = json.loads((out / "detections" / f"{job_id}.json").read_text())
        theirs = json.loads((ref / "detections" / f"{job_id}.json").read_text())
        assert mine, job_id
        assert mine == theirs, f"{job_id}: detections differ between the resumed and the uninterrupted run"
    tf1_dets = json.loads((out / "detections" / "tf1_ref_pets09-s2l1_cpu.json").read_text())
    assert {d["frame"] for d in tf1_dets} == set(range(FRAMES)) and len(tf1_dets) > 100

    fa = pd.read_csv(out / "frames.csv")[["job_id", "frame", "n_dets"]]
    fb = pd.read_csv(ref / "frames.csv")[["job_id", "frame", "n_dets"]]
    pd.testing.assert_frame_equal(fa.sort_values(["job_id", "frame"]).reset_index(drop=True),
                                  fb.sort_values(["job_id", "frame"]).reset_index(drop=True))


def test_reopening_a_folder_removes_temp_files_a_kill_left(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "detections").mkdir(parents=True)
    stale = [out / ".runs.csv.k3j2.tmp", out / "detections" / ".x.json.abcd.tmp"]
    for f in stale:
        f.write_text("half a fi")
    keep = out / "notes.txt"
    keep.write_text("mine")
    ResultsWriter(out).close()
    assert not any(f.exists() for f in stale)
    assert keep.read_text() == "mine"


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path: Path) -> None:
    proc = harness_cli("--resume", str(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"{tmp_path} is not a results folder (no jobs.json)" in err


@pytest.mark.parametrize("status", ["failed", "crashed", "timeout"])
def test_finished_failures_are_kept_on_resume(tmp_path: Path, status: str) -> None:
    """A job that failed is a finished result (its cause is the finding); resume does not retry it."""
    from harness.core.jobs import JobSpec
    from harness.execution.runner import failure_result

    spec = JobSpec(backend=FS, source="x.avi")
    with ResultsWriter(tmp_path) as writer:
        writer.plan([spec])
        writer.add(failure_result(spec, status, "because"))
    with ResultsWriter(tmp_path) as again:
        plan = again.plan([spec])
    assert again.finished_job_ids() == {spec.job_id} and plan.kept == [spec.job_id] and not plan.run
