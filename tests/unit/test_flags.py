"""The command line's side of a run: `harness run` flags become a RunOverrides, then jobs.

A bad flag is one `error:` line and one `fix:` line with exit code 2, before anything runs (never a
traceback, never a job that measures something other than what was asked). No framework is needed here:
`--list` and job expansion import none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.commands.run import expand_jobs, overrides_from_args
from harness.core.device import DEVICE_FORMS, Device, is_accelerator
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.core.settings import logical_cpus
from harness.suites.overrides import RunOverrides

TB = "tests.helpers.stand_in_backends"


def jobs_of(*argv: str) -> list[JobSpec]:
    return expand_jobs(build_parser().parse_args(["run", *argv]))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_flag_a_suite_can_set_defaults_to_none() -> None:
    """"Not given" must be known without guessing, so a flag given with its default value still counts."""
    args = build_parser().parse_args(["run"])
    for dest in ("backend", "model", "video", "device", "frames", "warmup", "preprocess", "threads", "opt",
                 "score_threshold", "record_threshold", "top_k", "classes", "strict_device", "timeout"):
        assert getattr(args, dest) is None, dest
    assert overrides_from_args(args) == RunOverrides()
    assert RunOverrides().settings() == {}


def test_flag_jobs_take_their_defaults_from_jobspec_and_the_policy() -> None:
    (job,) = jobs_of("-b", "tf1")
    default = JobSpec(backend="tf1", source="pets09-s2l1")
    assert job == default and job.job_id == "tf1_ref_pets09-s2l1_cpu"
    (job,) = jobs_of("-b", "tf1", "--warmup", "2", "--score-threshold", "0.5", "--top-k", "7", "--classes", "1,3",
                     "--timeout", "0", "--strict-device", "--opt", "inter_op_threads=1", "--threads", "1")
    assert (job.warmup, job.timeout_s, job.strict_device, job.options, job.threads) == (2, 0.0, True, {"inter_op_threads": 1}, 1)
    assert (job.policy.score_threshold, job.policy.top_k, job.policy.classes) == (0.5, 7, (1, 3))
    assert job.policy.record_threshold == default.policy.record_threshold


def test_video_and_model_repeat_as_matrix_axes() -> None:
    """`--video a --video b` used to run only b."""
    jobs = jobs_of("-b", "tf1", "-b", "opencv", "-v", "pets09-s2l1", "--video", "tud-campus",
                   "-m", "reference", "--model", "ssdlite-pedestrian", "-d", "cpu", "-d", "gpu")
    assert len(jobs) == 2 * 2 * 2 * 2
    assert {(j.backend, j.model, j.source, j.device) for j in jobs} == {
        (b, m, v, d) for b in ("tf1", "opencv") for m in (None, "ssdlite-pedestrian")
        for v in ("pets09-s2l1", "tud-campus") for d in ("cpu", "gpu")}
    assert len({j.job_id for j in jobs}) == 16


def test_two_videos_of_one_name_are_refused_not_overwritten(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "clip.mp4").write_bytes(b"")
    with pytest.raises(HarnessError, match="two jobs would share the id tf1_ref_clip.mp4_cpu"):
        jobs_of("-b", "tf1", "-v", str(tmp_path / "a" / "clip.mp4"), "-v", str(tmp_path / "b" / "clip.mp4"))


def test_relative_paths_on_the_command_line_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative path used to be resolved later, against whatever folder the worker (or --resume) ran in."""
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    (tmp_path / "m.onnx").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    jobs = jobs_of("-b", "onnxruntime", "-v", "clips/a.mp4", "-v", "pets09-s2l1", "-m", "m.onnx", "-v", "no/such.mp4")
    by_source = {j.source: j for j in jobs}
    assert set(by_source) == {str(tmp_path / "clips" / "a.mp4"), "pets09-s2l1", str(tmp_path / "no" / "such.mp4")}
    job = by_source[str(tmp_path / "clips" / "a.mp4")]
    assert job.model == str(tmp_path / "m.onnx")
    assert job.job_id == "onnxruntime_m.onnx_a.mp4_cpu"  # the id keeps the short names
    monkeypatch.chdir("/")
    assert JobSpec.from_dict(job.to_dict()).source == str(tmp_path / "clips" / "a.mp4")


# usage errors ---------------------------------------------------------------------------------------------

BAD_FLAGS = [
    (["--classes", "abc"], "--classes 'abc': 'abc' is not an integer class id"),
    (["--classes", "1,,2"], "--classes '1,,2': an empty class id"),
    (["--classes", "99999999999999999999"], "--classes 99999999999999999999: expected a list of integer class ids "
                                            "from 0 to 2147483647"),
    (["--classes=-1"], "--classes -1: expected a list of integer class ids from 0"),
    (["--frames", "0"], "--frames 0: expected a positive integer (frames per job)"),
    (["--warmup", "-1"], "--warmup -1: expected an integer >= 0"),
    (["--timeout", "-5"], "--timeout -5: expected a number of seconds >= 0 (0 = no limit)"),
    (["--threads", "0"], "--threads 0: expected a positive integer (intra-op threads)"),
    (["--score-threshold", "1.5"], "--score-threshold 1.5: expected a number in [0, 1]"),
    (["--top-k", "0"], "--top-k 0: expected a positive integer"),
    (["--device", "tpu"], "--device tpu: unknown device 'tpu'"),
    (["--device", "gpu:x"], "--device gpu:x: unknown device 'gpu:x'"),
    (["--opt", "novalue"], "option 'novalue' is not key=value"),
]


@pytest.mark.parametrize("argv, problem", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], problem: str) -> None:
    code, out, err = cli(capsys, "-b", "tf1", *argv, "--list")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == f"error: {problem}" or lines[0].startswith(f"error: {problem}"), err
    assert len(lines) == 2 and lines[1].startswith("  fix: "), err


def test_a_bad_flag_next_to_a_suite_is_refused_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text('[matrix]\nbackends = ["tf1"]\n')
    code, _, err = cli(capsys, str(suite), "--frames", "0", "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("error: --frames 0: ")
    assert not (tmp_path / "out").exists(), "nothing runs after a usage error"


def test_an_unknown_device_lists_the_valid_forms(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "-b", "tf1", "--device", "tpu", "--strict-device", "--out", str(tmp_path / "out"))
    assert code == 2 and "error: --device tpu: unknown device 'tpu'" in err
    assert "cpu, gpu, gpu:N, cuda, cuda:N, cuda_fp16, opencl, opencl_fp16, vulkan, npu" in err
    assert not (tmp_path / "out").exists()


def test_the_device_forms_backends_read_stay_valid() -> None:
    forms = ["cpu", "gpu", "gpu:1", "cuda", "cuda:0", "cuda_fp16", "opencl", "opencl_fp16", "vulkan", "npu"]
    assert [Device(d) for d in forms] == forms
    assert Device(" GPU:1 ") == "gpu:1"
    assert [is_accelerator(d) for d in forms] == [False] + [True] * 9
    jobs = jobs_of("-b", "opencv", *[a for d in forms for a in ("-d", d)])
    assert [j.device for j in jobs] == forms and [j.job_id for j in jobs][2] == "opencv_ref_pets09-s2l1_gpu-1"
    assert set(DEVICE_FORMS) >= {"cpu", "gpu", "gpu:N", "cuda:N", "cuda_fp16", "opencl"}
    assert Device("cpu:0") == "cpu:0" and not is_accelerator("cpu:0")  # TensorFlow's spelling
    for bad in ("tpu", "gpu:", "gpu:-1", "cuda_fp32", "", "cpu_fp16", "gpu0"):
        with pytest.raises(HarnessError, match="unknown device"):
            Device(bad)


def test_a_spec_made_in_code_gets_the_same_checks() -> None:
    with pytest.raises(HarnessError, match="unknown device 'tpu'"):
        JobSpec(backend="tf1", source="pets09-s2l1", device="tpu")
    with pytest.raises(HarnessError, match="frames 0: expected a positive integer"):
        JobSpec(backend="tf1", source="pets09-s2l1", frames=0)
    with pytest.raises(HarnessError, match="threads 0"):
        JobSpec(backend="tf1", source="pets09-s2l1", threads=0)


def test_more_threads_than_cpus_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    many = logical_cpus() + 1
    code, out, err = cli(capsys, "-b", "tf1", "--threads", str(many), "--list")
    assert code == 0 and f"threads={many}" in out
    assert err.startswith(f"warning: {many} threads on {logical_cpus()} logical CPU(s)")
    code, _, err = cli(capsys, "-b", "tf1", "--threads", "1", "--list")
    assert code == 0 and err == ""


def test_list_shows_each_jobs_effective_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-b", "tf1", "-b", "opencv", "--top-k", "5", "--opt", "target=opencl", "--list")
    assert code == 0 and out.startswith("2 job(s):")
    block = out.split("opencv_ref_pets09-s2l1_cpu", 1)[1]
    for word in ("backend=opencv", "model=reference", "video=pets09-s2l1", "device=cpu", "frames=all", "warmup=10",
                 "preprocess=native", "threads=framework-default", "score_threshold=0.3", "record_threshold=0.01",
                 "top_k=5", "classes=all", "strict_device=no", "timeout=3600s", "options: target=opencl"):
        assert word in block, word


def test_a_backend_can_refuse_unknown_options_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    backend = f"{TB}:OptionCheckingDetector"
    assert [j.options for j in jobs_of("-b", backend, "--opt", "delay_s=0")] == [{"delay_s": 0}]
    code, _, err = cli(capsys, "-b", backend, "-b", "tf1", "--opt", "bogus=1", "--list")
    assert code == 2
    # a command-line option goes to the backends that declare it; one that none of them reads is refused
    assert err.startswith("error: no backend of this run reads --opt bogus") and "backend-options.md" in err
    # a backend that cannot be found is not an expansion error: it fails as its own row when it runs
    assert [j.backend for j in jobs_of("-b", "harness.core.detector:NoSuchClass", "--opt", "x=1")] == [
        "harness.core.detector:NoSuchClass"]


def test_no_framework_is_imported_by_expansion() -> None:
    import subprocess
    import sys

    code = ("import sys; from harness.commands.run import expand_jobs; from harness.cli import build_parser; "
            "expand_jobs(build_parser().parse_args(['run', '-b', 'tf1', '-b', 'torch', '-b', 'opencv', '-v', 'x.mp4']));"
            "print(sorted(m for m in ('tensorflow', 'torch', 'cv2', 'onnxruntime') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
