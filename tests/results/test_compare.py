"""`harness compare`: per-job ratios judged against each run's noise, and the --fail-above CI gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.report.compare import _ci_change, _verdict, bootstrap_change, compare_results
from tests.helpers.results_folders import run_cli

JOB = "tf1_ref_pets09-s2l1_cpu"


# unit: the statistics on small arrays --------------------------------------------------------------------

def test_bootstrap_interval_covers_zero_for_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.gamma(20, 1.0, 300), rng.gamma(20, 1.0, 300)
    point, lo, hi = bootstrap_change(a, b, "p50")
    assert lo < 0 < hi and abs(point) < 5


def test_bootstrap_interval_excludes_zero_for_a_real_shift() -> None:
    rng = np.random.default_rng(2)
    a = rng.gamma(20, 1.0, 300)
    b = a * 1.3 + rng.normal(0, 0.5, 300)
    for stat in ("p50", "p90", "mean"):
        point, lo, hi = bootstrap_change(a, b, stat)
        assert 22 < point < 38 and 0 < lo < point < hi, stat
    point, lo, hi = bootstrap_change(a, b, "fps")
    assert -28 < point < -18 and lo < point < hi < 0


def test_verdict_needs_threshold_and_significance() -> None:
    assert _verdict(3.0, 1.0, 5.0, False, 5.0) == ("same", 0.0)  # significant but under the threshold
    assert _verdict(20.0, -4.0, 45.0, False, 5.0) == ("noise", 0.0)  # big but within the spread
    assert _verdict(20.0, 12.0, 28.0, False, 5.0) == ("worse", 20.0)  # latency up: worse
    assert _verdict(20.0, 12.0, 28.0, True, 5.0) == ("better", 0.0)  # FPS up: better
    assert _verdict(-10.0, None, None, True, 5.0) == ("worse", 10.0)  # AP down, no spread known


# integration: real folders ------------------------------------------------------------------------------

def slowed_copy(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a real run whose per-frame latencies (and the summaries made from them) are ``factor`` x."""
    shutil.copytree(src, dst)
    frames = pd.read_csv(dst / "frames.csv")
    for col in ("pre_ms", "infer_ms", "post_ms"):
        frames[col] *= factor
    frames.to_csv(dst / "frames.csv", index=False)
    runs = pd.read_csv(dst / "runs.csv")
    for col in ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p50_ci_low_ms", "p50_ci_high_ms",
                "p90_ci_low_ms", "p90_ci_high_ms"):
        runs[col] *= factor
    for col in ("model_fps", "pipeline_fps"):
        runs[col] /= factor
    runs.to_csv(dst / "runs.csv", index=False)
    return dst


def test_a_run_against_itself_changes_nothing(small_results: Path, tmp_path: Path) -> None:
    quiet = marked(small_results, tmp_path / "quiet", True)  # rows marked invalid never compare as "same"
    cmp = compare_results(quiet, quiet)
    assert cmp.changes and all(c.verdict == "same" and c.change_pct == 0 for c in cmp.changes)
    assert cmp.failed_gate(0.1) == []
    proc = run_cli("compare", str(quiet), str(quiet), "--fail-above", "1")
    assert proc.returncode == 0, proc.stderr
    assert "0 regression(s)" in proc.stdout and "pass:" in proc.stderr


def marked(src: Path, dst: Path, valid: bool) -> Path:
    """A copy of a real run whose rows say ``valid`` (a 20-frame run on a shared machine is invalid: too few
    samples for p90 at least; the gate's arithmetic is tested as if the machine had been quiet)."""
    shutil.copytree(src, dst)
    runs = pd.read_csv(dst / "runs.csv")
    runs["valid"] = valid
    runs.to_csv(dst / "runs.csv", index=False)
    return dst


def test_the_runs_own_intervals_decide_noise() -> None:
    a = {"p50_ci_low_ms": 10.0, "p50_ci_high_ms": 12.0}
    assert _ci_change(a, {"p50_ci_low_ms": 11.5, "p50_ci_high_ms": 14.0}, "p50_ms")[0] < 0  # overlap: holds 0
    lo, hi = _ci_change(a, {"p50_ci_low_ms": 13.0, "p50_ci_high_ms": 15.0}, "p50_ms")
    assert 0 < lo < hi  # B's interval entirely above A's
    assert _ci_change(a, {}, "p50_ms") is None and _ci_change(a, a, "mean_ms") is None


def test_a_slower_run_fails_the_gate(small_results: Path, tmp_path: Path) -> None:
    # 2x: far outside the spread of a 20-frame run even on a busy shared machine (at 1.5x a noisy run's
    # bootstrap interval can still include "no change", which is the gate doing its job)
    small_results = marked(small_results, tmp_path / "base", valid=True)
    slow = slowed_copy(small_results, tmp_path / "slow", 2.0)
    cmp = compare_results(small_results, slow)
    verdicts = {c.metric: c for c in cmp.changes}
    for metric in ("p50_ms", "p90_ms", "mean_ms"):
        assert verdicts[metric].verdict == "worse" and verdicts[metric].change_pct == pytest.approx(100, abs=0.1)
    assert verdicts["model_fps"].verdict == "worse" and verdicts["model_fps"].regression_pct == pytest.approx(50, abs=0.2)
    if "ap" in verdicts:  # the same detections: accuracy did not move
        assert verdicts["ap"].verdict == "same"

    csv = tmp_path / "changes.csv"
    proc = run_cli("compare", str(small_results), str(slow), "--fail-above", "10", "--csv", str(csv))
    assert proc.returncode == 1
    assert f"{JOB}: p50_ms 100.0 % worse" in proc.stderr
    assert set(pd.read_csv(csv)["metric"]) >= {"p50_ms", "p90_ms", "model_fps"}
    # the gate is a threshold: 100 % slower passes a 150 % gate
    assert run_cli("compare", str(small_results), str(slow), "--fail-above", "150").returncode == 0
    # and the other way round it is an improvement
    back = compare_results(slow, small_results)
    assert {c.verdict for c in back.changes if c.metric in ("p50_ms", "model_fps")} == {"better"}


def test_rows_marked_invalid_are_not_judged_and_fail_the_gate(small_results: Path, tmp_path: Path) -> None:
    base = marked(small_results, tmp_path / "base", valid=True)
    slow = marked(slowed_copy(base, tmp_path / "slow0", 2.0), tmp_path / "slow", valid=False)
    cmp = compare_results(base, slow)
    verdicts = {c.metric: c.verdict for c in cmp.changes}
    assert verdicts["p50_ms"] == verdicts["model_fps"] == "invalid" and not cmp.regressions
    assert any("marked invalid in B" in n for n in cmp.notes)
    assert any("rerun on a quiet machine" in why for why in cmp.failed_gate(10))
    proc = run_cli("compare", str(base), str(slow), "--fail-above", "10")
    assert proc.returncode == 1 and "INVALID" in proc.stdout


def test_status_getting_worse_always_fails_the_gate(small_results: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(small_results, broken)
    runs = pd.read_csv(broken / "runs.csv")
    runs["status"] = "fallback"
    runs.to_csv(broken / "runs.csv", index=False)
    cmp = compare_results(small_results, broken)
    assert cmp.status_regressions() == [(JOB, "ok", "fallback")]
    proc = run_cli("compare", str(small_results), str(broken), "--fail-above", "1000")
    assert proc.returncode == 1 and "status ok -> fallback" in proc.stderr


def test_jobs_only_on_one_side_are_listed(small_results: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(small_results, other)
    for name in ("runs.csv", "frames.csv"):
        df = pd.read_csv(other / name)
        df["job_id"] = "renamed"
        df.to_csv(other / name, index=False)
    cmp = compare_results(small_results, other)
    assert cmp.only_a == [JOB] and cmp.only_b == ["renamed"] and not cmp.changes
    assert any("share no job id" in n for n in cmp.notes)


def test_ids_that_differ_only_by_preprocessing_are_named_as_such() -> None:
    from harness.report.compare import _differ_by_preprocess

    assert _differ_by_preprocess(["tf1_ref_pets09-s2l1_cpu"], ["tf1_ref_pets09-s2l1_cpu_shared"])
    assert _differ_by_preprocess(["tf1_ref_pets09-s2l1_cpu_shared_fp32"], ["tf1_ref_pets09-s2l1_cpu_fp32"])
    assert not _differ_by_preprocess(["tf1_ref_pets09-s2l1_cpu"], ["opencv_ref_pets09-s2l1_cpu_shared"])
