"""End to end, as a user runs it: `harness run` with no suite (the default suite, every installed backend,
each job in its own process) and GPU requests on this GPU-less machine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.core.registry import installed_backends
from tests.conftest import has_module
from tests.helpers.browser import CHROMIUM, check_page
from tests.helpers.default_suite_run import FRAMES, DefaultSuiteRun
from tests.helpers.results_folders import run_cli

pytestmark = pytest.mark.skipif(not has_module("tensorflow"), reason="the reference SSD needs TensorFlow")

REFERENCE_BACKENDS = {"tf1", "tf2", "opencv", "torch", "onnxruntime"}


@pytest.fixture(scope="module")
def default_run(default_suite_run: DefaultSuiteRun) -> Path:
    """The session's default-suite run (tests/helpers/default_suite_run.py: `harness run --frames 8 --warmup 2`,
    as a new user runs it from the hosted asset files, offline); test_fresh_machine asserts on it too."""
    proc = default_suite_run.proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return default_suite_run.out


def test_default_suite_runs_every_installed_backend(default_run: Path) -> None:
    runs = pd.read_csv(default_run / "runs.csv")
    installed = set(installed_backends())
    assert set(runs["backend"]) == installed, "every installed backend gets a job"
    assert (runs["status"] == "ok").all(), runs[["job_id", "status", "cause"]]
    assert (runs["frames"] == FRAMES).all() and (runs["device_actual"] == "cpu").all()
    assert runs["ap50"].notna().all()  # accuracy against the PETS ground truth, found from the asset name
    for name in ("report.html", "frames.csv", "jobs.json", "env.json", "agreement.csv", "accuracy.csv"):
        assert (default_run / name).is_file(), name
    env = json.loads((default_run / "env.json").read_text())
    assert env["doctor"]["backends"], "the doctor's verdicts go into every results folder"


def test_the_same_weights_agree_across_frameworks(default_run: Path) -> None:
    agreement = pd.read_csv(default_run / "agreement.csv")
    runs = pd.read_csv(default_run / "runs.csv").set_index("job_id")
    reference = agreement[agreement["job_a"].map(runs["backend"]).isin(REFERENCE_BACKENDS)
                          & agreement["job_b"].map(runs["backend"]).isin(REFERENCE_BACKENDS)]
    assert len(reference) >= 1
    assert (reference["boxes_a"] > 0).all()
    assert (reference["matched_share_a"] >= 0.99).all() and (reference["matched_share_b"] >= 0.99).all()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_default_report_opens_in_headless_chromium_with_every_image(default_run: Path, tmp_path: Path) -> None:
    check = check_page(default_run / "report.html", tmp_path)
    assert check["errors"] == [] and check["broken"] == 0
    assert check["images"] >= 5


def test_default_report_opens_with_the_ranked_summary_and_stays_under_1_mb(default_run: Path) -> None:
    html = (default_run / "report.html").read_text()
    assert (default_run / "report.html").stat().st_size < 1_000_000
    assert html.index("<table") == html.index("<table class='ranked' id='ranked-single-stream'>")
    runs = pd.read_csv(default_run / "runs.csv")
    for backend in runs["backend"]:
        assert f">{backend}" in html[:html.index("</section>")]  # every job in the ranked table


def test_gpu_requests_fall_back_loudly_and_strict_device_fails_each_job(assets_root: Path, tmp_path: Path) -> None:
    backends = [b for b in ("tf1", "tf2", "opencv", "torch") if b in installed_backends()]
    args = [a for b in backends for a in ("--backend", b)]
    common = ["--device", "gpu", "--frames", "3", "--warmup", "1", "--quiet", "--no-report"]
    proc = run_cli("run", *args, *common, "--out", str(tmp_path / "soft"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FALLBACK" in proc.stderr
    runs = pd.read_csv(tmp_path / "soft" / "runs.csv")
    assert list(runs["status"]) == ["fallback"] * len(backends)
    assert (runs["device_requested"] == "gpu").all() and (runs["device_actual"] == "cpu").all()
    assert (runs["frames"] == 3).all()  # measured anyway, on the CPU, and marked
    assert runs["cause"].str.contains("requested gpu, ran on cpu").all()

    # --strict-device turns the fallback each backend showed above into a failed job: the runner raises it,
    # the same for every backend, once the placement is known. Two jobs show that every job ran and got its
    # row, not just the first; the two cheapest to start of the four (each job is a process that imports its
    # framework) are enough for that.
    strict_backends = [b for b in backends if b in ("opencv", "tf1")]
    if len(strict_backends) < 2:
        strict_backends = backends
    strict_args = [a for b in strict_backends for a in ("--backend", b)]
    proc = run_cli("run", *strict_args, *common, "--strict-device", "--out", str(tmp_path / "strict"), timeout=900)
    assert proc.returncode == 1
    strict = pd.read_csv(tmp_path / "strict" / "runs.csv")
    assert len(strict) == len(strict_backends), "every job ran and got its row, not just the first"
    assert (strict["status"] == "failed").all() and strict["cause"].str.contains("DeviceFallback").all()
