"""Bad input gets one clear message naming the problem (and the fix), as a failed row of its own, and the
results of earlier jobs of the suite stay exactly as they were. Odd but valid frames (grayscale, 4-channel,
16-bit, tiny, huge) just work with the real TF1 model."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core.errors import HarnessError
from harness.core.jobs import JobResult, JobSpec
from harness.results import SCHEMA_VERSION, ResultsWriter, atomic_write_text
from harness.execution.runner import run_job
from tests.conftest import requires_tf

pytestmark = requires_tf
ROOT = Path(__file__).resolve().parents[2]
TB = "tests.helpers.stand_in_backends"


def _value(v: object) -> object:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)
    return None if f != f else f


class Suite:
    """A results folder holding one real, finished tf1 job; each test adds a bad job after it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.writer = ResultsWriter(out)
        first = run_job(JobSpec(backend="tf1", source="pets09-s2l1", frames=8, warmup=1))
        assert first.status == "ok" and first.detections, first.cause
        self.writer.add(first)
        self.first = first.spec.job_id
        self.snapshot = self._state()

    def _state(self) -> tuple:
        det = self.out / "detections" / f"{self.first}.json"
        frames = self.out / "frames" / f"{self.first}.csv"
        row = pd.read_csv(self.out / "runs.csv").set_index("job_id").loc[self.first]
        # by value: a later row with an empty cell may turn this row's 768 into 768.0 in the CSV text
        values = {k: v for k, v in row.items() if k in self.columns} if hasattr(self, "columns") else dict(row)
        self.columns = list(values)
        return (hashlib.sha256(det.read_bytes()).hexdigest(), frames.read_bytes(),
                {k: _value(v) for k, v in values.items()})

    def add(self, spec: JobSpec) -> JobResult:
        """Run a job after the first one, persist it, and check the first job's results are untouched."""
        assert spec.job_id != self.first, "give the bad job an id of its own"
        result = run_job(spec)
        self.writer.add(result)
        assert self._state() == self.snapshot, "an earlier job's results changed"
        runs = pd.read_csv(self.out / "runs.csv", keep_default_na=False).set_index("job_id")
        assert runs.loc[spec.job_id, "status"] == result.status
        assert runs.loc[spec.job_id, "cause"] == result.cause
        return result


@pytest.fixture(scope="module")
def suite(tmp_path_factory, assets_root) -> Suite:
    return Suite(tmp_path_factory.mktemp("suite") / "out")


@pytest.fixture(scope="module")
def pets(assets_root) -> Path:
    from harness.data.assets import resolve

    return resolve("pets09-s2l1")


@pytest.fixture(scope="module")
def graph(assets_root) -> Path:
    from harness.data.models import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL, role="graph").path


def failed(suite: Suite, **kw) -> str:
    kw.setdefault("backend", "tf1")
    kw.setdefault("source", "pets09-s2l1")
    kw.setdefault("job_id", f"bad-{os.environ.get('PYTEST_CURRENT_TEST', '').split('::')[-1].split(' ')[0]}")
    result = suite.add(JobSpec(frames=3, warmup=1, **kw))
    assert result.status == "failed", result.cause
    assert result.summary["frames"] == 0 and not result.detections
    return result.cause


# videos ---------------------------------------------------------------------------------------------------

def test_missing_video(suite: Suite, tmp_path: Path) -> None:
    cause = failed(suite, source=str(tmp_path / "no-such.avi"))
    assert cause.startswith("AssetError: file not found: ") and "no-such.avi" in cause and "fix:" in cause


def test_empty_video(suite: Suite, tmp_path: Path) -> None:
    (tmp_path / "empty.avi").write_bytes(b"")
    cause = failed(suite, source=str(tmp_path / "empty.avi"))
    assert cause.startswith("SourceError: video is empty (0 bytes)")


def test_video_cut_inside_its_header(suite: Suite, tmp_path: Path, pets: Path) -> None:
    (tmp_path / "cut.avi").write_bytes(pets.read_bytes()[:4096])
    cause = failed(suite, source=str(tmp_path / "cut.avi"))
    assert cause.startswith("SourceError: OpenCV cannot open the video") and "corrupt" in cause


def test_truncated_video_measures_what_decodes_and_says_so(suite: Suite, tmp_path: Path, pets: Path) -> None:
    (tmp_path / "truncated.avi").write_bytes(pets.read_bytes()[:300_000])
    result = suite.add(JobSpec(backend="tf1", source=str(tmp_path / "truncated.avi"), frames=None, warmup=1,
                                job_id="truncated"))
    assert result.status == "ok"
    decoded = result.summary["frames"]
    assert 0 < decoded < 795 and {d["frame"] for d in result.detections} <= set(range(decoded))
    assert f"the source ended after {decoded} of the 795 frames it declares (truncated or damaged file?)" in result.cause


def test_truncated_note_names_the_declared_count_not_the_frames_limit(suite: Suite, tmp_path: Path, pets: Path) -> None:
    """With --frames the note used to call min(--frames, declared) "the frames it declares"."""
    (tmp_path / "truncated.avi").write_bytes(pets.read_bytes()[:300_000])
    result = suite.add(JobSpec(backend=f"{TB}:FrameStatsDetector", source=str(tmp_path / "truncated.avi"), frames=100,
                               warmup=1, job_id="truncated-with-frames"))
    decoded = result.summary["frames"]
    assert result.status == "ok" and 0 < decoded < 100
    assert f"the source ended after {decoded} of the 795 frames it declares" in result.cause
    assert result.info["source_short"] == {"decoded": decoded, "declared": 795, "requested": 100}
    enough = suite.add(JobSpec(backend=f"{TB}:FrameStatsDetector", source=str(tmp_path / "truncated.avi"),
                               frames=decoded, warmup=1, job_id="truncated-within-frames"))
    assert enough.status == "ok" and enough.cause == ""  # all the frames asked for decoded: nothing to note


def test_a_device_file_is_not_called_an_empty_video(suite: Suite) -> None:
    """/dev/zero has size 0: it used to be reported as "video is empty (0 bytes)"."""
    cause = failed(suite, source="/dev/zero")
    assert cause.startswith("SourceError: /dev/zero is a character device, not a video file")
    assert "fix: give a video file, a folder of images, or an asset name" in cause


def test_a_named_pipe_is_not_opened_as_a_video(suite: Suite, tmp_path: Path) -> None:
    """Opening a FIFO with OpenCV would wait for a writer forever; it used to be called a 0-byte video."""
    fifo = tmp_path / "stream.avi"
    os.mkfifo(fifo)
    cause = failed(suite, source=str(fifo))
    assert cause.startswith(f"SourceError: {fifo} is a named pipe (FIFO), not a video file")


def test_corrupt_video(suite: Suite, tmp_path: Path) -> None:
    (tmp_path / "noise.avi").write_bytes(np.random.default_rng(0).bytes(200_000))
    cause = failed(suite, source=str(tmp_path / "noise.avi"))
    assert cause.startswith("SourceError: OpenCV cannot open the video") and "fix: re-encode it" in cause


def test_unknown_source_asset_suggests_close_names(suite: Suite) -> None:
    cause = failed(suite, source="pets09-s2")
    assert "unknown asset 'pets09-s2'. Did you mean 'pets09-s2l1'?" in cause


# image folders and odd frames ------------------------------------------------------------------------------

def test_image_folder_with_a_non_image_file(suite: Suite, tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    cause = failed(suite, source=str(folder))
    assert "holds files that are not images: notes.txt" in cause and "fix: move them out" in cause


def test_image_that_does_not_decode(suite: Suite, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff this is no jpeg")
    cause = failed(suite, source=str(folder))
    assert cause.startswith("SourceError: cannot decode image") and "a.jpg" in cause


def _frames_from_pets(pets: Path, n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(pets))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


@pytest.mark.parametrize("kind", ["gray", "bgra", "16bit", "tiny", "huge"])
def test_odd_frames_run_through_tf1(suite: Suite, tmp_path: Path, pets: Path, kind: str) -> None:
    import cv2

    folder = tmp_path / kind
    folder.mkdir()
    frames = _frames_from_pets(pets, 2)
    for i, bgr in enumerate(frames):
        image = {
            "gray": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
            "bgra": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
            "16bit": lambda: bgr.astype(np.uint16) * 257,
            "tiny": lambda: cv2.resize(bgr, (16, 16), interpolation=cv2.INTER_AREA),
            "huge": lambda: cv2.resize(bgr, (4000, 3000), interpolation=cv2.INTER_LINEAR),
        }[kind]()
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    result = suite.add(JobSpec(backend="tf1", source=str(folder), warmup=1, job_id=f"frames-{kind}"))
    assert result.status == "ok", result.cause
    assert result.summary["frames"] == 2 and [f["frame"] for f in result.frames] == [0, 1]
    width, height = {"tiny": (16, 16), "huge": (4000, 3000)}.get(kind, (768, 576))
    assert (result.summary["frame_width"], result.summary["frame_height"]) == (width, height)
    for d in result.detections:  # boxes in pixels of the frame as given
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= width + 0.01 and y + h <= height + 0.01
    if kind != "tiny":  # people are still found in the same scene, whatever the pixel format or size
        assert sum(d["score"] >= 0.5 for d in result.detections) >= 4


# models ---------------------------------------------------------------------------------------------------

def test_missing_model(suite: Suite, tmp_path: Path) -> None:
    cause = failed(suite, model=str(tmp_path / "nope.pb"))
    assert cause.startswith("ModelError: model not found") and "nope.pb" in cause


def test_unknown_model_asset(suite: Suite) -> None:
    cause = failed(suite, model="ssdlite-pedestrain")
    assert cause.startswith("ModelError: model not found: ssdlite-pedestrain") and "ssdlite-pedestrian" in cause


def test_truncated_model(suite: Suite, tmp_path: Path, graph: Path) -> None:
    (tmp_path / "cut.pb").write_bytes(graph.read_bytes()[:300_000])
    cause = failed(suite, model=str(tmp_path / "cut.pb"))
    assert "cut.pb is not a TensorFlow frozen graph" in cause


def test_model_of_the_wrong_kind(suite: Suite, assets_root: Path) -> None:
    tflite = assets_root / "models" / "tflite-coco-ssd-mobilenet-v1-quant" / "detect.tflite"
    cause = failed(suite, model=str(tflite))
    assert "detect.tflite is not a TensorFlow frozen graph" in cause and "a .tflite to --backend tflite" in cause


def test_model_graph_without_the_named_tensors(suite: Suite) -> None:
    cause = failed(suite, options={"boxes": "no_such_tensor:0"})
    assert "tensor not in the graph" in cause and "no_such_tensor" in cause and "placeholders: image_tensor" in cause


@pytest.mark.parametrize("options", [{"boxes": "detection_scores:0"}, {"num": "detection_boxes:0"}],
                         ids=["boxes-are-scores", "num-is-boxes"])
def test_model_outputs_that_do_not_fit_the_convention(suite: Suite, options: dict) -> None:
    cause = failed(suite, options=options)
    assert cause.startswith("ModelError: the model's outputs don't fit the Object Detection API layout")
    assert "expected boxes [1,N,4]" in cause


# backends -------------------------------------------------------------------------------------------------

def test_backend_whose_framework_is_missing(suite: Suite) -> None:
    cause = failed(suite, backend=f"{TB}:MissingFrameworkDetector")
    assert cause.startswith("BackendUnavailable: backend") and "needs harness_no_such_framework" in cause


def test_backend_spec_that_does_not_import(suite: Suite) -> None:
    cause = failed(suite, backend="tests.no_such_module:Detector")
    assert cause.startswith("BackendUnavailable: backend 'tests.no_such_module:Detector' cannot be imported")


def test_unknown_backend_suggests_close_names(suite: Suite) -> None:
    cause = failed(suite, backend="tf11")
    assert "unknown backend 'tf11'. Did you mean 'tf1'" in cause and "choose one of:" in cause


def test_backend_class_that_does_not_exist(suite: Suite) -> None:
    cause = failed(suite, backend="harness.core.detector:NoSuchClass")
    assert cause.startswith("HarnessError: backend 'harness.core.detector:NoSuchClass': harness.core.detector has no "
                            "attribute 'NoSuchClass'") and "fix: check the class name in harness.core.detector" in cause


def test_backend_class_that_does_not_exist_through_the_command_line(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "-b", "harness.core.detector:NoSuchClass", "--frames", "2",
         "--executor", "inline", "--out", str(tmp_path / "out"), "-q", "--no-report"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("FAILED NoSuchClass_ref_pets09-s2l1_cpu: HarnessError: backend 'harness.core.detector:NoSuchClass': "
            "harness.core.detector has no attribute 'NoSuchClass'") in proc.stderr


def test_more_threads_than_cpus_runs_and_is_recorded(suite: Suite) -> None:
    from harness.core.settings import logical_cpus

    many = logical_cpus() + 1
    result = suite.add(JobSpec(backend=f"{TB}:FrameStatsDetector", source="pets09-s2l1", frames=3, warmup=1,
                               threads=many, job_id="threads-over-cpus"))
    assert result.status == "ok" and result.summary["threads"] == many
    assert result.cause.startswith(f"note: {many} threads on {logical_cpus()} logical CPU(s)")
    assert result.info["threads_oversubscribed"] == {"threads": many, "logical_cpus": logical_cpus()}


def test_a_missing_video_through_the_command_line_is_refused_before_the_run(tmp_path: Path) -> None:
    """Knowable before the run, so no folder and no FAILED row: one error and exit 2 (harness.suites.checks)."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--backend", f"{TB}:FrameStatsDetector", "--video",
         str(tmp_path / "missing.mp4"), "--out", str(out), "-q", "--no-report"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"video/image folder not found: {tmp_path / 'missing.mp4'}" in proc.stderr
    assert not out.exists()


# the results folder ---------------------------------------------------------------------------------------

def test_results_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")  # root can write anywhere, but not under a regular file
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--backend", f"{TB}:FrameStatsDetector", "--out",
         str(blocker / "sub"), "-q", "--no-report"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"error: cannot write results to {blocker / 'sub'}: Not a directory" in proc.stderr
    assert "fix: choose another folder with --out" in proc.stderr
    assert "Traceback" not in proc.stderr


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every atomic write hit a full disk: the temp file's descriptor is /dev/full (ENOSPC on write)."""
    import harness.results as results

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system to simulate a full disk")
    real = results.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(results.tempfile, "mkstemp", mkstemp)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "runs.csv"
    atomic_write_text(target, "job_id,status\na,ok\n")
    _disk_full(monkeypatch)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "job_id,status\na,ok\nb,ok\n")
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "job_id,status\na,ok\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]  # no temp file left behind


def test_full_disk_during_a_suite_is_one_clear_error(suite: Suite, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    spec = JobSpec(backend=f"{TB}:FrameStatsDetector", source="pets09-s2l1", frames=3, warmup=1)
    result = run_job(spec)
    assert result.status == "ok"
    _disk_full(monkeypatch)
    with pytest.raises(HarnessError) as info:
        suite.writer.add(result)
    assert "No space left on device" in info.value.problem
    assert f"harness run --resume {suite.out}" in (info.value.fix or "")
    monkeypatch.undo()
    assert suite._state() == suite.snapshot
    assert json.loads((suite.out / "jobs.json").read_text())["schema_version"] == SCHEMA_VERSION
