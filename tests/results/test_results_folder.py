"""The saved run: one results folder, written and read through ``harness.results``.

Each test here reproduces a defect a user hit with a real results folder (made by the real command line on
the real TUD-Campus / PETS videos with the deterministic test backend, whose output depends on the pixels
only) and checks the one clear outcome: a locked folder, absolute paths, reruns of changed or damaged jobs,
bounded file names, one-line errors instead of tracebacks, integer columns that stay integers.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
FS = "tests.helpers.stand_in_backends:FrameStatsDetector"
QUIET = ["-q", "--no-report", "--warmup", "1"]


def cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def popen(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended while waiting for {what}: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_main(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``harness ...`` in this process: an uncaught exception (a traceback for the user) fails the test."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def runs_csv(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "runs.csv", keep_default_na=False)


@pytest.fixture(scope="module")
def tud_folder(assets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real jobs (the pixel-statistics backend on two spellings of the CPU), 10 TUD-Campus frames."""
    out = tmp_path_factory.mktemp("tud") / "run"
    proc = cli("run", "-b", FS, "-d", "cpu", "-d", "cpu:0", "--video", "tud-campus", "--frames", "10", *QUIET,
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture
def folder(tud_folder: Path, tmp_path: Path) -> Path:
    """A private copy of the two-job folder for a test to damage."""
    return Path(shutil.copytree(tud_folder, tmp_path / "copy"))


JOB_A = "FrameStatsDetector_ref_tud-campus_cpu"
JOB_B = "FrameStatsDetector_ref_tud-campus_cpu-0"


# 1. two runs into one folder ------------------------------------------------------------------------------

def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_holder(assets_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = popen("run", "-b", FS, "--video", "tud-campus", "--frames", "30", "--opt", "delay_s=0.1", *QUIET,
                  "--out", str(out))
    try:
        wait_for(lambda: (out / "jobs.json").is_file(), 120, "the first run to plan its jobs", first)
        second = cli("run", "-b", FS, "-d", "cpu:0", "--video", "tud-campus", "--frames", "5", *QUIET,
                     "--out", str(out))
        f_out, f_err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    assert f"error: results folder {out} is in use by another harness process: pid {first.pid}" in second.stderr
    assert "harness run -b " + FS in second.stderr or "-m harness run -b " + FS in second.stderr
    assert "fix:" in second.stderr
    assert first.returncode == 0, f_err[-2000:]
    assert list(runs_csv(out).job_id) == ["FrameStatsDetector_ref_tud-campus_cpu"]
    assert sorted(p.name for p in (out / "detections").iterdir()) == ["FrameStatsDetector_ref_tud-campus_cpu.json"]


def test_the_lock_goes_with_the_writer_and_names_this_process(tmp_path: Path) -> None:
    from harness.results import FolderInUse, ResultsWriter

    with ResultsWriter(tmp_path / "out"):
        with pytest.raises(FolderInUse) as info:
            ResultsWriter(tmp_path / "out")
        assert f"pid {os.getpid()}" in info.value.problem
    with ResultsWriter(tmp_path / "out") as again:  # released on close: the folder can be opened again
        assert again.finished_job_ids() == set()


# 2. relative source paths -----------------------------------------------------------------------------------

def _mot_sequence(parent: Path, name: str, asset_folder: Path, video: str) -> Path:
    """A MOT-style sequence under ``parent``: ``name`` (a link to a real video) with ``gt/`` beside it."""
    parent.mkdir(parents=True, exist_ok=True)
    (parent / name).symlink_to(asset_folder / video)
    if not (parent / "gt").exists():
        (parent / "gt").symlink_to(asset_folder / "gt", target_is_directory=True)
    return parent / name


def test_relative_source_paths_work_for_resume_and_eval_from_another_folder(assets_root: Path, tmp_path: Path,
                                                                             capsys, monkeypatch) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    _mot_sequence(work / "in", "clip.mp4", assets_root / "videos" / "tud-campus", "TUD-Campus.mp4")
    elsewhere.mkdir()
    out = work / "res"
    # two jobs; killed while the second one runs, as a user's Ctrl-\ or an OOM kill would
    proc = popen("run", "-b", FS, "-d", "cpu", "-d", "cpu:0", "--video", "in/clip.mp4", "--frames", "6",
                 "--opt", "delay_s=0.3", *QUIET, "--out", "res", cwd=work)
    try:
        wait_for(lambda: (out / "runs.csv").is_file(), 120, "the first job to finish", proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(runs_csv(out).job_id) == ["FrameStatsDetector_ref_clip.mp4_cpu"]

    # the killed run is the one real process here; the resume and eval after it run in this process, started
    # from the other folder (what they check is the recorded paths, not the process boundary)
    monkeypatch.chdir(elsewhere)
    rc, _, err = run_main(capsys, "run", "--resume", str(out), "-q")
    assert rc == 0, err[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.status) == ["ok", "ok"]
    assert runs["ap50"].notna().all(), "resume from another folder lost the ground truth of a relative source"

    rc, evaluated, err = run_main(capsys, "eval", str(out))
    assert rc == 0, err[-3000:]
    assert "no job could be scored" not in evaluated
    assert "FrameStatsDetector_ref_clip.mp4_cpu-0" in evaluated
    assert pd.read_csv(out / "runs.csv")["ap50"].notna().all()


# 3. a saved job whose settings changed ------------------------------------------------------------------------

def test_a_saved_job_whose_settings_changed_is_rerun(assets_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    videos = assets_root / "videos"
    _mot_sequence(tmp_path / "one", "clip.avi", videos / "pets09-s2l1", "vtest.avi")
    _mot_sequence(tmp_path / "two", "clip.avi", videos / "tud-campus", "TUD-Campus.mp4")
    job = "FrameStatsDetector_ref_clip.avi_cpu"
    monkeypatch.chdir(tmp_path)  # the four runs, in this process, from the folder holding the videos

    def run(*extra: str) -> str:
        """The run's stderr."""
        rc, _, err = run_main(capsys, "run", "-b", FS, *QUIET, "--out", "out", *extra)
        assert rc == 0, err[-3000:]
        return err

    run("--video", "one/clip.avi", "--frames", "5")
    assert runs_csv(tmp_path / "out").loc[0, "frame_width"] == 768  # PETS

    again = run("--video", "two/clip.avi", "--frames", "5")  # another video of the same file name
    assert "(1 job(s) to run)" in again
    assert f"{job}: source changed" in again and "the saved result is replaced" in again
    runs = runs_csv(tmp_path / "out")
    assert list(runs.job_id) == [job] and runs.loc[0, "frame_width"] == 640  # TUD-Campus, not the stale PETS row

    more = run("--video", "two/clip.avi", "--frames", "8")
    assert f"{job}: frames changed (5 -> 8)" in more and "(1 job(s) to run)" in more
    assert runs_csv(tmp_path / "out").loc[0, "frames"] == 8

    same = run("--video", "two/clip.avi", "--frames", "8", "--timeout", "900")  # a timeout measures nothing
    assert "(0 job(s) to run, 1 kept)" in same


# 5. job ids too long for a file name ----------------------------------------------------------------------

def test_a_240_character_video_name_runs_evaluates_and_resumes(assets_root: Path, tmp_path: Path, capsys) -> None:
    name = "v" * 236 + ".mp4"
    video = _mot_sequence(tmp_path / "seq", name, assets_root / "videos" / "tud-campus", "TUD-Campus.mp4")
    out = tmp_path / "out"
    rc, _, err = run_main(capsys, "run", "-b", FS, "--video", str(video), "--frames", "4", "-q", "--warmup", "1",
                          "--out", str(out))
    assert rc == 0, err[-3000:]
    job_id = f"FrameStatsDetector_ref_{name}_cpu"
    runs = runs_csv(out)
    assert list(runs.job_id) == [job_id] and runs.loc[0, "status"] == "ok"
    assert runs.loc[0, "ap50"] != ""  # eval found the ground truth beside the video
    for sub in ("detections", "frames", "logs"):
        names = [p.name for p in (out / sub).iterdir()]
        assert len(names) == 1 and len(names[0]) < 140, (sub, names)
    entry = json.loads((out / "jobs.json").read_text())["jobs"][0]
    assert entry["spec"]["job_id"] == job_id  # the readable id stays inside the files
    assert (out / "report.html").is_file() and job_id in (out / "report.html").read_text()

    rc, _, err = run_main(capsys, "run", "--resume", str(out), "-q", "--no-report")
    assert rc == 0 and "(0 job(s) to run, 1 kept)" in err, err[-2000:]


# 7. damaged files are one-line errors -------------------------------------------------------------------------

DAMAGE = {
    "garbage": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
}


# half a CSV is still a CSV with fewer rows (and atomic writes never leave one): runs.csv gets the other two
@pytest.mark.parametrize("name,damage", [("runs.csv", "garbage"), ("runs.csv", "empty"), ("jobs.json", "garbage"),
                                         ("jobs.json", "truncated"), ("jobs.json", "empty")])
@pytest.mark.parametrize("command", ["eval", "report", "compare", "resume"])
def test_a_damaged_index_file_is_one_clear_error(folder: Path, tud_folder: Path, capsys, name: str,
                                                 damage: str, command: str) -> None:
    DAMAGE[damage](folder / name)
    argv = {"eval": ["eval", str(folder)], "report": ["report", str(folder)],
            "compare": ["compare", str(tud_folder), str(folder)],
            "resume": ["run", "--resume", str(folder), "-q", "--no-report"]}[command]
    rc, out, err = run_main(capsys, *argv)
    assert rc == 2, (out, err)
    assert f"error: {folder / name} is damaged" in err
    assert "fix:" in err


def test_eval_with_a_truncated_detections_file_scores_the_others_and_says_which(folder: Path, capsys) -> None:
    det = folder / "detections" / f"{JOB_A}.json"
    det.write_bytes(det.read_bytes()[:40])
    rc, out, err = run_main(capsys, "eval", str(folder))
    assert rc == 2
    assert f"error: {det} is damaged" in err and f"harness run --resume {folder}" in err
    acc = pd.read_csv(folder / "accuracy.csv")
    assert set(acc.job_id) == {JOB_B}  # the readable job was still scored
    runs = pd.read_csv(folder / "runs.csv").set_index("job_id")
    assert pd.isna(runs.loc[JOB_A, "ap50"]) and not pd.isna(runs.loc[JOB_B, "ap50"])


def test_a_full_disk_while_writing_env_json_is_one_clear_error(assets_root: Path, tmp_path: Path, capsys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system to simulate a full disk")
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        if Path(path).name.startswith(".env.json."):
            os.close(fd)
            return os.open("/dev/full", os.O_WRONLY), path
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    out = tmp_path / "out"
    rc, _, err = run_main(capsys, "run", "-b", FS, "--video", "tud-campus", "--frames", "2", "--executor", "inline",
                          *QUIET, "--out", str(out))
    assert rc == 2
    assert f"error: cannot write {out / 'env.json'}: No space left on device" in err and "fix:" in err
    assert json.loads((out / "jobs.json").read_text())["jobs"]  # what was written before stays whole


def test_compare_csv_under_a_file_is_one_clear_error(tud_folder: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    rc, out, err = run_main(capsys, "compare", str(tud_folder), str(tud_folder), "--csv", str(blocker / "c.csv"))
    assert rc == 2
    assert f"error: cannot write {blocker / 'c.csv'}" in err and "fix:" in err
    assert "0 regression(s)" in out  # the comparison itself was shown before the file failed


# 8, 9. compare and eval arguments ------------------------------------------------------------------------------

def test_compare_gate_fails_when_nothing_was_compared(folder: Path, tud_folder: Path, capsys) -> None:
    for name in ("runs.csv", "frames.csv"):
        df = pd.read_csv(folder / name)
        df["job_id"] = "other_" + df["job_id"]
        df.to_csv(folder / name, index=False)
    rc, out, err = run_main(capsys, "compare", str(tud_folder), str(folder), "--fail-above", "10")
    assert rc == 1
    assert "FAIL" in err and "nothing was compared" in err


@pytest.mark.parametrize("flag,value", [("--threshold", "-5"), ("--fail-above", "-1")])
def test_compare_refuses_negative_percentages(tud_folder: Path, capsys, flag: str, value: str) -> None:
    rc, out, err = run_main(capsys, "compare", str(tud_folder), str(tud_folder), flag, value)
    assert rc == 2 and f"error: {flag} must be a finite percentage >= 0, got {value}" in err


@pytest.mark.parametrize("iou", ["2", "-1", "0"])
def test_eval_refuses_an_iou_outside_0_1(folder: Path, capsys, iou: str) -> None:
    before = (folder / "agreement.csv").read_bytes()
    rc, out, err = run_main(capsys, "eval", str(folder), "--iou", iou)
    assert rc == 2 and f"error: --iou must be within (0, 1], got {float(iou):g}" in err
    assert (folder / "agreement.csv").read_bytes() == before


# 11. resume, the annotated video, integer columns -------------------------------------------------------------

def test_resume_reruns_a_job_whose_detections_are_damaged(folder: Path, capsys) -> None:
    det = folder / "detections" / f"{JOB_B}.json"
    kept = (folder / "detections" / f"{JOB_A}.json").read_bytes()
    det.write_bytes(det.read_bytes()[:25])
    rc, out, err = run_main(capsys, "run", "--resume", str(folder), "-q", "--no-report")
    assert rc == 0, err
    assert "(1 job(s) to run, 1 kept)" in err and f"{JOB_B}: its detections file is damaged" in err
    assert isinstance(json.loads(det.read_text()), list) and json.loads(det.read_text())
    assert (folder / "detections" / f"{JOB_A}.json").read_bytes() == kept


def test_a_failing_annotated_video_says_so_in_the_terminal(folder: Path, capsys) -> None:
    data = json.loads((folder / "jobs.json").read_text())
    for entry in data["jobs"]:  # the source video was moved away since the run
        entry["spec"]["source"] = "/nonexistent/moved.mp4"
        entry["info"]["source"]["path"] = "/nonexistent/moved.mp4"
    (folder / "jobs.json").write_text(json.dumps(data))
    rc, out, err = run_main(capsys, "report", str(folder), "--save-video")
    assert rc == 0  # the page is still written
    assert "warning: the annotated video could not be written" in err and "moved.mp4" in err
    assert (folder / "report.html").is_file() and not (folder / "annotated.mp4").exists()


def test_integer_columns_stay_integers_when_a_failed_row_is_added(assets_root: Path, tmp_path: Path) -> None:
    from harness.core.jobs import JobSpec
    from harness.results import ResultsWriter
    from harness.execution.runner import failure_result, run_job

    ok = run_job(JobSpec(backend=FS, source="tud-campus", frames=3, warmup=1))
    assert ok.status == "ok"
    writer = ResultsWriter(tmp_path)
    try:
        writer.add(ok)
        writer.add(failure_result(JobSpec(backend=FS, source="missing.mp4"), "failed", "AssetError: file not found"))
        writer.update_runs({ok.spec.job_id: {"ap": 0.25}})
    finally:
        getattr(writer, "close", lambda: None)()
    with open(tmp_path / "runs.csv", newline="") as fh:
        first, failed = list(csv.DictReader(fh))  # the text as written, not as pandas would parse it
    assert (first["frames"], first["frame_width"], first["frame_height"]) == ("3", "640", "480")
    assert first["ap"] == "0.25"
    assert failed["frames"] == "0" and failed["frame_width"] == ""


# the format ---------------------------------------------------------------------------------------------------

def _format_1_folder(folder: Path) -> list[dict]:
    """A folder as the harness wrote it before format 2: flat policy keys in each spec, per-job files named by
    the job id, no ``files`` or ``cwd`` in jobs.json."""
    (folder / "detections").mkdir(parents=True)
    (folder / "frames").mkdir()
    records = [{"frame": 0, "bbox": [10.0, 20.0, 30.0, 60.0], "score": 0.8, "category_id": 1},
               {"frame": 0, "bbox": [300.0, 20.0, 30.0, 60.0], "score": 0.6, "category_id": 1},
               {"frame": 1, "bbox": [12.0, 20.0, 30.0, 60.0], "score": 0.2, "category_id": 1}]
    (folder / "detections" / "tf1_old.json").write_text(json.dumps(records))
    frames = ("job_id,frame,decode_ms,pre_ms,infer_ms,post_ms,n_dets\n"
              "tf1_old,0,1.0,1.0,10.0,1.0,1\ntf1_old,1,1.0,1.0,10.0,1.0,0\n")
    (folder / "frames" / "tf1_old.csv").write_text(frames)
    (folder / "frames.csv").write_text(frames)
    spec = {"backend": "tf1", "source": "pets09-s2l1", "model": None, "device": "cpu", "frames": 2, "warmup": 1,
            "preprocess": "native", "threads": None, "options": {}, "record_threshold": 0.01,
            "score_threshold": 0.3, "top_k": 1, "classes": [1], "strict_device": False, "timeout_s": None,
            "job_id": "tf1_old"}
    info = {"frame_size": [768, 576], "model": {"model": "ssdlite-pedestrian", "label_space": "coco"}}
    (folder / "jobs.json").write_text(json.dumps({"schema_version": 1, "jobs": [
        {"spec": spec, "status": "ok", "cause": "", "info": info}]}))
    (folder / "runs.csv").write_text("job_id,backend,status,frames,frame_width\ntf1_old,tf1,ok,2,768\n")
    return records


def test_a_format_1_folder_still_loads_and_is_upgraded_when_a_run_writes_into_it(tmp_path: Path) -> None:
    import numpy as np

    from harness.core.policy import PostprocessPolicy
    from harness.results import SCHEMA_VERSION, ResultsWriter, load_run

    folder = tmp_path / "old"
    records = _format_1_folder(folder)
    job = load_run(folder).jobs["tf1_old"]
    assert job.spec.policy == PostprocessPolicy(0.01, 0.3, 1, (1,))
    assert job.finished and job.status == "ok" and job.decoded_frames == [0, 1]
    assert job.records == records and job.detections_path == folder / "detections" / "tf1_old.json"
    np.testing.assert_allclose(job.detections(0).boxes, [[10, 20, 40, 80], [300, 20, 330, 80]])
    shown = job.shown(0)  # the policy's top-1 of the boxes above 0.3
    assert len(shown) == 1 and float(shown.scores[0]) == pytest.approx(0.8)
    assert len(job.shown(1)) == 0 and len(job.detections(1)) == 1

    with ResultsWriter(folder) as writer:
        plan = writer.plan([job.spec])
    assert plan.kept == ["tf1_old"] and not plan.run
    data = json.loads((folder / "jobs.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["jobs"][0]["spec"]["policy"] == {"record_threshold": 0.01, "score_threshold": 0.3, "top_k": 1,
                                                 "classes": [1]}
    assert data["jobs"][0]["files"]["detections"] == "detections/tf1_old.json"
    assert (folder / "runs.csv").read_text() == "job_id,backend,status,frames,frame_width\ntf1_old,tf1,ok,2,768\n"
    assert load_run(folder).jobs["tf1_old"].records == records


def test_a_folder_from_a_newer_harness_is_refused_by_name(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "new"
    _format_1_folder(folder)
    data = json.loads((folder / "jobs.json").read_text())
    data["schema_version"] = 99
    (folder / "jobs.json").write_text(json.dumps(data))
    rc, _, err = run_main(capsys, "report", str(folder))
    assert rc == 2 and "has results format version 99" in err and "fix:" in err


def test_resume_of_an_older_folder_with_relative_paths_uses_the_paths_it_recorded(tmp_path: Path) -> None:
    """Before specs were stored absolute, a job kept the relative path it was given: --resume takes the
    absolute path a finished job on the same source recorded, or the folder the job was planned in."""
    from harness.results import load_run

    folder = tmp_path / "old"
    _format_1_folder(folder)
    data = json.loads((folder / "jobs.json").read_text())
    done = data["jobs"][0]
    done["spec"]["source"] = "in/clip.mp4"
    done["info"]["source"] = {"path": "/data/work/in/clip.mp4"}
    pending = {"spec": {**done["spec"], "device": "cpu:0", "job_id": "tf1_old_2"}, "status": "pending", "info": {}}
    planned = {"spec": {**done["spec"], "source": "../v/other.mp4", "model": "m/graph.pb", "job_id": "tf1_old_3"},
               "status": "pending", "info": {}, "cwd": "/data/work"}
    hub = {"spec": {**done["spec"], "model": "hub:some/model", "job_id": "tf1_old_4"}, "status": "pending", "info": {}}
    data["jobs"] += [pending, planned, hub]
    (folder / "jobs.json").write_text(json.dumps(data))
    specs = {s.job_id: s for s in load_run(folder).resume_specs()}
    assert specs["tf1_old"].source == specs["tf1_old_2"].source == "/data/work/in/clip.mp4"
    assert (specs["tf1_old_3"].source, specs["tf1_old_3"].model) == ("/data/v/other.mp4", "/data/work/m/graph.pb")
    assert specs["tf1_old_4"].model == "hub:some/model"  # a handle, not a file
