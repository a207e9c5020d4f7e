"""The precision target, measured side by side in one run (a benchmark, not a timed test).

Target: the fastest variant of the reference SSD whose AP50 on all 795 PETS frames is at least 99 % of its
backend's fp32 AP50 runs at a median of at most half of ONNX Runtime fp32's (the harness's default form,
the full graph). Runs ``benchmarks/precision.toml`` through ``harness run`` (each job in its own process,
as users run them), then reports every variant, including the ones that miss, as a Markdown table
(``--precision-table FILE`` writes it too). ``HARNESS_BENCH_FRAMES=200`` makes a quicker, noisier run;
``HARNESS_BENCH_OUT=DIR`` keeps the results folder (``harness report DIR`` draws its plots).

Run on purpose: ``python -m pytest benchmarks/test_precision_target.py -s``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = Path(__file__).parent / "precision.toml"
BASELINE = "onnxruntime_ref_pets09-s2l1_cpu_shared_fp32"
TARGET_RATIO = 0.5
FLOOR = 0.99


def _suite_text() -> str:
    """The suite, naming the openvino backend by module:Class where the installed entry points predate it."""
    from harness.core.registry import available_backends

    text = SUITE.read_text(encoding="utf-8")
    if "openvino" not in available_backends():
        text = text.replace('"openvino"', '"backends.openvino_ov:OpenVINODetector"')
    return text


def _table(runs) -> tuple[str, str]:  # noqa: ANN001 - a DataFrame
    base = float(runs.loc[BASELINE, "p50_ms"])
    lines = ["| job | asked | ran | p50 ms | p50 / ORT fp32 | AP50 | AP50 / fp32 | floor | fp32 boxes found |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    keep = []
    for job_id, r in runs.iterrows():
        ratio = float(r["p50_ms"]) / base
        share = r.get("ap50_vs_fp32")
        share = 1.0 if str(share) in ("", "nan") and r["precision"] == "fp32" else float(share)
        ok = share >= FLOOR
        if ok and r["status"] == "ok":  # a fallback ran another precision than the variant it names
            keep.append((ratio, job_id))
        found = r.get("agree_fp32")
        lines.append(f"| {job_id} | {r['precision_requested']} | {r['precision']} | {float(r['p50_ms']):.2f} | "
                     f"{ratio:.2f} | {float(r['ap50']):.4f} | {share:.4f} | {'ok' if ok else 'below'} | "
                     f"{'' if str(found) == 'nan' else f'{float(found):.3f}'} |")
    best = min(keep) if keep else None
    verdict = (f"fastest variant within the floor: {best[1]} at {best[0]:.2f} x ONNX Runtime fp32's median "
               f"({'met' if best[0] <= TARGET_RATIO else 'missed'}: target <= {TARGET_RATIO})"
               if best else "no variant within the floor")
    return "\n".join(lines), verdict


def test_precision_variants_against_the_target(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("onnxruntime")
    import pandas as pd

    if not os.environ.get("HARNESS_ASSETS"):
        pytest.skip("HARNESS_ASSETS is not set to the shared assets folder")
    suite = tmp_path / "precision.toml"
    suite.write_text(_suite_text(), encoding="utf-8")
    out = Path(os.environ.get("HARNESS_BENCH_OUT") or tmp_path / "run")  # HARNESS_BENCH_OUT keeps the folder
    frames = os.environ.get("HARNESS_BENCH_FRAMES")
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--out", str(out), "-q", "--no-report",
           "--accuracy-floor", str(FLOOR)] + (["--frames", frames] if frames else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=5400)
    print(proc.stderr[-4000:])
    runs = pd.read_csv(out / "runs.csv").set_index("job_id")
    measured = runs[runs["status"].isin(["ok", "fallback"])]
    assert BASELINE in measured.index, proc.stderr[-2000:]
    table, verdict = _table(measured)
    print(f"\n{table}\n\n{verdict}")
    path = request.config.getoption("--precision-table", default=None)
    if path:
        Path(path).write_text(f"{table}\n\n{verdict}\n", encoding="utf-8")
    assert measured["ap50"].notna().all()  # every variant scored against the same ground truth
