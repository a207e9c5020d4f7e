"""Real environments for the tests that build them: the package registry check, one harness cache for the
whole session, OpenCV 4.14 (``ocv4``) built into it once, and the TF1 reference run once by ``harness run``
(``tf1_results``) for the side-by-side comparisons to add their own jobs to.

The fixtures are registered once for the session by tests/conftest.py (``pytest_plugins``): a session fixture
imported into several test modules would be made once per module (one cache and one ``ocv4`` build each).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import ContextManager, Iterator
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the side-by-side comparisons run on this many shared PETS frames and compare boxes at this score
FRAMES = 200
SCORE = 0.3
OCV4 = ["opencv-python==4.14.*"]
#: the TF1 job of ``harness run -b tf1 --frames FRAMES --preprocess shared``: the reference of every comparison
TF1_JOB = "tf1_ref_pets09-s2l1_cpu_shared"


def index_host() -> tuple[str, int]:
    """The package index uv or pip would use: (host, port)."""
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(var):
            url = urlparse(os.environ[var])
            return url.hostname or "pypi.org", url.port or (443 if url.scheme == "https" else 80)
    return "pypi.org", 443


def skip_without_registry() -> None:
    host, port = index_host()
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        pytest.skip(f"the package registry ({host}:{port}) cannot be reached ({exc}): environment builds need it")


@pytest.fixture(scope="session")
def registry() -> None:
    skip_without_registry()


@contextmanager
def setenv(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def online() -> ContextManager[None]:
    """Builds may use the registry (the test suite runs with HARNESS_OFFLINE=1 otherwise)."""
    return setenv("HARNESS_OFFLINE", "0")


def offline() -> ContextManager[None]:
    return setenv("HARNESS_OFFLINE", "1")


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(scope="session")
def store(env_cache: Path):
    from harness.envs import EnvStore

    return EnvStore(env_cache / "envs")


@pytest.fixture(scope="session")
def ocv4(store, registry: None) -> dict:
    """OpenCV 4.14 beside the harness, built once for the session; with the time the cold build took."""
    from harness.envs import EnvSpec, ensure

    store.define(EnvSpec.make("ocv4", OCV4))
    start = time.perf_counter()
    with online():
        done = ensure("ocv4", store)
    return {"ensured": done, "cold_s": time.perf_counter() - start}


def harness(env_cache: Path, *args: str, offline: bool = True) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` with this checkout and the session's harness cache."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(env_cache),
           "HARNESS_OFFLINE": "1" if offline else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=1800)


def saved_per_frame(out: Path, job_id: str, size: tuple[int, int]) -> list:
    """A job's saved detections (detections/<id>.json) per frame, at the comparison score."""
    import numpy as np

    from harness.core.detections import Detections

    records = json.loads((out / "detections" / f"{job_id}.json").read_text())
    frames = []
    for index in range(FRAMES):
        rows = [r for r in records if r["frame"] == index and r["score"] >= SCORE]
        boxes = np.array([r["bbox"] for r in rows], np.float32).reshape(-1, 4)
        frames.append(Detections.from_boxes(boxes, np.array([r["score"] for r in rows], np.float32),
                                            np.array([r["category_id"] for r in rows], np.int64), size, fmt="xywh",
                                            clip=False))
    return frames


@pytest.fixture(scope="session")
def tf1_results(env_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding only TF1 on the FRAMES shared PETS frames, made once by ``harness run`` with the
    session's cache. Five comparisons each ran this TF1 job themselves (the CLI and OpenCV 5.1 ones exactly this
    run, into their folder, before adding their jobs); they now start from a copy (:func:`with_tf1`) or read
    it back (:func:`saved_result`), so TF1 runs once, not once per comparison."""
    out = tmp_path_factory.mktemp("tf1-reference") / "results"
    proc = harness(env_cache, "run", "-b", "tf1", "--frames", str(FRAMES), "--preprocess", "shared", "--out", str(out),
                   "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def saved_result(out: Path, job_id: str):
    """A finished job of a results folder back as the :class:`~harness.core.jobs.JobResult` its run saved (spec,
    status, runs.csv row, per-frame rows, detections, info, cause): for comparisons whose own jobs run in-process
    (a SubprocessExecutor, as ``harness run`` runs them) against the session's TF1 run."""
    from harness.core.jobs import JobResult
    from harness.results import load_run

    saved = load_run(out).job(job_id)
    assert saved is not None and saved.finished, f"{job_id} has no finished result in {out}"
    return JobResult(saved.spec, saved.status, dict(saved.row), saved.frames.to_dict("records"), list(saved.records),
                     dict(saved.info), saved.cause)


def with_tf1(tf1_results: Path, out: Path) -> Path:
    """``out``: a copy of the session's TF1 results folder, for a test's own jobs to be added to."""
    shutil.copytree(tf1_results, out, ignore=shutil.ignore_patterns(".lock"))
    return out
