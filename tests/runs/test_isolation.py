"""Every job in its own process: a segfault, a hang, an exception, an out-of-memory kill or an exit() costs
that job's row, and a real TF1 job after them in the same suite still produces correct results.
Ctrl-C and SIGTERM stop the run cleanly, say how to resume, and leave no worker process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core.jobs import JobSpec
from harness.execution.process import SubprocessExecutor, explain_stderr
from harness.results import ResultsWriter
from tests.conftest import as_in_a_terminal, requires_tf
from tests.helpers.processes import alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
TB = "tests.helpers.stand_in_backends"


def test_explain_stderr_picks_the_fatal_lines() -> None:
    lines = [
        "loading model",
        "about to touch freed memory",
        "Fatal Python error: Segmentation fault",
        "Thread 0x01 (most recent call first):",
        '  File "/x/decoder.py", line 3 in run',
        "Current thread 0x02 (most recent call first):",
        '  File "/x/backend.py", line 76 in infer',
        '  File "/x/detector.py", line 134 in detect',
        '  File "/x/runner.py", line 179 in run_job',
        '  File "/x/worker.py", line 97 in main',
        "Extension modules: numpy (total: 1)",
    ]
    text = explain_stderr(lines)
    assert text == ("about to touch freed memory | Fatal Python error: Segmentation fault | "
                    "in infer (backend.py:76) <- detect (detector.py:134) <- run_job (runner.py:179)")
    assert explain_stderr(["a", "b", "c"], keep=2) == "b | c"


@requires_tf
def test_misbehaving_jobs_get_rows_and_a_real_job_after_them_is_correct(tmp_path: Path, pets_video, pets_gt) -> None:
    executor = SubprocessExecutor(log_dir=tmp_path / "out" / "logs", terminate_grace_s=1.0)
    writer = ResultsWriter(tmp_path / "out")
    common = dict(source="pets09-s2l1", frames=30, warmup=2)
    jobs = [
        JobSpec(backend=f"{TB}:SegfaultDetector", **common),
        # 6 s: the worker must be past start-up (imports, the protocol hello) and hanging when the limit hits,
        # even on a loaded machine, or SIGTERM lands before it has started ignoring it
        JobSpec(backend=f"{TB}:HangDetector", options={"ignore_sigterm": True}, timeout_s=6.0, **common),
        JobSpec(backend=f"{TB}:RaisingDetector", **common),
        JobSpec(backend=f"{TB}:OOMKilledDetector", options={"after": 8}, **common),
        JobSpec(backend=f"{TB}:ExitDetector", **common),
        JobSpec(backend="tf1", **common),
    ]
    writer.plan(jobs)
    progress: dict[str, list[tuple]] = {}
    results = {}
    for job in jobs:
        calls = progress.setdefault(job.job_id, [])
        t0 = time.monotonic()
        result = executor.run(job, lambda d, t, f, phase="", calls=calls: calls.append((d, t, f)))
        result.info["test_wall_s"] = time.monotonic() - t0
        writer.add(result)
        results[job.backend.rsplit(":", 1)[-1]] = result
    executor.close()

    runs = pd.read_csv(tmp_path / "out" / "runs.csv", keep_default_na=False).set_index("backend")
    assert len(runs) == len(jobs)

    seg = runs.loc[f"{TB}:SegfaultDetector"]
    assert seg.status == "crashed"
    assert "killed by SIGSEGV" in seg.cause and "Fatal Python error: Segmentation fault" in seg.cause
    assert "SegfaultDetector: crashing on inference 3" in seg.cause  # its last words, from its stderr
    assert "in misbehave (stand_in_backends.py" in seg.cause  # where it died (faulthandler's stack)

    hang = runs.loc[f"{TB}:HangDetector"]
    assert hang.status == "timeout" and "limit 6 s" in hang.cause
    assert "ignored SIGTERM" in hang.cause and "SIGKILL" in hang.cause
    assert results["HangDetector"].info["test_wall_s"] < 6.0 + 1.0 + 6.0  # killed, not waited for

    raised = runs.loc[f"{TB}:RaisingDetector"]
    assert raised.status == "failed" and raised.cause == "RuntimeError: deliberate failure on inference 3"
    assert "misbehave" in results["RaisingDetector"].info["traceback"]

    oom = runs.loc[f"{TB}:OOMKilledDetector"]
    assert oom.status == "crashed" and "killed by SIGKILL" in oom.cause and "out-of-memory" in oom.cause
    assert "after 6 frame(s)" in oom.cause or "frame(s)" in oom.cause
    assert float(oom.peak_rss_mb) > 10  # the dead worker's own peak memory, from wait4

    ex = runs.loc[f"{TB}:ExitDetector"]
    assert ex.status == "crashed" and "exited with code 3" in ex.cause and "calling exit(3)" in ex.cause

    # no worker outlived its job
    for r in results.values():
        if "worker_pid" in r.info:
            assert not alive(r.info["worker_pid"]), r.spec.job_id

    # the real job after all of that: complete, with detections that match the ground truth
    tf1 = runs.loc["tf1"]
    assert tf1.status == "ok" and int(tf1.frames) == 30 and tf1.device_actual == "cpu"
    dets = json.loads((tmp_path / "out" / "detections" / f"{jobs[-1].job_id}.json").read_text())
    assert {d["frame"] for d in dets} == set(range(30))
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    assert sorted(frames[frames.job_id == jobs[-1].job_id].frame) == list(range(30))
    calls = progress[jobs[-1].job_id]
    assert calls and calls[-1][:2] == (30, 30) and calls[-1][2] > 0  # progress streamed from the worker

    from harness.data.groundtruth import load_mot
    from harness.measure.metrics.matching import match_boxes

    gt = load_mot(pets_gt)
    matched = confident = 0
    for k in range(30):
        mine = np.array([[x, y, x + w, y + h] for f in [k] for d in dets if d["frame"] == f and d["score"] >= 0.5
                         for x, y, w, h in [d["bbox"]]]).reshape(-1, 4)
        truth = gt.frames[k].boxes[~gt.frames[k].ignore]
        m = match_boxes(mine, truth, iou_threshold=0.5)
        matched += len(m.pairs)
        confident += len(mine)
    assert confident >= 30  # PETS frames hold several people each
    assert matched / confident > 0.7, (matched, confident)


def _hang_cli(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    out = tmp_path / "out"
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--backend", f"{TB}:FrameStatsDetector", "--backend",
         f"{TB}:HangDetector", "--video", "pets09-s2l1", "--frames", "5", "--warmup", "1", "--opt",
         f"pid_dir={pid_dir}", "--out", str(out), "-q", "--no-report"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_in_a_terminal,
    )
    return proc, out, pid_dir



@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_the_worker_and_says_how_to_resume(tmp_path: Path, signum: int, assets_root) -> None:
    proc, out, pid_dir = _hang_cli(tmp_path)
    hang_pid_file = pid_dir / "HangDetector.pid"
    try:
        wait_for(lambda: hang_pid_file.exists() and hang_pid_file.read_text(), 60, "the hanging job to start")
        worker = int(hang_pid_file.read_text())
        assert alive(worker)
        time.sleep(0.3)  # let it reach the hang
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)  # a hang guard: 37 s were seen on a loaded 2-core machine
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert f"resume with: harness run --resume {out}" in stderr
    wait_for(lambda: not alive(worker), 5, "the worker process to end")
    # the job that finished before the signal is saved; the interrupted one is not pretended done
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert list(runs.status) == ["ok"] and "FrameStatsDetector" in runs.job_id[0]
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["ok", "pending"]


def test_worker_exits_when_its_parent_is_killed(tmp_path: Path, assets_root) -> None:
    """SIGKILL on the parent can't be caught; the worker notices its stdin closing and ends itself."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = (
        "from harness.execution.process import SubprocessExecutor\n"
        "from harness.core.jobs import JobSpec\n"
        f"SubprocessExecutor().run(JobSpec(backend='{TB}:HangDetector', source='pets09-s2l1', frames=5, "
        f"warmup=1, options={{'pid_dir': {str(pid_dir)!r}, 'ignore_sigterm': True}}))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    pid_file = pid_dir / "HangDetector.pid"
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the worker to start")
        worker = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(worker), 10, "the orphaned worker to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
