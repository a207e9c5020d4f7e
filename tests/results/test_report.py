"""The report from a real results folder: plots, report.html (FALLBACK and failures on top), the annotated
video, `harness report`, and the page in a real headless browser (no console errors, every image shows)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.report import plots
from harness.report.build import build_report
from harness.report.load import load_results
from tests.helpers.browser import CHROMIUM, check_page, chromium
from tests.helpers.results_folders import run_cli

def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_results_folder_loads_in_report_order(suite_results: Path) -> None:
    r = load_results(suite_results)
    statuses = dict(zip(r.runs["job_id"], r.runs["status"]))
    assert statuses["tf1_no-such-model.pb_pets09-s2l1_cpu_missing-model"] == "failed"
    assert statuses["tf1_ref_pets09-s2l1_cpu"] == "ok" and statuses["tf1_ref_pets09-s2l1_cpu_shared"] == "ok"
    assert statuses["tf1_ref_pets09-s2l1_gpu"] in ("ok", "fallback")
    assert "tf1_no-such-model.pb_pets09-s2l1_cpu_missing-model" not in r.job_ids()
    assert np.allclose(r.frames["total_ms"], r.frames[["pre_ms", "infer_ms", "post_ms"]].sum(axis=1))


def test_every_plot_is_drawn_from_a_real_run(suite_results: Path) -> None:
    r = load_results(suite_results)
    for name, (fn, _) in plots.PLOTS.items():
        if name == "accuracy_latency" and "ap50" not in r.runs.columns:
            assert fn(r) is None
            continue
        if name == "speed_accuracy":  # precision: drawn only for precision variants (test_precision)
            assert fn(r) is None
            continue
        fig = fn(r)
        assert fig is not None, name
        path = plots.save_figure(fig, suite_results / "test-plots" / f"{name}.png")
        w, h = png_size(path)
        assert w > 300 and h > 200, (name, w, h)


def test_frames_to_show_are_frames_every_job_ran(suite_results: Path) -> None:
    r = load_results(suite_results)
    chosen = plots.frames_to_show(r, 3)
    assert len(chosen) == 3 and chosen == sorted(set(chosen))
    for job in r.job_ids():
        assert set(chosen) <= set(r.frames.loc[r.frames["job_id"] == job, "frame"])


def test_boxes_drawn_follow_the_policy(suite_results: Path) -> None:
    r = load_results(suite_results)
    job = r.job_ids()[0]
    thr = r.policy(job).score_threshold
    frame = int(r.frames.loc[r.frames["job_id"] == job, "frame"].iloc[5])
    drawn = plots.boxes_at(r, job, frame)
    saved = [d for d in r.detections(job) if d["frame"] == frame]
    assert (drawn.scores >= np.float32(thr)).all()
    assert len(drawn) == sum(d["score"] >= thr for d in saved)
    n_dets = int(r.frames.loc[(r.frames["job_id"] == job) & (r.frames["frame"] == frame), "n_dets"].iloc[0])
    assert len(drawn) == n_dets  # the runner counted the same boxes at the same threshold


def test_boxes_drawn_follow_the_policys_top_k(small_results: Path, tmp_path: Path) -> None:
    """A job saved with top_k = 1 shows one box per frame in the report, however many scored above the threshold."""
    copy = Path(shutil.copytree(small_results, tmp_path / "topk"))
    r = load_results(copy)
    job = r.job_ids()[0]
    data = json.loads((copy / "jobs.json").read_text())
    thr = data["jobs"][0]["spec"]["policy"]["score_threshold"]
    counts = {}
    for d in r.detections(job):
        counts[d["frame"]] = counts.get(d["frame"], 0) + (d["score"] >= thr)
    frame = max(counts, key=counts.get)
    assert counts[frame] >= 2, "a real PETS frame with several people above the threshold"
    for entry in data["jobs"]:
        entry["spec"]["policy"]["top_k"] = 1
        entry["info"]["policy"]["top_k"] = 1
    (copy / "jobs.json").write_text(json.dumps(data))
    drawn = plots.boxes_at(load_results(copy), job, frame)
    best = max(d["score"] for d in r.detections(job) if d["frame"] == frame)
    assert len(drawn) == 1 and float(drawn.scores[0]) == pytest.approx(best)


@pytest.fixture(scope="module")
def long_run(assets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real PETS frames through the pixel-statistics test backend (no framework: quick), in-process."""
    out = tmp_path_factory.mktemp("long") / "run"
    proc = run_cli("run", "-b", "tests.helpers.stand_in_backends:FrameStatsDetector", "--frames", "200", "--warmup", "1",
                   "--executor", "inline", "-q", "--no-report", "--out", str(out), cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_latency_axis_shows_the_1_99_range_and_marks_the_stalls(long_run: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(long_run, tmp_path / "stall"))
    frames = pd.read_csv(copy / "frames.csv")
    total = frames[["pre_ms", "infer_ms", "post_ms"]].sum(axis=1)
    frames.loc[100, "infer_ms"] += 60 * float(total.max())  # one stall (0.5 % of the frames), as a GC pause makes
    frames.to_csv(copy / "frames.csv", index=False)
    stall = float(frames.loc[100, ["pre_ms", "infer_ms", "post_ms"]].sum())
    fig = plots.latency_distribution(load_results(copy))
    ax = fig.axes[0]
    edge = ax.get_xlim()[1]
    assert edge < stall / 10  # the boxes keep their width; the stall does not set the axis
    # the note counts every frame past the edge: the stall, and any the real run had itself (a loaded machine
    # gives one now and then), and names the slowest, the stall
    off = int((frames[["pre_ms", "infer_ms", "post_ms"]].sum(axis=1) > edge).sum())
    assert off >= 1
    notes = [t.get_text() for t in ax.texts]
    assert any(f"{off} frame(s) off the axis, up to {stall:.0f} ms" in n for n in notes), notes


def test_accuracy_vs_latency_names_every_job_without_overlapping_labels(suite_results: Path) -> None:
    import matplotlib.text

    r = load_results(suite_results)
    fig = plots.accuracy_vs_latency(r)
    assert fig is not None
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    rows = r.measured[r.measured["ap50"].notna()]
    labels = set(plots.labels_for(r, list(rows["job_id"])).values())
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text() in labels]
    assert sorted(t.get_text() for t in texts) == sorted(labels)  # every job named, once
    boxes = [t.get_window_extent(renderer) for t in texts]
    overlapping = [(a.get_text(), b.get_text()) for (a, ba), (b, bb) in itertools.combinations(zip(texts, boxes), 2)
                   if ba.overlaps(bb)]
    assert overlapping == []


def test_agreement_matrix_needs_two_jobs(small_results: Path, suite_results: Path) -> None:
    assert plots.agreement_matrix(load_results(small_results)) is None
    r = load_results(suite_results)
    if r.agreement is None:
        pytest.skip("agreement.csv was not written (harness.measure.metrics.evaluate missing)")
    assert plots.agreement_matrix(r) is not None


def test_report_html_puts_fallbacks_and_failures_first(suite_results: Path) -> None:
    page = build_report(suite_results)
    html = page.read_text()
    assert page == suite_results / "report.html"
    r = load_results(suite_results)
    fallback = r.runs[r.runs["status"] == "fallback"]
    first_table = html.index("<h2>All columns</h2>")  # the wide table; the ranked one is above
    if len(fallback):
        assert html.index("FALLBACK: 1 job(s) asked for a GPU and ran on the CPU") < first_table
    assert html.index("1 job(s) did not finish") < first_table
    assert "no-such-model.pb" in html[:first_table]  # the failed job's cause is shown
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 4
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    for job in r.runs["job_id"]:
        assert job in html
    env = json.loads((suite_results / "env.json").read_text())
    assert env["machine"]["cpu"] in html


def test_harness_report_command_rebuilds_from_the_csv_files(small_results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_results, copy)
    shutil.rmtree(copy / "plots", ignore_errors=True)
    (copy / "report.html").unlink(missing_ok=True)
    proc = run_cli("report", str(copy), "--save-video")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (copy / "report.html").is_file() and (copy / "plots" / "latency.png").is_file()
    import cv2

    cap = cv2.VideoCapture(str(copy / "annotated.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    frames_csv = load_results(copy).frames
    assert ok and frame.shape[1] == 480 and n == len(frames_csv)
    assert "annotated.mp4" in (copy / "report.html").read_text()


def test_harness_report_on_a_folder_that_is_not_one(tmp_path: Path) -> None:
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "not a results folder" in proc.stderr


# the page in a real browser -------------------------------------------------------------------------------

@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_report_page_in_headless_chromium(suite_results: Path, tmp_path: Path) -> None:
    page = build_report(suite_results)
    html = page.read_text()
    check = check_page(page, tmp_path)
    assert check["errors"] == []
    assert check["images"] == html.count("<img ") >= 4
    assert check["broken"] == 0 and all(w > 300 for w in check["widths"])
    # the unmodified page: no console message of level error from the page itself
    shot = tmp_path / "report.png"
    proc = chromium("--hide-scrollbars", "--window-size=1400,2400", f"--screenshot={shot}", page.as_uri(),
                    profile=tmp_path / "profile2")
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and ("ERROR" in ln or "error" in ln.lower())]
    assert console == []
    w, h = png_size(shot)
    assert (w, h) == (1400, 2400)
    assert shot.stat().st_size > 50_000  # a rendered page with plots, not a blank one
