"""The default suite (`harness run` with no suite and no --backend), run once per test session as a new user
runs it: offline, from a copy of the shared assets holding only the files that have an official download
source, with an empty cache (what has no hosted copy is generated into it).

Two modules assert on this one run: tests/runs/test_default_suite.py (every installed backend gets an ok row,
the frameworks agree, the report) and tests/runs/test_fresh_machine.py (it runs from the hosted files only,
and what it generated was made once). Both claims hold of the same run, and the run (every installed backend,
each job in its own process) is the most expensive thing either module does, so it is made once. The fixture
is registered by tests/conftest.py (``pytest_plugins``): imported into each module instead, pytest would make
it once per module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.data.assets import cache_dir, load_manifests
from tests.conftest import has_module

ROOT = Path(__file__).resolve().parents[2]
#: frames and warm-up of the shared run: what its tests assert is per job (status, agreement, generated
#: files, the report), not a count of frames, so a short run serves them all
FRAMES = 8
WARMUP = 2


def hosted_copy(shared: Path, dest: Path) -> list[str]:
    """Symlinks to the shared files that have a download source (URL or URL template), laid out like the
    shared folder: what a user gets from `harness assets fetch`. Returns the relative paths linked."""
    linked = []
    for manifest in load_manifests().values():
        for spec in manifest.files.values():
            if spec.downloadable and (shared / spec.path).exists():
                (dest / spec.path).parent.mkdir(parents=True, exist_ok=True)
                (dest / spec.path).symlink_to(shared / spec.path)
                linked.append(spec.path)
    return linked


def harness(args: list[str], env_overrides: dict[str, str | None], timeout: float = 1500) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` from the checkout, with none of this machine's HARNESS_ASSETS, HARNESS_CACHE
    and HARNESS_OFFLINE but the ones given."""
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_ASSETS", "HARNESS_CACHE", "HARNESS_OFFLINE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update({k: v for k, v in env_overrides.items() if v is not None})
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def fresh_cache(tmp_path: Path) -> Path:
    """An empty cache, except that converted models (SavedModel, ONNX, torch port) are shared with this
    machine's cache: they are keyed by content, and converting them is not what these tests are about."""
    cache = tmp_path / "cache"
    cache.mkdir()
    artifacts = cache_dir() / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (cache / "artifacts").symlink_to(artifacts)
    return cache


@dataclass(frozen=True)
class DefaultSuiteRun:
    out: Path  #: the results folder
    assets: Path  #: the hosted-only copy of the shared assets the run read (HARNESS_ASSETS)
    linked: list[str]  #: the files of that copy, relative to it
    cache: Path  #: the run's own cache (HARNESS_CACHE), empty before it but for the converted models
    proc: subprocess.CompletedProcess  #: the finished `harness run`; its exit status is the tests' to check


@pytest.fixture(scope="session")
def default_suite_run(assets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> DefaultSuiteRun:
    """`harness run --frames 8 --warmup 2 --quiet --out DIR`: the default suite, each job in its own process,
    with HARNESS_OFFLINE=1, HARNESS_ASSETS a hosted-only copy of the shared assets and an empty cache."""
    if not has_module("tensorflow"):
        pytest.skip("the reference SSD needs TensorFlow")
    base = tmp_path_factory.mktemp("default-suite")
    copy = base / "assets"
    linked = hosted_copy(assets_root, copy)
    cache = fresh_cache(base)
    out = base / "run"
    proc = harness(["run", "--frames", str(FRAMES), "--warmup", str(WARMUP), "--out", str(out), "--quiet"],
                   {"HARNESS_ASSETS": str(copy), "HARNESS_CACHE": str(cache), "HARNESS_OFFLINE": "1"})
    return DefaultSuiteRun(out=out, assets=copy, linked=linked, cache=cache, proc=proc)
