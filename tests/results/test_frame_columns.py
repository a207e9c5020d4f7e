"""frames.csv holds the columns docs/scenarios.md promises, in the folder's frames.csv and in each job's own
frames/<stem>.csv: ``stream`` (multi-stream), ``batch_index``/``batch_size`` and ``timing`` = ``batch``
(offline: the stage times are the batch call's, the same on each of its frames), ``e2e_ms`` (realtime,
server) and ``loop`` (looped runs); a plain single-stream run keeps the columns it always had."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.results.layout import FRAME_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
FS = "tests.helpers.stand_in_backends:FrameStatsDetector"

CASES = [
    ("single-stream", [], [], None),
    # the numpy test backend has no batched path: offline runs the real OpenCV DNN backend
    ("offline", ["-b", "opencv", "--scenario", "offline", "--batch", "3"], ["batch_index", "batch_size", "timing"],
     "offline"),
    ("multi-stream", ["--scenario", "multi-stream", "--streams", "2"], ["stream"], "multi-stream"),
    ("realtime", ["--scenario", "realtime", "--fps", "50"], ["e2e_ms"], "realtime"),
    ("server", ["--scenario", "server", "--qps", "50"], ["e2e_ms"], "server"),
    ("looped", ["--min-frames", "10"], ["loop"], None),
]


@pytest.mark.parametrize("flags, columns, kind", [pytest.param(f, c, k, id=i) for i, f, c, k in CASES])
def test_each_scenario_writes_its_documented_frame_columns(tmp_path: Path, assets_root, flags: list[str],
                                                           columns: list[str], kind: str | None) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    backend = [] if "-b" in flags else ["-b", FS]
    proc = subprocess.run([sys.executable, "-m", "harness", "run", *backend, "--frames", "7", "--warmup", "1",
                           *flags, "--no-report", "-q", "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = pd.read_csv(out / "frames.csv")
    own = pd.read_csv(next((out / "frames").glob("*.csv")))
    for table in (folder, own):
        assert list(table.columns) == FRAME_COLUMNS + columns, list(table.columns)
    if kind == "offline":  # 7 frames in batches of 3: 3 + 3 + 1, every frame marked with its batch's times
        assert own["batch_index"].tolist() == [0, 0, 0, 1, 1, 1, 2]
        assert own["batch_size"].tolist() == [3, 3, 3, 3, 3, 3, 1]
        assert set(own["timing"]) == {"batch"}
        assert own.groupby("batch_index")["infer_ms"].nunique().eq(1).all()
    if kind == "multi-stream":
        assert sorted(own["stream"].unique()) == [0, 1]
    if kind in ("realtime", "server"):
        assert (own["e2e_ms"] >= own["infer_ms"]).all() and own["e2e_ms"].notna().all()
    if "loop" in columns:
        assert own["loop"].max() >= 1 and len(own) >= 10
