"""scripts/gpu-check.sh, the GPU machine's prepared check, tested where no GPU is: its syntax, its argument
errors, and its whole plumbing in --dry-run (the same steps on the CPU, default environment; 3 frames a job here
instead of the dry run's 20, through the script's own --frames: what is asserted is that every step ran and
each backend's job got its ok row, which no frame count changes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import has_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
#: frames per job in the dry run (the script's --frames): the steps and rows asserted do not depend on it
FRAMES = 3


def test_the_script_parses_and_refuses_unknown_arguments(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert SCRIPT.read_text().splitlines()[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in SCRIPT.read_text()
    proc = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "error: unknown argument --bogus" in proc.stderr
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "run it from the repository root" in proc.stderr
    if shutil.which("shellcheck"):
        assert subprocess.run(["shellcheck", str(SCRIPT)]).returncode == 0


@pytest.mark.slow
def test_the_dry_run_exercises_every_step_on_the_cpu(assets_root: Path, tmp_path: Path) -> None:
    missing = [m for m in ("tensorflow", "torch", "onnxruntime", "tf2onnx") if not has_module(m)]
    if missing:
        pytest.skip(f"the dry run runs tf1, tf2, torch and onnxruntime: {', '.join(missing)} not installed")
    out = tmp_path / "gpu-check"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--frames", str(FRAMES), "--python", sys.executable,
                           "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    log = (out / "gpu-check.log").read_text()
    for step in ("machine (mode: dry run on the CPU)", "harness convert", "harness doctor --json: default",
                 "tf1 and tf2 (default, --device cpu", "torch", "onnxruntime", "report", "figures.md", "done in"):
        assert f"] {step}" in log, step
    doctor = json.loads((out / "doctor-default.json").read_text())
    assert {"tf1", "tf2", "torch", "onnxruntime"} <= set(doctor["backends"])
    figures = (out / "figures.md").read_text()
    rows = [ln for ln in figures.splitlines() if ln.startswith("| ") and " | default | " in ln and " ok | " in ln]
    assert sorted(r.split(" | ")[0][2:] for r in rows) == ["onnxruntime", "tf1", "tf2", "torch"], figures
    assert "## Placement evidence" in figures and "## Doctor verdicts" in figures
    assert "| default | tf1 | " in figures  # the doctor's verdict rows
    assert (out / "results" / "report.html").is_file()
