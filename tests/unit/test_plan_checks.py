"""What can be known before a run is refused before it: one ``error:`` + ``fix:``, exit 2, no results folder.

Each case is one a hostile user tried: a byte-identical copy of the scored video as the calibration source,
a one-frame calibration video, a batch of 1000 from 30 frames, 100,000 streams, a rate at which the run
outlasts its timeout, a mistyped asset name, a missing path, a misspelt backend, flags given with --resume.
And the one that cannot be known before: a job that outgrows its memory ceiling dies alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.core.errors import HarnessError

ROOT = Path(__file__).resolve().parents[2]
TB = "tests.helpers.stand_in_backends"


def _harness(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def _refused(proc: subprocess.CompletedProcess, out: Path, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "fix:" in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]
    assert not out.exists(), "a refused run must not make its results folder"


@pytest.fixture
def tud_video(assets_root: Path) -> Path:
    return assets_root / "videos" / "tud-campus" / "TUD-Campus.mp4"


# calibration ------------------------------------------------------------------------------------------------
def test_calibration_on_a_byte_identical_copy_of_the_scored_video_is_refused_before_the_run(
        tmp_path: Path, pets_video: Path) -> None:
    copy = tmp_path / "copy.avi"
    shutil.copyfile(pets_video, copy)
    out = tmp_path / "out"
    proc = _harness("run", "-b", "onnxruntime", "--precision", "int8", "--opt", f"calibration={copy}",
                    "--video", str(pets_video), "--frames", "5", "--out", str(out), "-q", "--no-report")
    _refused(proc, out, "holds the same frames as", "compared by content", "calibrate on another source")


def test_a_one_frame_calibration_video_is_refused(tmp_path: Path, pets_video: Path) -> None:
    import cv2

    cap = cv2.VideoCapture(str(pets_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    one = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(one), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    proc = _harness("run", "-b", "onnxruntime", "--precision", "int8", "--opt", f"calibration={one}",
                    "--frames", "5", "--out", str(out), "-q", "--no-report")
    _refused(proc, out, "has 1 usable frame(s)", "needs at least 10")


def test_the_calibration_record_says_the_frames_actually_used(tud_video: Path) -> None:
    from harness.data.calibration import CalibrationSplit

    record = CalibrationSplit(str(tud_video), 500).record()
    assert record["frames"] == 71 and record["requested_frames"] == 500
    assert record["describe"].endswith("frames 0-70")
    assert CalibrationSplit(str(tud_video), 20).record()["describe"].endswith("frames 0-19")
    # the variant's cache key follows the frames used: asking 500 or 71 of a 71-frame source is one variant
    assert CalibrationSplit(str(tud_video), 500).key() == CalibrationSplit(str(tud_video), 71).key()


def test_an_image_folder_sharing_images_with_the_scored_folder_is_refused(tmp_path: Path, assets_root: Path) -> None:
    from harness.data.calibration import CalibrationSplit, check_plan_calibration

    coco = assets_root / "images" / "coco128"
    images = sorted(p for p in coco.rglob("*.jpg"))[:12]
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, image in enumerate(images):
        shutil.copyfile(image, calib / f"renamed-{i}.jpg")  # other names, same bytes
    scored = tmp_path / "scored"
    scored.mkdir()
    shutil.copyfile(images[5], scored / "x.jpg")
    with pytest.raises(HarnessError, match="holds the same frames as mine"):
        check_plan_calibration(CalibrationSplit(str(calib), 12), {"mine": scored}, "job")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(sorted(coco.rglob("*.jpg"))[40], other / "y.jpg")
    check_plan_calibration(CalibrationSplit(str(calib), 12), {"other": other}, "job")  # no shared image: fine


# resources --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, needles", [
    (["--scenario", "offline", "--batch", "1000", "--frames", "30"], ["batch 1000 is larger than the 30 frames"]),
    (["--scenario", "multi-stream", "--streams", "100000"], ["100000 streams"]),
    (["--scenario", "offline", "--batch", "5000", "--min-frames", "6000"], ["needs about", "MB available now"]),
    (["--scenario", "server", "--qps", "0.001", "--frames", "30"], ["--qps 0.001", "about 8 hours",
                                                                     "longer than its 3600 s timeout"]),
    (["--scenario", "server", "--qps", "1e-9", "--frames", "30"], ["qps 1e-09", "not a rate the harness can time"]),
    (["--scenario", "realtime", "--fps", "0.001", "--frames", "30", "--timeout", "60"],
     ["--fps 0.001", "longer than its 60 s timeout"]),
    (["--min-duration", "2h", "--timeout", "60"], ["--min-duration 7200s", "longer than its 60 s timeout"]),
])
def test_resource_bounds_are_refused_before_the_folder_exists(tmp_path: Path, pets_video: Path, flags: list,
                                                              needles: list) -> None:
    out = tmp_path / "out"
    proc = _harness("run", "-b", "onnxruntime", "--video", str(pets_video), *flags, "--out", str(out), "-q",
                    "--no-report")
    _refused(proc, out, *needles)


def test_a_job_over_its_memory_ceiling_dies_alone_and_the_next_job_runs(tmp_path: Path, pets_video: Path) -> None:
    """A ceiling low enough for torch's worker (its libraries alone pass it) and high enough for the
    FrameStats test backend: the torch row says why it stopped; the other job is measured."""
    out = tmp_path / "out"
    proc = _harness("run", "-b", "torch", "-b", f"{TB}:FrameStatsDetector", "--video", str(pets_video),
                    "--frames", "3", "--out", str(out), "-q", "--no-report",
                    env={"HARNESS_MEMORY_LIMIT_MB": "450"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = pd.read_csv(out / "runs.csv").set_index("backend")
    torch_row = rows.loc["torch"]
    assert torch_row.status == "crashed"
    assert torch_row.cause.startswith("memory limit: the job's processes held")
    assert "over the 450 MB ceiling" in torch_row.cause
    assert rows.loc[f"{TB}:FrameStatsDetector"].status == "ok"


def test_a_malformed_memory_ceiling_is_refused_before_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _harness("run", "-b", f"{TB}:FrameStatsDetector", "--frames", "2", "--out", str(out), "-q",
                    "--no-report", env={"HARNESS_MEMORY_LIMIT_MB": "lots"})
    _refused(proc, out, "HARNESS_MEMORY_LIMIT_MB='lots'")


# names, paths, flags -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, needles", [
    (["-b", "onxruntime"], ["unknown backend 'onxruntime'", "Did you mean 'onnxruntime'"]),
    (["-b", "onnxruntime", "--video", "pets09-s2l"], ["'pets09-s2l' is neither a file here nor an asset name",
                                                      "Did you mean 'pets09-s2l1'"]),
    (["-b", "onnxruntime", "--video", "/no/such/video.mp4"], ["video/image folder not found: /no/such/video.mp4"]),
    (["-b", "onnxruntime", "--model", "/no/such/model.onnx"], ["model file not found: /no/such/model.onnx"]),
])
def test_names_and_paths_are_checked_before_the_folder_exists(tmp_path: Path, flags: list, needles: list) -> None:
    out = tmp_path / "out"
    _refused(_harness("run", *flags, "--frames", "2", "--out", str(out), "-q", "--no-report"), out, *needles)


def test_resume_refuses_flags_it_would_ignore(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    first = _harness("run", "-b", f"{TB}:FrameStatsDetector", "--frames", "2", "--out", str(folder), "-q",
                     "--no-report")
    assert first.returncode == 0, first.stderr[-2000:]
    before = (folder / "runs.csv").read_bytes()
    for flags in (["--frames", "50"], ["-b", "onnxruntime"], ["--scenario", "offline", "--batch", "4"]):
        proc = _harness("run", "--resume", str(folder), *flags, "-q", "--no-report")
        assert proc.returncode == 2 and "would be ignored" in proc.stderr and flags[0] in proc.stderr
    assert (folder / "runs.csv").read_bytes() == before
