"""Real environments, built with uv from the package registry into a temporary harness cache: the same
backend in two OpenCV versions side by side, TensorFlow 2.20 against 2.21, cache reuse and rebuilds, the
doctor inside an environment, and every bad input of a build (unresolvable requirement, no registry,
offline, a build killed halfway, two builds at once, a framework missing from the environment).

These tests need the registry (PyPI, or the index uv is configured for); they skip, saying so, where it
cannot be reached. One environment (``ocv4``) is built once per session and shared (tests/helpers/envs.py);
the TF1 reference both side-by-side comparisons check against is the session's ``harness run -b tf1`` there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core.detections import Detections
from harness.envs import EnvSpec, EnvStore, InterpreterResolver, ensure
from harness.core.errors import EnvError
from harness.core.jobs import JobResult, JobSpec
from harness.execution.process import SubprocessExecutor
from harness.core.worker_protocol import PROTOCOL_VERSION
from tests.helpers.agreement import agreement
from tests.conftest import requires_cv2, requires_tf
from tests.helpers.envs import FRAMES, SCORE, TF1_JOB, offline, online, saved_result, setenv

ROOT = Path(__file__).resolve().parents[2]


def cli(env_cache: Path, *args: str, offline: bool = True, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(env_cache),
           "HARNESS_OFFLINE": "1" if offline else "0", **extra}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=1800)


def run_jobs(store: EnvStore, specs: list[JobSpec], log_dir: Path) -> list[JobResult]:
    executor = SubprocessExecutor(log_dir=log_dir, resolver=InterpreterResolver(store))
    try:
        return [executor.run(spec) for spec in specs]
    finally:
        executor.close()


def per_frame(result: JobResult, frames: int) -> list[Detections]:
    """A job's saved COCO records back as detections per frame, at the comparison score."""
    size = tuple(result.info["frame_size"])
    out = []
    for index in range(frames):
        rows = [r for r in result.detections if r["frame"] == index and r["score"] >= SCORE]
        boxes = np.array([r["bbox"] for r in rows], np.float32).reshape(-1, 4)
        out.append(Detections.from_boxes(boxes, np.array([r["score"] for r in rows], np.float32),
                                         np.array([r["category_id"] for r in rows], np.int64), size, fmt="xywh",
                                         clip=False))
    return out


def assert_agree(ref: JobResult, other: JobResult, label: str) -> None:
    stats = agreement(per_frame(ref, FRAMES), per_frame(other, FRAMES), iou=0.95)
    print(f"{label} vs {ref.spec.job_id}, {FRAMES} shared PETS frames, score>={SCORE}: {stats}")
    assert stats["ref_boxes"] > 500
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99, stats


# the same backend in two environments ------------------------------------------------------------------

SHARED = dict(source="pets09-s2l1", frames=FRAMES, preprocess="shared")


@pytest.fixture(scope="module")
def tf1_reference(tf1_results: Path) -> JobResult:
    """TF1 in the default environment on the shared PETS frames (``JobSpec("tf1", **SHARED)``): the reference
    of both side-by-side comparisons below, which each ran it again in their own executor. It is the session's
    ``harness run -b tf1`` (tests/helpers/envs.py: the same job, the same cache), read back from its folder."""
    result = saved_result(tf1_results, TF1_JOB)
    assert result.spec.job_id == JobSpec("tf1", **SHARED).job_id
    return result


@requires_tf
@requires_cv2
def test_opencv_4_and_5_side_by_side(ocv4: dict, store: EnvStore, tf1_reference: JobResult, pets_video: Path,
                                     assets_root: Path, tmp_path: Path) -> None:
    from harness.results import ResultsWriter

    caffe = assets_root / "models" / "ultraface-rfb-320" / "RFB-320.caffemodel"
    specs = [JobSpec("opencv", **SHARED), JobSpec("opencv", env="ocv4", **SHARED),
             JobSpec("opencv", "pets09-s2l1", model=str(caffe), frames=3, job_id="caffe_default"),
             JobSpec("opencv", "pets09-s2l1", model=str(caffe), frames=3, env="ocv4", job_id="caffe_ocv4")]
    tf1 = tf1_reference
    results = [tf1, *run_jobs(store, specs, tmp_path / "logs")]
    ocv5, in_ocv4, caffe5, caffe4 = results[1:]
    for r in (tf1, ocv5, in_ocv4, caffe4):
        assert r.status == "ok", f"{r.spec.job_id}: {r.cause}"
    assert_agree(tf1, ocv5, "opencv (default environment)")
    assert_agree(tf1, in_ocv4, "opencv (ocv4)")
    # the worker ran the harness installed in the environment, not this checkout
    where = Path(in_ocv4.info["interpreter"]["harness_path"])
    assert store.root in where.parents and ROOT not in where.parents
    assert caffe5.status == "failed" and "no Caffe importer" in caffe5.cause

    out = tmp_path / "results"
    writer = ResultsWriter(out)
    for r in results:
        writer.add(r)
    runs = pd.read_csv(out / "runs.csv", dtype=str).set_index("job_id")
    print(runs[["env", "framework_version", "status", "p50_ms"]].to_string())
    assert runs.loc[in_ocv4.spec.job_id, "env"] == "ocv4" and runs.loc[ocv5.spec.job_id, "env"] == "default"
    assert runs.loc[in_ocv4.spec.job_id, "framework_version"].startswith("4.14.")
    assert runs.loc[ocv5.spec.job_id, "framework_version"].split(".")[0] != "4"
    assert runs.loc["caffe_ocv4", "framework_version"].startswith("4.14.")


def test_a_framework_missing_from_the_environment(ocv4: dict, store: EnvStore, tmp_path: Path) -> None:
    missing, fine = run_jobs(store, [JobSpec("torch", "pets09-s2l1", frames=5, env="ocv4"),
                                     JobSpec("opencv", "pets09-s2l1", frames=5, env="ocv4")], tmp_path)
    assert missing.status == "failed" and missing.summary["env"] == "ocv4"
    assert missing.cause.startswith("BackendUnavailable: ") and "is not installed" in missing.cause
    assert "(in environment 'ocv4')" in missing.cause
    assert "harness env create ocv4 <its requirements> torch" in missing.cause
    assert fine.status == "ok", fine.cause  # the next job in that environment is not affected


@pytest.mark.slow
@requires_tf
def test_tensorflow_versions_side_by_side(store: EnvStore, registry: None, tf1_reference: JobResult,
                                          tmp_path: Path) -> None:
    store.define(EnvSpec.make("tf220", ["tensorflow==2.20.*"]))
    with online():
        ensure("tf220", store)
    default = tf1_reference  # JobSpec("tf1", **SHARED): the default environment's TensorFlow
    tf220, = run_jobs(store, [JobSpec("tf1", env="tf220", **SHARED)], tmp_path)
    assert default.status == "ok" and tf220.status == "ok", (default.cause, tf220.cause)
    versions = (default.summary["framework_version"], tf220.summary["framework_version"])
    print(f"TensorFlow in the default environment {versions[0]}, in tf220 {versions[1]}")
    assert versions[1].startswith("2.20.") and not versions[0].startswith("2.20.")
    assert default.info["versions"]["tensorflow"] == versions[0]
    assert_agree(default, tf220, "tf1 (TensorFlow 2.20)")


# the cache ---------------------------------------------------------------------------------------------

def test_a_second_use_builds_nothing_and_a_changed_spec_rebuilds(ocv4: dict, store: EnvStore) -> None:
    cold = ocv4["ensured"]
    start = time.perf_counter()
    warm = ensure("ocv4", store)
    warm_s = time.perf_counter() - start
    record = store.record(store.folder("ocv4", warm.key))
    print(f"ocv4: cold build {record.build_s:.1f} s (fixture {ocv4['cold_s']:.1f} s), warm reuse {warm_s:.2f} s, "
          f"saved {ocv4['cold_s'] - warm_s:.1f} s")
    assert cold.built and not warm.built and warm.key == cold.key
    assert warm.interpreter.python == cold.interpreter.python
    assert record.packages["opencv-python"].startswith("4.14.")

    store.define(EnvSpec.make("respec", ["six"]))
    with online():
        first = ensure("respec", store)
        store.define(EnvSpec.make("respec", ["six", "packaging"]))
        second = ensure("respec", store)
    assert first.built and second.built and first.key != second.key
    assert not Path(first.interpreter.python).exists()  # the superseded build is gone
    assert [p.name for p in store.folders_of("respec")] == [f"respec-{second.key}"]


def test_env_list_remove_and_packages(ocv4: dict, env_cache: Path, store: EnvStore) -> None:
    listed = cli(env_cache, "env", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["ocv4"]["status"] == "ready" and rows["ocv4"]["key_packages"].startswith("opencv-python 4.14.")
    assert rows["ocv4"]["size_mb"] > 50 and rows["ocv4"]["where"] == str(ocv4["ensured"].interpreter.prefix)
    text = cli(env_cache, "env", "list")
    assert "ocv4" in text.stdout and "ready" in text.stdout
    packages = cli(env_cache, "env", "packages", "ocv4")
    assert packages.returncode == 0 and any(line.startswith("opencv-python==4.14.")
                                            for line in packages.stdout.splitlines())

    store.define(EnvSpec.make("doomed", ["six"]))
    with online():
        doomed = ensure("doomed", store)
    resolver = InterpreterResolver(store)
    resolver.resolve("doomed")  # a run using it holds its use lock
    busy = cli(env_cache, "env", "remove", "doomed")
    assert busy.returncode == 2 and "in use by a running harness" in busy.stderr
    assert Path(doomed.interpreter.python).exists()
    resolver.close()
    gone = cli(env_cache, "env", "remove", "doomed")
    assert gone.returncode == 0, gone.stderr
    assert not Path(doomed.interpreter.prefix).exists() and "doomed" not in store.names()


# bad input ---------------------------------------------------------------------------------------------

def test_a_requirement_that_does_not_resolve(ocv4: dict, env_cache: Path, store: EnvStore) -> None:
    proc = cli(env_cache, "env", "create", "bad", "opencv-python==0.0.1", offline=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: the requirements of environment 'bad' do not resolve" in proc.stderr
    assert "there is no version of opencv-python==0.0.1" in proc.stderr  # uv's own words
    assert "fix: change the requirements" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("    ")]) <= 12  # cut to the useful lines
    assert "bad" not in store.names() and not store.folders_of("bad") and not list(store.root.glob(".tmp-bad-*"))


def test_no_registry(ocv4: dict, env_cache: Path, store: EnvStore) -> None:
    proc = cli(env_cache, "env", "create", "nonet", "six", offline=False,
               UV_DEFAULT_INDEX="http://127.0.0.1:9/simple", UV_HTTP_RETRIES="0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: cannot reach the package registry to build environment 'nonet'" in proc.stderr
    assert "HARNESS_OFFLINE=1" in proc.stderr and "Connection refused" in proc.stderr
    assert "nonet" not in store.names()


def test_offline_uses_only_built_environments(ocv4: dict, store: EnvStore) -> None:
    store.define(EnvSpec.make("unbuilt", ["six"]))
    try:
        with offline(), pytest.raises(EnvError, match="'unbuilt' is not built .* HARNESS_OFFLINE=1 uses only "
                                                      "environments that are already built") as info:
            assert not ensure("ocv4", store).built  # built: usable offline
            ensure("unbuilt", store)
        assert "unset HARNESS_OFFLINE" in info.value.fix
    finally:
        store.undefine("unbuilt")


def _ensure_in_subprocess(env_cache: Path, name: str) -> subprocess.Popen:
    code = ("import json; from harness.envs import ensure; d = ensure(%r); "
            "print(json.dumps({'built': d.built, 'python': d.interpreter.python}))" % name)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(env_cache),
                                 "HARNESS_OFFLINE": "0"})


def test_a_build_killed_halfway_is_never_used(ocv4: dict, env_cache: Path, store: EnvStore) -> None:
    store.define(EnvSpec.make("half", ["six"]))
    proc = _ensure_in_subprocess(env_cache, "half")
    deadline = time.monotonic() + 600
    while not any((p / "bin" / "python").exists() for p in store.root.glob(".tmp-half-*")):
        assert proc.poll() is None, f"the build ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no build folder appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its uv, mid-install
    proc.wait()
    leftovers = list(store.root.glob(".tmp-half-*"))
    assert leftovers and not store.folders_of("half")
    with offline(), pytest.raises(EnvError, match="not built"):
        ensure("half", store)  # a half-built environment is not an environment
    with online():
        done = ensure("half", store)
    assert done.built and not any(p.exists() for p in leftovers)
    assert done.interpreter.protocol >= 1


def test_two_builds_of_one_environment_at_once(ocv4: dict, env_cache: Path, store: EnvStore) -> None:
    store.define(EnvSpec.make("twin", ["six"]))
    procs = [_ensure_in_subprocess(env_cache, "twin") for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(a["built"] for a in answers) == [False, True], outs
    assert answers[0]["python"] == answers[1]["python"] and len(store.folders_of("twin")) == 1
    waited = outs[[a["built"] for a in answers].index(False)][1]
    assert "waiting for another process building environment 'twin'" in waited


def test_an_existing_interpreter_gets_the_harness_only_when_asked(ocv4: dict, env_cache: Path,
                                                                  tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "mine")], check=True)
    python = str(tmp_path / "mine" / "bin" / "python")
    refused = cli(env_cache, "env", "check", python)
    assert refused.returncode == 2 and f"error: python {python} cannot import harness" in refused.stderr
    assert f"harness env check {python} --install" in refused.stderr
    installed = cli(env_cache, "env", "check", python, "--install", offline=False)
    assert installed.returncode == 0, installed.stderr
    assert f"worker protocol {PROTOCOL_VERSION}: it can run jobs" in installed.stdout
    job = run_jobs(EnvStore(env_cache / "envs"), [JobSpec("opencv", "pets09-s2l1", frames=5, python=python)],
                   tmp_path / "logs")[0]
    assert job.status == "ok" and job.summary["env"] == python, job.cause


# the doctor inside environments -----------------------------------------------------------------------

def test_doctor_in_an_environment(ocv4: dict, env_cache: Path) -> None:
    proc = cli(env_cache, "doctor", "--env", "ocv4", "--backend", "opencv", "--json")
    assert proc.returncode in (0, 1, 3), proc.stderr
    data = json.loads(proc.stdout)
    assert list(data["environments"]) == ["ocv4"]
    verdict = data["environments"]["ocv4"]["backends"]["opencv"]
    assert verdict["facts"]["version"].startswith("4.14.") and verdict["status"] != "not-installed"
    assert data["environments"]["ocv4"]["interpreter"]["env"] == "ocv4"

    table = cli(env_cache, "doctor", "--env", "default", "--env", "ocv4", "--backend", "opencv")
    rows = [ln.split()[:3] for ln in table.stdout.splitlines() if ln.startswith(("default ", "ocv4 "))]
    assert rows[0][:2] == ["default", "opencv"] and rows[1] == ["ocv4", "opencv", "OpenCV"]
    assert "OpenCV 4.14" in table.stdout and "Machine (environment ocv4)" in table.stdout

    unknown = cli(env_cache, "doctor", "--env", "nope")
    assert unknown.returncode == 2 and "error: no environment named 'nope'" in unknown.stderr


# the GPU layout ----------------------------------------------------------------------------------------

def test_the_gpu_layout_resolves(store: EnvStore, registry: None) -> None:
    """Resolved, not installed: the CUDA wheels are gigabytes. Each framework family gets its own CUDA."""
    from harness.envs import gpu_specs
    from harness.envs.builder import print_report, resolve_only
    from harness.envs.installers import find_installer
    from harness.envs.source import harness_source

    pins = {s.name: resolve_only(store, s, harness_source(), find_installer(), print_report) for s in gpu_specs()}
    for name, found in pins.items():
        print(name, {k: v for k, v in found.items() if k.startswith(("tensorflow", "torch", "onnxruntime",
                                                                        "nvidia-cudnn"))})
    tf, torch, ort = pins["tf-gpu"], pins["torch-gpu"], pins["ort-gpu"]
    assert tf["tensorflow"].startswith("2.21.") and "nvidia-cudnn-cu12" in tf and "torch" not in tf
    assert "torch" in torch and "nvidia-cudnn-cu13" in torch and "tensorflow" not in torch
    # onnxruntime-gpu 1.31 resolves to the CUDA 13 wheels (1.22 to CUDA 12), with another cuDNN than torch's
    assert "onnxruntime-gpu" in ort and any(k.startswith("nvidia-cudnn-cu") for k in ort)
    assert "torch" not in ort and "tensorflow" not in ort


@pytest.mark.slow
def test_venv_and_pip_when_uv_is_not_used(store: EnvStore, registry: None) -> None:
    store.define(EnvSpec.make("with-pip", ["six"]))
    with setenv("HARNESS_ENV_INSTALLER", "pip"), online():
        done = ensure("with-pip", store)
    record = store.record(store.folder("with-pip", done.key))
    assert done.built and record.installer == "pip (venv)" and "six" in record.packages
    assert "pip" in record.packages and done.interpreter.protocol >= 1

    from harness.envs.builder import print_report, resolve_only
    from harness.envs.installers import PipInstaller
    from harness.envs.source import harness_source

    pins = resolve_only(store, EnvSpec.make("pip-resolve", ["six"]), harness_source(), PipInstaller(), print_report)
    assert "six" in pins and "numpy" in pins and "opencv-python" in pins  # pip's dry run, with the harness's own
