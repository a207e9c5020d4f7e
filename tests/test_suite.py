"""Suite files: expansion of the matrix, per-entry overrides, command-line overrides, and errors that name
the file, the line or key, and what was expected."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness import suite as suite_mod
from harness.cli import build_parser
from harness.errors import HarnessError
from harness.suite import default_suite, load_suite


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def run_args(*argv: str) -> argparse.Namespace:
    """The real `harness run` parser, so overrides are tested with the defaults users get."""
    return build_parser().parse_args(["run", *argv])


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
    path = Path(suite_mod.__file__).parent / "suites" / "example.toml"
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

    path = write(tmp_path, MATRIX)
    assert main(["run", str(path), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("8 job(s):") and "opencv_some-model_tud-campus_cpu_shared_ocl" in out
    assert main(["run", str(write(tmp_path, "[matrix]\nbackends = []\n", "e.toml")), "--list"]) == 2
    assert "empty matrix" in capsys.readouterr().err
