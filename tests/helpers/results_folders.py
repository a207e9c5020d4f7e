"""Real results folders made once per test session, shared by the report/compare/notebook/suite tests.

The fixtures are registered once for the session by tests/conftest.py (``pytest_plugins``): imported into each
test module instead, a session fixture is made once per module (measured: the one-job folder three times, the
suite twice). Each folder is made by the real command line with the real TF1 reference model on real PETS
frames.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import has_module

FRAMES = 20

#: four jobs on one machine without special hardware: two preprocessing modes (they disagree a little),
#: a GPU request (a FALLBACK row where no GPU is usable) and a model that does not exist (a failed row)
SUITE = """
name = "report-test"
[defaults]
frames = {frames}
warmup = 2

[matrix]
backends = ["tf1", {{ name = "tf1", preprocess = "shared" }}]
videos = ["pets09-s2l1"]
devices = ["cpu"]

[[job]]
backend = "tf1"
device = "gpu"

[[job]]
backend = "tf1"
model = "{missing}"
tag = "missing-model"
"""


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def _need_tf(assets_root: Path) -> None:
    if not has_module("tensorflow"):
        pytest.skip("TensorFlow is not installed: the real results folders use the TF1 reference model")


@pytest.fixture(scope="session")
def small_results(assets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``harness run --backend tf1 --frames 20 --executor inline``: one real job."""
    _need_tf(assets_root)
    out = tmp_path_factory.mktemp("results") / "tf1"
    proc = run_cli("run", "--backend", "tf1", "--frames", str(FRAMES), "--executor", "inline", "--quiet",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "runs.csv").is_file() and (out / "frames.csv").is_file()
    return out


@pytest.fixture(scope="session")
def suite_results(assets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A four-job suite (see SUITE): ok rows, a GPU request and a failed job, in one real folder."""
    _need_tf(assets_root)
    base = tmp_path_factory.mktemp("suite")
    suite = base / "suite.toml"
    # a file that is there but is no graph: the plan check lets it through (a missing path is refused before
    # any job), and the job itself fails to load it, which is the failed row these tests need
    broken = base / "no-such-model.pb"
    broken.write_bytes(b"not a frozen graph")
    suite.write_text(SUITE.format(frames=FRAMES, missing=broken))
    out = base / "out"
    proc = run_cli("run", str(suite), "--executor", "inline", "--quiet", "--out", str(out))
    # exit 1: the missing-model job failed, on purpose
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out
