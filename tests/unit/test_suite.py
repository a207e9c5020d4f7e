"""Suite files: expansion of the matrix, per-entry overrides, command-line overrides, and errors that name
the file, the line or key, and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suites import expand as suite_mod
from harness.cli import build_parser
from harness.commands.run import overrides_from_args
from harness.core.errors import HarnessError
from harness.suites.overrides import RunOverrides
from harness.suites.expand import default_suite, load_suite


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def run_args(*argv: str) -> RunOverrides:
    """The real `harness run` parser and the real conversion, so overrides are what users get."""
    return overrides_from_args(build_parser().parse_args(["run", *argv]))


MATRIX = """
[defaults]
frames = 50
warmup = 3
preprocess = "shared"
options = { a = 1 }

[matrix]
backends = ["tf1", { name = "opencv", target = "opencl", tag = "ocl", options = { b = 2 } }]
models = ["reference", "some-model"]
videos = ["pets09-s2l1", { name = "tud-campus", frames = 71 }]
devices = ["cpu"]
"""


def test_matrix_expands_to_the_product_with_overrides(tmp_path: Path) -> None:
    jobs = load_suite(write(tmp_path, MATRIX))
    assert len(jobs) == 2 * 2 * 2 * 1
    by_id = {j.job_id: j for j in jobs}
    assert len(by_id) == 8
    ocl = by_id["opencv_some-model_tud-campus_cpu_shared_ocl"]
    assert ocl.backend == "opencv" and ocl.model == "some-model" and ocl.source == "tud-campus"
    assert ocl.frames == 71 and ocl.warmup == 3 and ocl.preprocess == "shared"
    assert ocl.options == {"a": 1, "b": 2, "target": "opencl"}  # options tables merge, target goes into options
    ref = by_id["tf1_ref_pets09-s2l1_cpu_shared"]
    assert ref.model is None and ref.frames == 50 and ref.options == {"a": 1}


def test_jobs_excludes_input_size_and_classes(tmp_path: Path) -> None:
    text = """
[matrix]
backends = ["tf1", "tflite"]
devices = ["cpu", "gpu"]
[[exclude]]
backend = "tflite"
[[exclude]]
device = "gpu"
[[job]]
backend = "tflite"
model = "tflite-coco-ssd-mobilenet-v1-quant"
classes = [1]
input_size = [320, 240]
dnn_backend = "cuda"
score_threshold = 0.5
timeout = 60
"""
    jobs = load_suite(write(tmp_path, text))
    assert [j.job_id for j in jobs] == ["tf1_ref_pets09-s2l1_cpu", "tflite_tflite-coco-ssd-mobilenet-v1-quant_pets09-s2l1_cpu"]
    lite = jobs[1]
    assert lite.policy.classes == (1,) and lite.policy.score_threshold == 0.5 and lite.timeout_s == 60.0
    assert lite.options == {"input_size": "320x240", "backend": "cuda"}


def test_command_line_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, MATRIX)
    jobs = load_suite(path, overrides=run_args(str(path), "--frames", "7", "--backend", "opencv", "--device", "gpu",
                                                 "--video", "tud-campus", "--opt", "c=3", "--score-threshold", "0.4"))
    assert {j.backend for j in jobs} == {"opencv"}
    assert {j.device for j in jobs} == {"gpu"} and {j.source for j in jobs} == {"tud-campus"}
    assert all(j.frames == 7 and j.policy.score_threshold == 0.4 and j.options["c"] == 3 for j in jobs)
    assert len(jobs) == 2  # two models
    # flags left at their defaults do not override the suite
    same = load_suite(path, overrides=run_args(str(path)))
    assert {j.warmup for j in same} == {3} and {j.frames for j in same} == {50, 71}


def test_when_conditions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
[matrix]
backends = ["tf1", "not-a-backend"]
devices = ["cpu", { name = "gpu", when = "gpu-ready" }]
[[job]]
backend = "not-a-backend"
tag = "x"
when = "installed"
"""
    path = write(tmp_path, text)
    monkeypatch.setattr(suite_mod, "installed_backends", lambda: ["tf1"])
    monkeypatch.setattr(suite_mod, "gpu_ready", lambda backend: backend == "tf1")
    ids = [j.job_id for j in load_suite(path)]
    # the [[job]] is skipped (not installed); the matrix's not-a-backend jobs stay: they fail with a cause at run time
    assert ids == ["tf1_ref_pets09-s2l1_cpu", "tf1_ref_pets09-s2l1_gpu", "not-a-backend_ref_pets09-s2l1_cpu"]
    # --device gpu asks for the GPU by name, whatever the doctor says
    ids = [j.job_id for j in load_suite(path, overrides=run_args(str(path), "--device", "gpu"))]
    assert ids == ["tf1_ref_pets09-s2l1_gpu", "not-a-backend_ref_pets09-s2l1_gpu"]


def test_default_suite_covers_every_installed_backend() -> None:
    installed = suite_mod.installed_backends()
    if not installed:
        pytest.skip("no backend installed")
    jobs = default_suite(run_args("--frames", "5"))
    cpu = [j for j in jobs if j.device == "cpu"]
    assert all(j.preprocess == "shared" and j.frames == 5 and j.source == suite_mod.DEFAULT_SOURCE for j in jobs)
    ref_backends = [j.backend for j in cpu if j.model is None]
    assert ref_backends == [b for b in installed if b != "tflite"]
    if "tflite" in installed:
        lite = [j for j in jobs if j.backend == "tflite"]
        assert len(lite) == 1 and lite[0].model == "tflite-coco-ssd-mobilenet-v1-quant" and lite[0].policy.classes == (1,)
    gpu = [j for j in jobs if j.device != "cpu"]
    assert all(suite_mod.gpu_ready(j.backend) for j in gpu)


def test_example_suite_in_the_docs_loads() -> None:
    path = Path(suite_mod.__file__).parent / "example.toml"
    jobs = load_suite(path)
    assert len({j.job_id for j in jobs}) == len(jobs) >= 6
    assert any(j.options.get("target") == "opencl" for j in jobs)


# errors -------------------------------------------------------------------------------------------------

def error_of(tmp_path: Path, text: str) -> HarnessError:
    with pytest.raises(HarnessError) as info:
        load_suite(write(tmp_path, text))
    return info.value


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\nvideos = [pets]\n')
    assert "s.toml" in err.problem and "not valid TOML" in err.problem and "line 3" in err.problem


def test_wrong_type_names_key_path_line_and_expectation(tmp_path: Path) -> None:
    err = error_of(tmp_path, '# comment\n[defaults]\nwarmup = 2\nframes = "many"\n[matrix]\nbackends = ["tf1"]\n')
    assert err.problem.startswith(f"{tmp_path / 's.toml'}:4: defaults.frames: expected a positive integer")
    assert "'many'" in err.problem


def test_unknown_key_in_an_entry_suggests_the_right_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[matrix]\nbackends = [\n  "tf1",\n  { name = "opencv", optoins = { x = 1 } },\n]\n')
    assert ":4: matrix.backends[1].optoins: unknown key" in err.problem and "'options'" in err.problem


def test_bad_job_and_exclude_entries(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\n[[job]]\nbackend = "tf1"\n[[job]]\nmodel = "x"\n')
    assert ":5: job[1].backend" in err.problem and "needs a backend" in err.problem
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\n[[exclude]]\nbakend = "tf1"\n')
    assert ":4: exclude[0].bakend" in err.problem
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\ndevice = ["cpu"]\n')
    assert ":3: matrix.device: unknown matrix axis" in err.problem and "devices" in err.problem
    err = error_of(tmp_path, 'matrx = 1\n')
    assert ":1: matrx: unknown top-level key" in err.problem and "'matrix'" in err.problem


def test_empty_matrix_says_so(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[matrix]\nbackends = []\n')
    assert "empty matrix" in err.problem and "matrix.backends is empty" in err.problem
    err = error_of(tmp_path, 'name = "nothing"\n')
    assert "empty matrix" in err.problem and "no [matrix] and no [[job]]" in err.problem


def test_duplicate_job_ids_ask_for_a_tag(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1", { name = "tf1", threads = 1 }]\n')
    assert "same job id: tf1_ref_pets09-s2l1_cpu" in err.problem and "tag" in (err.fix or "")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        load_suite(tmp_path / "nope.toml")


def test_run_list_prints_the_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    # the backends check their options before listing: keep only options they declare
    path = write(tmp_path, MATRIX.replace("options = { a = 1 }\n", "").replace(", options = { b = 2 }", ""))
    assert main(["run", str(path), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("8 job(s):") and "opencv_some-model_tud-campus_cpu_shared_ocl" in out
    assert main(["run", str(write(tmp_path, "[matrix]\nbackends = []\n", "e.toml")), "--list"]) == 2
    assert "empty matrix" in capsys.readouterr().err


# the command line against a suite ---------------------------------------------------------------------------

SETS_EVERYTHING = """
[defaults]
score_threshold = 0.5
record_threshold = 0.05
top_k = 50
warmup = 3
preprocess = "shared"
timeout_s = 60

[matrix]
backends = ["tf1", { name = "opencv", score_threshold = 0.6, warmup = 4 }]

[[job]]
backend = "torch"
top_k = 20
"""


def test_an_explicit_flag_beats_the_suite_even_at_its_default_value(tmp_path: Path) -> None:
    """`--score-threshold 0.3` next to a suite's 0.5 used to record 0.5 (0.3 is the flag's default)."""
    path = write(tmp_path, SETS_EVERYTHING)
    jobs = load_suite(path, run_args(str(path), "--score-threshold", "0.3", "--record-threshold", "0.01",
                                     "--top-k", "100", "--warmup", "10", "--preprocess", "native", "--timeout", "3600"))
    assert len(jobs) == 3
    for j in jobs:
        assert (j.policy.score_threshold, j.policy.record_threshold, j.policy.top_k) == (0.3, 0.01, 100), j.job_id
        assert (j.warmup, j.preprocess, j.timeout_s) == (10, "native", 3600.0), j.job_id
    # flags not given leave every layer of the suite as it is
    by_backend = {j.backend: j for j in load_suite(path, run_args(str(path)))}
    assert by_backend["opencv"].policy.score_threshold == 0.6 and by_backend["opencv"].warmup == 4
    assert by_backend["torch"].policy.top_k == 20 and by_backend["tf1"].policy.score_threshold == 0.5
    assert {j.preprocess for j in by_backend.values()} == {"shared"}


def test_repeated_video_model_and_device_flags_replace_the_suites_axes(tmp_path: Path) -> None:
    path = write(tmp_path, MATRIX + '\n[[job]]\nbackend = "tflite"\nvideo = "pets09-s2l1"\n')
    jobs = load_suite(path, run_args(str(path), "-v", "tud-campus", "-v", "pets09-s2l1", "-m", "reference",
                                     "-d", "cpu", "-d", "gpu"))
    matrix = [j for j in jobs if j.backend != "tflite"]
    assert len(matrix) == 2 * 1 * 2 * 2  # backends x the one model x the two videos x the two devices
    single = [j for j in jobs if j.backend == "tflite"]  # a [[job]] is made once per video and device given
    assert sorted((j.source, j.device) for j in single) == [("pets09-s2l1", "cpu"), ("pets09-s2l1", "gpu"),
                                                            ("tud-campus", "cpu"), ("tud-campus", "gpu")]


def test_relative_paths_in_a_suite_are_relative_to_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They used to be resolved later against the current folder, where a different file of that name may lie."""
    home = tmp_path / "suites"
    elsewhere = tmp_path / "elsewhere"
    for folder in (home, elsewhere):  # a decoy of the same name where the command runs
        (folder / "clips").mkdir(parents=True)
        (folder / "clips" / "a.mp4").write_bytes(b"")
    (home / "m.onnx").write_bytes(b"")
    write(home, """
[matrix]
backends = ["onnxruntime"]
models = ["reference", "m.onnx"]
videos = ["clips/a.mp4", "pets09-s2l1", "clips/missing.mp4"]

[[exclude]]
model = "m.onnx"
video = "clips/missing.mp4"

[[job]]
backend = "tf1"
video = "clips/a.mp4"
""")
    monkeypatch.chdir(elsewhere)
    jobs = load_suite(Path("../suites/s.toml"))
    got = {(j.backend, j.model, j.source) for j in jobs}
    video, model, missing = str(home / "clips" / "a.mp4"), str(home / "m.onnx"), str(home / "clips" / "missing.mp4")
    assert got == {("onnxruntime", None, video), ("onnxruntime", None, "pets09-s2l1"), ("onnxruntime", None, missing),
                   ("onnxruntime", model, video), ("onnxruntime", model, "pets09-s2l1"), ("tf1", None, video)}
    assert "onnxruntime_m.onnx_a.mp4_cpu" in {j.job_id for j in jobs}  # ids keep the short names
    # a path given on the command line next to the suite is relative to where the command runs
    jobs = load_suite(Path("../suites/s.toml"), run_args("-v", "clips/a.mp4"))
    assert {j.source for j in jobs} == {str(elsewhere / "clips" / "a.mp4")}


def test_an_unknown_device_in_a_suite_names_its_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\ndevices = [\n  "cpu",\n  "tpu",\n]\n')
    assert err.problem == f"{tmp_path / 's.toml'}:5: matrix.devices[1]: unknown device 'tpu'"
    assert "cpu, gpu, gpu:N, cuda, cuda:N, cuda_fp16, opencl" in (err.fix or "")
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\n[[job]]\nbackend = "tf1"\ndevice = "tpu"\n')
    assert ":5: job[0].device: unknown device 'tpu'" in err.problem
    err = error_of(tmp_path, '[matrix]\nbackends = ["tf1"]\ndevices = [{ name = "TPU", when = "gpu-ready" }]\n')
    assert ":3: matrix.devices[0]: unknown device 'TPU'" in err.problem
    jobs = load_suite(write(tmp_path, '[matrix]\nbackends = ["opencv"]\ndevices = ["GPU:1", "cuda_fp16", "opencl"]\n'))
    assert [j.device for j in jobs] == ["gpu:1", "cuda_fp16", "opencl"]


BAD_SETTINGS = [("frames", "0", "a positive integer (frames per job)"), ("warmup", "-1", "an integer >= 0"),
                ("timeout_s", "-5", "a number of seconds >= 0"), ("threads", "0", "a positive integer (intra-op"),
                ("classes", "[-1]", "a list of integer class ids from 0 to 2147483647"),
                ("classes", "[3000000000]", "a list of integer class ids from 0 to 2147483647"),
                ("score_threshold", "nan", "a number in [0, 1]"), ("top_k", "0", "a positive integer")]


@pytest.mark.parametrize("key, value, expected", BAD_SETTINGS, ids=[f"{k}={v}" for k, v, _ in BAD_SETTINGS])
def test_the_flags_range_checks_hold_in_suites(tmp_path: Path, key: str, value: str, expected: str) -> None:
    err = error_of(tmp_path, f'[matrix]\nbackends = ["tf1", {{ name = "opencv", {key} = {value} }}]\n')
    assert err.problem.startswith(f"{tmp_path / 's.toml'}:2: matrix.backends[1].{key}: expected {expected}")
    assert err.problem.endswith(f", got {float(value) if value == 'nan' else value}")


def test_thresholds_that_conflict_name_the_job(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nscore_threshold = 0.2\n[matrix]\nbackends = ["tf1"]\n')
    with pytest.raises(HarnessError) as info:
        load_suite(path, run_args(str(path), "--record-threshold", "0.5"))
    assert info.value.problem.startswith(f"{path}: matrix (tf1 x reference x pets09-s2l1 x cpu): score_threshold 0.2 "
                                         "is below record_threshold 0.5")


def test_suite_envs_checks_the_top_level_like_load_suite(tmp_path) -> None:
    from harness.suites.expand import SuiteError, suite_envs

    path = tmp_path / "s.toml"
    path.write_text('envs = "x"\n[matrix]\nbackends = ["tf1"]\n', encoding="utf-8")
    with pytest.raises(SuiteError, match="envs"):
        suite_envs(path)


def test_an_exclude_on_scenario_matches_jobs_that_set_none(tmp_path) -> None:
    from harness.suites.expand import load_suite

    path = tmp_path / "s.toml"
    path.write_text('[matrix]\nbackends = ["tf1", "opencv"]\n[[exclude]]\nbackend = "tf1"\nscenario = "single-stream"\n',
                    encoding="utf-8")
    assert [j.backend for j in load_suite(path)] == ["opencv"]
