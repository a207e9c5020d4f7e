"""A results folder verifies itself on read: a runs.csv cut mid-row, a cell that is not a number, a deleted
or truncated detections or frames file is named by ``report``, ``compare`` and ``eval`` (exit 2, with the
fix), and ``harness run --resume`` reruns exactly the damaged jobs instead of keeping them (and never
writes a cut row back). ``report`` takes the folder's lock like ``eval``; ``compare`` of two folders whose
rows are all invalid fails its gate; ``compare FILE B`` says FILE is not a results folder.

The folders are real runs of the deterministic stand-in detector (tests/helpers/stand_in_backends.py), on real
PETS frames, made once per module by the real command line and copied for each case. The commands on the
damaged copies run through ``harness.cli.main`` in this process (exit status, stdout and stderr as the
command line gives them; an uncaught exception fails the test, as a traceback would): what they check is the
folder's verification, not the process boundary. A lock held by this test is tested from another process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd
import pytest

from harness.cli import main
from harness.results import RunLock, load_run

ROOT = Path(__file__).resolve().parents[2]
FS = "tests.helpers.stand_in_backends:FrameStatsDetector"
JOB_A = "FrameStatsDetector_ref_pets09-s2l1_cpu"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               HARNESS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def harness(capsys: pytest.CaptureFixture) -> Callable[..., Ran]:
    """``harness ARGS`` in this process, read like a finished subprocess."""
    def run(*args: str) -> Ran:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return Ran(rc, out, err)
    return run


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, assets_root: Path) -> Path:
    """A finished folder with two jobs (the stand-in on cpu and on cpu:0), 6 PETS frames each."""
    out = tmp_path_factory.mktemp("verify") / "run"
    proc = cli("run", "--backend", FS, "--device", "cpu", "--device", "cpu:0", "--video", "pets09-s2l1",
               "--frames", "6", "--warmup", "1", "-q", "--no-report", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert JOB_A in set(runs.job_id) and len(runs) == 2
    return out


@pytest.fixture
def folder(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def cut_runs_csv_mid_row(folder: Path) -> None:
    """The last row loses its last 300 bytes: what a copy or a disk that stopped mid-write leaves."""
    data = (folder / "runs.csv").read_bytes()
    (folder / "runs.csv").write_bytes(data[:-300])


# serious: a cut runs.csv ------------------------------------------------------------------------------

def test_a_runs_csv_cut_mid_row_is_refused_and_resume_reruns_the_job_instead_of_keeping_half_a_row(
        folder: Path, harness: Callable[..., Ran]) -> None:
    before = pd.read_csv(folder / "runs.csv")
    cut_job = str(before.job_id.iloc[-1])
    cut_runs_csv_mid_row(folder)
    for command in (["report", str(folder)], ["eval", str(folder)], ["compare", str(folder), str(folder)]):
        proc = harness(*command)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "is damaged" in proc.stderr and cut_job in proc.stderr and "is cut short" in proc.stderr, proc.stderr
        assert f"harness run --resume {folder}" in proc.stderr, proc.stderr
    resumed = harness("run", "--resume", str(folder), "-q", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{cut_job}: its runs.csv row is damaged (line" in resumed.stderr and "1 job(s) to run, 1 kept" in resumed.stderr
    after = pd.read_csv(folder / "runs.csv")
    row = after[after.job_id == cut_job].iloc[0]
    # the rerun row is whole again: every column the first run filled is filled now
    filled = [c for c in before.columns if pd.notna(before[before.job_id == cut_job].iloc[0][c])]
    assert [c for c in filled if pd.isna(row[c])] == []
    assert load_run(folder).damage == []
    assert harness("report", str(folder)).returncode == 0


# minor items -------------------------------------------------------------------------------------------

def _set_cell(column: str, value: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        import csv

        with open(folder / "runs.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        rows[1][rows[0].index(column)] = value
        with open(folder / "runs.csv", "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
    return damage


def _job_file(kind: str, how: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / load_run(folder).jobs[JOB_A].files[kind]
        if how == "delete":
            path.unlink()
        else:
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return damage


def _cut_frames_csv(folder: Path) -> None:
    path = folder / "frames.csv"
    path.write_bytes(path.read_bytes()[:-7])


@pytest.mark.parametrize("damage, says", [
    (_set_cell("p50_ms", "abc"), "p50_ms='abc' is not a number"),
    (_set_cell("frames", "-7"), "frames=-7 is not a count"),
    (_set_cell("mean_ms", "inf"), "mean_ms=inf is not a finite number"),
    (_job_file("detections", "delete"), "the detections file its runs.csv row names is missing"),
    (_job_file("detections", "truncate"), "detections"),
    (_cut_frames_csv, "frames.csv"),
], ids=["p50-abc", "frames-negative", "inf", "detections-deleted", "detections-truncated", "frames-csv-cut"])
def test_damaged_cells_and_files_are_named_by_report_and_compare_and_rerun_by_resume(
        folder: Path, finished: Path, damage: Callable[[Path], None], says: str,
        harness: Callable[..., Ran]) -> None:
    damage(folder)
    report = harness("report", str(folder))
    assert report.returncode == 2 and says in report.stderr, report.stderr
    compare = harness("compare", str(finished), str(folder), "--fail-above", "5")
    assert compare.returncode == 2 and says in compare.stderr and "+inf%" not in compare.stdout, compare
    resumed = harness("run", "--resume", str(folder), "-q", "--no-report")
    assert resumed.returncode == 0 and "is damaged (" in resumed.stderr and "rerunning it" in resumed.stderr, resumed.stderr
    assert load_run(folder).damage == []


def _damaged_while_running(folder: Path, tmp_path: Path, harness: Callable[..., Ran]) -> subprocess.CompletedProcess:
    with RunLock(folder, command="harness run (the test holds the folder)"):
        return cli("report", str(folder))


def _all_rows_invalid(folder: Path, tmp_path: Path, harness: Callable[..., Ran]) -> Ran:
    _set_cell("valid", "False")(folder)
    # the second row too: every timing comparison is then on invalid rows
    import csv

    with open(folder / "runs.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        row[rows[0].index("valid")] = "False"
    with open(folder / "runs.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return harness("compare", str(folder), str(folder), "--fail-above", "5")


def _report_read_only(folder: Path, tmp_path: Path, harness: Callable[..., Ran]) -> subprocess.CompletedProcess:
    """The folder on a read-only bind mount (needs the privilege to mount; skipped without it)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {made.stderr.strip()}")
    try:
        return cli("report", str(mount))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _compare_a_file(folder: Path, tmp_path: Path, harness: Callable[..., Ran]) -> Ran:
    return harness("compare", str(folder / "runs.csv"), str(folder))


@pytest.mark.parametrize("case, code, says", [
    (_damaged_while_running, 2, "is in use by another harness process"),
    (_all_rows_invalid, 1, "every timing comparison involves a row marked invalid"),
    (_compare_a_file, 2, "runs.csv is a file, not a results folder"),
    (_report_read_only, 2, "Read-only file system"),
], ids=["report-during-a-run", "compare-all-invalid", "compare-a-file", "report-read-only"])
def test_report_and_compare_misuse(folder: Path, tmp_path: Path, case: Callable, code: int, says: str,
                                   harness: Callable[..., Ran]) -> None:
    proc = case(folder, tmp_path, harness)
    assert proc.returncode == code and says in proc.stderr, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
