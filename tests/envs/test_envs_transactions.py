"""Environments are transactions: two ``harness env create`` of one name at once end with one registered,
consistent build (the other is told, non-zero); a redefinition is built beside the registered one and
swapped in only once built; a job records its environment's content key, and a run into the same folder
(``--resume``, or a suite whose ``[envs.X]`` redefines X) reruns a job whose environment changed, saying what.

Real ``harness env create`` processes and real uv builds from the package registry (small specs: ``six``,
and OpenCV 4.14 for a job); they skip where the registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.envs import EnvStore, current_key
from harness.envs.installers import env_python

ROOT = Path(__file__).resolve().parents[2]
JOB = "opencv_ref_pets09-s2l1_cpu_env-rdf"


def harness(cache: Path, *args: str, offline: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(cache),
           "HARNESS_OFFLINE": "1" if offline else "0"}
    return subprocess.Popen([sys.executable, "-m", "harness", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def done(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=1200)
    return proc.returncode, out, err


def test_two_creates_of_one_name_with_different_specs_end_consistent(registry: None,
                                                                     tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    specs = {"six==1.16.0": "1.16.0", "six==1.17.0": "1.17.0"}
    procs = {req: harness(cache, "env", "create", "race", req) for req in specs}
    answers = {req: done(p) for req, p in procs.items()}
    codes = sorted(a[0] for a in answers.values())
    assert codes[0] == 0 and codes[1] != 0, answers
    winner = next(req for req, a in answers.items() if a[0] == 0)
    loser = next(req for req, a in answers.items() if a[0] != 0)
    assert "was defined by another process while this one waited" in answers[loser][2], answers[loser]
    assert f"harness env create race '{loser}'" in answers[loser][2]
    store = EnvStore(cache / "envs")
    spec = store.spec("race")
    assert spec.requirements == (winner,)
    state = store.state("race", current_key(spec))
    assert state.state == "ready" and state.folder is not None, state
    assert store.folders_of("race") == [state.folder]  # no half build, no loser's build left registered
    version = subprocess.run([str(env_python(state.folder)), "-c", "import six; print(six.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == specs[winner]
    listed = harness(cache, "env", "list", "--json", offline=True)
    rows = json.loads(done(listed)[1])
    assert [(r["name"], r["status"]) for r in rows] == [("race", "ready")]


def _row(out: Path) -> dict:
    runs = pd.read_csv(out / "runs.csv")
    return runs.set_index("job_id").loc[JOB].to_dict()


def _entry(out: Path) -> dict:
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    return next(e for e in jobs if e["spec"]["job_id"] == JOB)


def test_a_redefined_environment_reruns_its_jobs_on_resume_and_from_a_suite(registry: None,
                                                                             tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = ["opencv-python==4.14.*", "six==1.16.0"]
    second = ["opencv-python==4.14.*", "six==1.17.0"]
    rc, _, err = done(harness(cache, "env", "create", "rdf", *first))
    assert rc == 0, err
    rc, _, err = done(harness(cache, "run", "-b", "opencv", "--env", "rdf", "--frames", "3", "--out", str(out),
                              "-q", "--no-report", offline=True))
    assert rc == 0, err
    key_1 = _row(out)["env_key"]
    assert _entry(out)["info"]["environment"]["key"] == key_1

    rc, stdout, err = done(harness(cache, "env", "create", "rdf", *second))
    assert rc == 0 and "redefined" in stdout, err
    rc, _, err = done(harness(cache, "run", "--resume", str(out), "-q", "--no-report", offline=True))
    assert rc == 0, err
    assert "1 job(s) to run" in err and f"environment 'rdf' changed (build {key_1} -> " in err, err
    assert "six==1.16.0 -> opencv-python==4.14.* six==1.17.0" in err, err
    row, entry = _row(out), _entry(out)
    key_2 = row["env_key"]
    assert key_2 != key_1 and entry["info"]["environment"]["requirements"] == second
    python = Path(entry["info"]["interpreter"]["python"])
    assert python.parent.parent.name == f"rdf-{key_2}" and python.exists()  # the build that exists now

    suite = tmp_path / "suite.toml"
    suite.write_text('[envs.rdf]\nrequirements = ["opencv-python==4.14.*", "six==1.16.0"]\n\n'
                     '[[job]]\nbackend = "opencv"\nenv = "rdf"\nframes = 3\n')
    rc, _, err = done(harness(cache, "run", str(suite), "--out", str(out), "-q", "--no-report"))
    assert rc == 0, err
    assert f"environment 'rdf' changed (build {key_2} -> {key_1}" in err and "1 job(s) to run" in err, err
    assert _row(out)["env_key"] == key_1


# minor items: unusable caches, a hanging interpreter --------------------------------------------------------

def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "cache"


def _read_only(tmp_path: Path) -> Path:
    """A read-only bind mount of an empty folder (needs the privilege to mount; skipped without it)."""
    source, mount = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    made = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {made.stderr.strip()}")
    return mount / "cache"


def _hanging_python(tmp_path: Path) -> Path:
    """An "interpreter" that starts a child and then never answers."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {tmp_path / 'child.pid'}\nsleep 300\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("case", ["env-create-under-a-file", "env-list-under-a-file", "env-create-read-only",
                                  "convert-cache-root-under-a-file", "convert-cache-root-read-only",
                                  "env-check-hanging"])
def test_unusable_caches_and_a_hanging_interpreter_are_one_error(tmp_path: Path, case: str) -> None:
    import psutil

    root = _read_only(tmp_path) if case.endswith("read-only") else _under_a_file(tmp_path)
    try:
        if case.startswith("env-create"):
            proc = harness(root, "env", "create", "x", "six", offline=True)
        elif case == "env-list-under-a-file":
            proc = harness(root, "env", "list", offline=True)
        elif case.startswith("convert"):
            proc = harness(tmp_path / "cache", "convert", "--backend", "onnxruntime", "--no-generated",
                           "--cache-root", str(root), offline=True)
        else:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_HELLO_TIMEOUT_S": "3"}
            proc = subprocess.Popen([sys.executable, "-m", "harness", "env", "check", str(_hanging_python(tmp_path))],
                                    env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        rc, out, err = done(proc)
    finally:
        if case.endswith("read-only"):
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)
    assert rc == 2 and "Traceback" not in err, (out, err)
    assert err.count("error:") == 1 and "fix:" in err, err
    if case == "env-check-hanging":
        assert "did not answer within 3 s" in err
        child = int((tmp_path / "child.pid").read_text())
        alive = psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
        assert not alive, f"the interpreter's child {child} is still running after the timeout"
    elif case.endswith("read-only"):
        assert "is on a read-only file system" in err, err
    else:
        assert f"{tmp_path / 'a-file'} is a file, not a folder" in err, err
