"""``.ci/drift``'s last line: one verdict naming every job of the kept results folder that did not finish ok,
read from a real results folder (a real run where one job fails and one succeeds), and passed when all did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TB = "tests.helpers.stand_in_backends"


def verdict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / ".ci" / "version_drift.py"), "--verdict", *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_a_failing_job_is_named_in_one_verdict_line_and_the_folder_is_kept(tmp_path: Path, assets_root) -> None:
    out = tmp_path / "drift-run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "harness", "run", "-b", f"{TB}:FrameStatsDetector", "-b",
                          f"{TB}:RaisingDetector", "--frames", "5", "--warmup", "1", "--no-report", "-q",
                          "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 1, run.stderr
    done = verdict(str(out), str(run.returncode), "0")
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stdout
    assert lines[0].startswith("drift check FAILED: 1 job(s) of the default suite failed: RaisingDetector_"), lines
    assert "(failed)" in lines[0] and "FrameStatsDetector" not in lines[0] and f"results kept in {out}" in lines[0]
    assert (out / "runs.csv").is_file()


def test_passed_only_when_every_step_passed(tmp_path: Path, assets_root) -> None:
    out = tmp_path / "drift-run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "harness", "run", "-b", f"{TB}:FrameStatsDetector", "--frames", "3",
                          "--warmup", "1", "--no-report", "-q", "--out", str(out)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    passed = verdict(str(out), "0", "0")
    assert passed.returncode == 0 and passed.stdout.startswith("drift check passed"), passed.stdout
    tests_failed = verdict(str(out), "0", "1")
    assert tests_failed.returncode == 1 and "the asset tests failed (pytest exit 1)" in tests_failed.stdout
    nothing = verdict(str(tmp_path / "never-written"), "2", "0")
    assert nothing.returncode == 1 and "the default suite exited 2 before writing runs.csv" in nothing.stdout
