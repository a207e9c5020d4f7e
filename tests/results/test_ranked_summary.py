"""The run's answer first: the ranked summary at the end of `harness run` and as report.html's first table,
honest progress lines, and an Examples section in every --help. Built from real runs (tests.helpers.results_folders'
folders and a real two-job CLI run), never from made-up rows."""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import sys
import time
from contextlib import redirect_stderr
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.commands.run import _print_summary, _Progress
from harness.help import walk
from harness.core.jobs import JobSpec
from harness.report.build import build_report
from harness.report.ranked import WIDTH, format_summary, rank
from harness.report.load import load_results
from tests.helpers.browser import CHROMIUM, chromium
from tests.helpers.results_folders import run_cli


@pytest.fixture()
def below_floor_results(suite_results: Path, tmp_path: Path) -> Path:
    """The real four-job folder re-read with its shared-preprocessing row marked below the accuracy floor, as
    the precision step writes it for a variant that lost too much AP50 (the rest is what the run wrote)."""
    copy = tmp_path / "copy"
    shutil.copytree(suite_results, copy)
    with open(copy / "runs.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    target = [r for r in rows if r["preprocess"] == "shared" and r["status"] == "ok"]
    assert len(target) == 1
    if "below_floor" not in fields:
        fields.append("below_floor")
    target[0]["below_floor"] = "True"
    with open(copy / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return copy


def test_end_of_run_table_is_ranked_marked_and_fits_100_columns(below_floor_results: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    _print_summary(below_floor_results, [])  # what `harness run` prints after the last step
    text = capsys.readouterr().out
    lines = text.strip("\n").splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    header = next(i for i, line in enumerate(lines) if line.startswith("#") and "p50 ms" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("  single-stream "))
    body = lines[header + 1:end]
    runs = load_results(below_floor_results).runs
    assert len(body) == len(runs)
    # sorted: ranks 1..n over the measured rows, by p50, the failed job last and unranked
    groups, _ = rank(runs)
    measured = [r for r in groups[0].rows if r.rank]
    assert [r.rank for r in measured] == list(range(1, len(measured) + 1))
    assert [r.headline for r in measured] == sorted(r.headline for r in measured)
    assert body[-1].split()[:2] == ["-", "tf1"] and "FAILED" in body[-1]
    # the marks: the GPU request that ran on the CPU, the variant under the floor, the invalid rows
    fallback = [ln for ln in body if "FALLBACK" in ln]
    assert len(fallback) == 1 and " gpu " in fallback[0] + " "
    below = [ln for ln in body if "BELOW-FLOOR" in ln]
    assert len(below) == 1 and "*" not in below[0].split()[0]  # never the best trusted row
    assert all(re.search(r"\bNO\b", ln) for ln in body if "FAILED" not in ln)  # 20 frames: too few samples
    assert "single-stream INVALID" in text
    assert re.search(r"samples\s+NO\s+3 job\(s\)", text)
    assert re.search(r"machine quiet\s+(yes|NO)", text) and re.search(r"clock held\s+(yes|NO)", text)


def test_a_wide_terminal_is_not_assumed(suite_results: Path) -> None:
    results = load_results(suite_results)
    text = format_summary(results.runs, results.agreement, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())


class _Tables(HTMLParser):
    """The page's tables in order: each one's id and header cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append({"id": dict(attrs).get("id"), "heads": []})
        self._in_th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._in_th and self.tables:
            self.tables[-1]["heads"].append(data.strip())


def test_report_first_table_is_the_ranked_summary(below_floor_results: Path) -> None:
    html = build_report(below_floor_results).read_text()
    parser = _Tables()
    parser.feed(html)
    first = parser.tables[0]
    assert first["id"] == "ranked-single-stream"
    assert first["heads"][:2] == ["#", "job"] and "p50 ms" in first["heads"] and "AP50" in first["heads"]
    assert html.index("Ranked summary") < html.index("FALLBACK: 1 job(s)") < html.index("<h2>All columns</h2>")
    # the below-floor row never reads as a green ok, in either table
    assert "ok, below floor" in html and 'class="bad">BELOW-FLOOR' in html
    # identical INVALID reasons are listed once, with the jobs they cover
    banner = html[html.index('banner invalid'):]
    banner = banner[:banner.index("</div>")]
    assert banner.count("too few samples: 20") == 1 and "3 job(s)" in banner


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_ranked_summary_header_is_in_the_first_viewport(below_floor_results: Path, tmp_path: Path) -> None:
    page = build_report(below_floor_results)
    probe = tmp_path / "probe.html"
    script = ("<script>addEventListener('load',()=>{const t=document.querySelector('#ranked-summary thead');"
              "const r=t.getBoundingClientRect();const o=document.createElement('pre');o.id='__pos';"
              "o.textContent=r.top+','+r.bottom;document.body.appendChild(o);});</script>")
    probe.write_text(page.read_text().replace("<head>", "<head>" + script, 1))
    proc = chromium("--window-size=1400,900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
                    profile=tmp_path / "profile")
    m = re.search(r'<pre id="__pos">([-\d.]+),([-\d.]+)</pre>', proc.stdout)
    assert m, proc.stderr[-2000:]
    top, bottom = float(m.group(1)), float(m.group(2))
    assert 0 <= top and bottom <= 900, (top, bottom)
    shot = tmp_path / "first-screen.png"
    chromium("--hide-scrollbars", "--window-size=1400,900", f"--screenshot={shot}", page.as_uri(),
             profile=tmp_path / "profile2")
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_two_job_run_prints_counted_phases_without_bar_debris(tmp_path: Path) -> None:
    """A real two-job run with its output piped (not a terminal): [1/2] and [2/2] lines with the phases,
    no carriage return, and the ranked table at the end; the int8 job is OpenCV's real precision fallback."""
    out = tmp_path / "out"
    proc = run_cli("run", "-b", "opencv", "-p", "fp32,int8", "--frames", "12", "--warmup", "1", "--no-report",
                   "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "\r" not in err and "\r" not in proc.stdout
    for i in (1, 2):
        line = next(ln for ln in err.splitlines() if ln.startswith(f"[{i}/2] ") and "loading opencv ..." in ln)
        assert "warming up ..." in line and "timing 12 frames ..." in line and line.rstrip().endswith("s timed")
    assert re.search(r"elapsed \d+:\d\d, about \d+:\d\d left for 1 job\(s\)", err)
    assert "scoring AP against ground truth" in err
    table = proc.stdout
    assert "single-stream: ranked by p50 ms" in table and "FALLBACK" in table
    assert all(len(ln) <= WIDTH for ln in table.splitlines())
    assert table.rstrip().splitlines()[-1].startswith("results in ")


def test_the_rate_after_the_first_frame_excludes_load_time() -> None:
    spec = JobSpec(backend="opencv", source="pets09-s2l1")
    buf = io.StringIO()
    with redirect_stderr(buf):
        bar = _Progress(spec, 1, 1, quiet=False, tty=True)
        bar(0, 10, 0.0, "loading opencv")
        time.sleep(1.5)  # a slow load
        bar(0, 10, 0.0, "warming up")
        time.sleep(0.3)
        bar(0, 10, 0.0, "timing")
        time.sleep(0.1)
        bar(1, 10, 10.0)
        fmt = bar.bar.format_dict
        bar.close()
    assert fmt["elapsed"] < 1.0  # the bar's clock started at the timed part, not at the load
    assert fmt["n"] / fmt["elapsed"] > 1.0  # so its rate is frames per timed second (not 1 per 1.9 s)
    assert "loading opencv ..." in buf.getvalue() and "warming up ..." in buf.getvalue()


def test_every_subcommand_help_has_examples() -> None:
    missing = []
    for path, parser in walk(build_parser()):
        text = parser.format_help()
        if "Examples:" not in text or not re.search(r"^\s+harness\b", text[text.index("Examples:"):] if
                                                    "Examples:" in text else "", re.M):
            missing.append(" ".join(("harness",) + path))
    assert not missing, missing
    assert len(list(walk(build_parser()))) >= 19  # the walk reached the nested actions (assets fetch, env check)


def test_backend_help_lists_the_registry() -> None:
    from harness.core.registry import available_backends

    run = next(p for path, p in walk(build_parser()) if path == ("run",))
    text = " ".join(run.format_help().split())
    for name in available_backends():
        assert name in text
    assert isinstance(run, argparse.ArgumentParser) and sys.executable


def test_offline_plot_percentiles_equal_runs_csv(tmp_path: Path) -> None:
    """A real offline run (batches of 4, the last one short): the latency plot's p50/p90 are runs.csv's,
    per batch, and say so."""
    from harness.report.plots import latency_distribution

    out = tmp_path / "offline"
    proc = run_cli("run", "-b", "opencv", "--scenario", "offline", "--batch", "4", "--frames", "22", "--warmup", "1",
                   "--executor", "inline", "--quiet", "--no-report", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = load_results(out)
    row = results.runs.iloc[0]
    assert row["scenario"] == "offline" and row["batches"] == 6  # 5 x 4 + 2: frames repeat unequal batch times
    fig = latency_distribution(results)
    texts = [t.get_text() for t in fig.axes[0].texts]
    m = re.search(r"p50 ([\d.]+)  p90 ([\d.]+) ms per batch", " ".join(texts))
    assert m, texts
    assert float(m.group(1)) == round(float(row["p50_ms"]), 1)
    assert float(m.group(2)) == round(float(row["p90_ms"]), 1)
    assert "latency per batch" in fig.axes[0].get_xlabel()


def test_server_plot_has_plain_ticks_and_the_bound_on_its_line(tmp_path: Path) -> None:
    from harness.report.scenarios import _figure
    from harness.measure.sweeps import find_sweeps

    out = tmp_path / "server"
    proc = run_cli("run", "-b", "opencv", "--scenario", "server", "--qps", "2", "--latency-bound", "400ms",
                   "--frames", "8", "--warmup", "1", "--executor", "inline", "--quiet", "--no-report",
                   "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fig = _figure(find_sweeps(load_results(out).run), "server")
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"[\d.]+", t) for t in labels), labels  # 200, 500, not 2x10^2
    assert "bound 400 ms" in [t.get_text() for t in ax.texts]


def test_framework_output_goes_to_the_log_not_the_terminal(tmp_path: Path) -> None:
    """What a framework's C++ side writes to file descriptor 2 (TensorFlow's absl lines) lands in the log."""
    import subprocess

    script = ("import os, sys; from pathlib import Path; from harness.commands.framework_log import framework_output_to\n"
              "with framework_output_to(Path(sys.argv[1])):\n"
              "    os.write(2, b'I0000 cudart_stub.cc:31] Could not find cuda drivers\\n')\n"
              "print('converted')\n")
    log = tmp_path / "convert.log"
    proc = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "converted"
    assert proc.stderr == "" and "cudart_stub" in log.read_text()
