"""Nothing a job starts outlives it, and no framework phones home from a job.

* A worker that leaves a forked child behind (re-parented to init, as OpenVINO's telemetry sender was with no
  network): after the job that child is gone, and the job's jobs.json entry and log name it.
* A real OpenVINO job with a temporary HOME writes nothing under ``~/intel`` (no client id, no stats, no
  consent file) nor ONNX Runtime's ``~/.cache/Microsoft`` device id, and leaves no process behind: the
  frameworks' telemetry is off for the harness's processes without the user's global setting being touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.data.assets import cache_dir
from harness.core.jobs import JobSpec
from harness.execution.process import SubprocessExecutor
from harness.execution.process_group import group_members
from tests.helpers.processes import alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
TB = "tests.helpers.stand_in_backends"


def test_a_child_the_worker_left_running_is_ended_and_reported(tmp_path: Path, assets_root) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    executor = SubprocessExecutor(log_dir=tmp_path / "logs")
    try:
        result = executor.run(JobSpec(backend=f"{TB}:LeavesChildDetector", source="pets09-s2l1", frames=5,
                                      warmup=1, options={"pid_dir": str(pid_dir)}))
    finally:
        executor.close()
    orphan = int((pid_dir / "orphan.pid").read_text())
    worker = int((pid_dir / "LeavesChildDetector.pid").read_text())
    assert result.status == "ok", result.cause
    wait_for(lambda: not alive(orphan), 10, "the orphaned child to be gone")
    assert not group_members(worker), group_members(worker)
    left = result.info.get("leftover_processes")
    assert left and [p["pid"] for p in left] == [orphan], left
    assert "were still running after it and were killed" in (tmp_path / "logs" / f"{result.spec.file_stem}.log").read_text()


def test_a_clean_job_reports_no_leftovers(tmp_path: Path, assets_root) -> None:
    executor = SubprocessExecutor(log_dir=tmp_path / "logs")
    try:
        result = executor.run(JobSpec(backend=f"{TB}:FrameStatsDetector", source="pets09-s2l1", frames=3, warmup=1))
    finally:
        executor.close()
    assert result.status == "ok", result.cause
    assert "leftover_processes" not in result.info


def test_an_openvino_job_writes_nothing_under_home_intel_and_leaves_nothing(tmp_path: Path, assets_root) -> None:
    pytest.importorskip("openvino")
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HARNESS_TELEMETRY")}
    # the conversion cache stays the user's (it is found from HOME otherwise): the reference's ONNX is reused
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), HARNESS_OFFLINE="1", HARNESS_CACHE=str(cache_dir()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "-b", "openvino", "-v", "pets09-s2l1", "--frames", "5",
         "--warmup", "1", "--no-report", "-q", "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stdout, stderr = proc.communicate(timeout=600)
    print(stderr[-3000:])
    entries = json.loads((out / "jobs.json").read_text())
    jobs = entries.get("jobs", entries)
    entry = next(iter(jobs.values())) if isinstance(jobs, dict) else jobs[0]
    worker = entry["info"].get("worker_pid")
    time.sleep(1.0)  # a forked sender would still be running now
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    print("under HOME:", written)
    assert not (home / "intel").exists(), written  # OpenVINO's client id, stats and consent file
    assert not (home / ".cache" / "Microsoft").exists(), written  # ONNX Runtime's device id and upload queue
    assert not group_members(proc.pid), group_members(proc.pid)  # the CLI's own group (it started nothing left)
    if worker:
        assert not group_members(int(worker)), group_members(int(worker))
    assert "leftover_processes" not in entry["info"], entry["info"]["leftover_processes"]
    assert proc.returncode == 0 and entry["status"] == "ok", stderr[-2000:]
