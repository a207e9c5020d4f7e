"""`harness doctor`: the verdict rules over fabricated facts, then the real doctor on this machine.

The verdict function is pure, so the table below states each situation as facts (driver, GPUs,
CUDA_VISIBLE_DEVICES, libraries found, what the framework says about itself) and the verdict, reason and fix
a user must get. The real-machine tests run the actual command and probes (subprocesses, real frameworks).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from backends.probes import parse_opencv_build
from harness.doctor import (
    CudaLibrary,
    DriverFacts,
    FrameworkFacts,
    GpuInfo,
    SystemFacts,
    build_requirement,
    doctor_report,
    driver_cuda_from_version,
    exit_status,
    format_report,
    format_reports,
    judge,
    probe_limit,
    run_probe,
    run_static_probes,
    sonames_for,
    system_facts,
    visible_gpu_count,
)

SITE = "/venv/lib/python3.11/site-packages"


def lib(kind: str, name: str, cuda_major: int | None, *, origin: str = "system", folder: str = "/usr/lib",
        dist: str | None = None, required_by: tuple[str, ...] = (), version: str | None = None) -> CudaLibrary:
    major = int(name.rsplit(".so.", 1)[1].split(".")[0])
    return CudaLibrary(kind=kind, name=name, path=f"{folder}/{name}", soname_major=major, origin=origin,
                       distribution=dist, required_by=list(required_by), version=version, cuda_major=cuda_major,
                       loadable=True)


def machine(*, driver: str | None = None, cuda: str | None = None, gpus: int = 1, cvd: str | None = None,
            libs: tuple[CudaLibrary, ...] = ()) -> SystemFacts:
    if driver is None:
        drv = DriverFacts(present=False, errors=["NVML: NVML Shared Library Not Found"])
    else:
        drv = DriverFacts(present=True, version=driver, cuda=cuda, source="nvml", gpu_count=gpus,
                          gpus=[GpuInfo(i, "NVIDIA A10") for i in range(gpus)])
    return SystemFacts(driver=drv, cuda_visible_devices=cvd, visible_gpus=visible_gpu_count(cvd, drv.gpu_count),
                       libraries=list(libs))


def tf(version: str = "2.21.0", cuda: str | None = "12.5.1", cudnn: str | None = "9", gpus: int = 0,
       cuda_build: bool = True) -> FrameworkFacts:
    return FrameworkFacts("tensorflow", True, version, "tensorflow", cuda_build=cuda_build, built_cuda=cuda,
                          built_cudnn=cudnn, gpus=gpus, gpu_names=["NVIDIA A10"] * gpus)


def torch(version: str = "2.5.1+cu124", cuda: str = "12.4", gpus: int = 0) -> FrameworkFacts:
    return FrameworkFacts("torch", True, version, "torch", cuda_build=True, built_cuda=cuda, built_cudnn="9.1.0",
                          bundles_cuda=True, gpus=gpus)


CU12 = (
    lib("cudart", "libcudart.so.12", 12, origin="pip", folder=f"{SITE}/nvidia/cuda_runtime/lib"),
    lib("cublas", "libcublas.so.12", 12, origin="pip", folder=f"{SITE}/nvidia/cublas/lib"),
    lib("cudnn", "libcudnn.so.9", 12, origin="pip", folder=f"{SITE}/nvidia/cudnn/lib"),
)
CUDA_120_SYSTEM = (
    lib("cudart", "libcudart.so.12", 12, folder="/usr/local/cuda-12.0/lib64"),
    lib("cublas", "libcublas.so.12", 12, folder="/usr/local/cuda-12.0/lib64"),
)
TORCH_CU13 = (
    lib("cudart", "libcudart.so.13", 13, origin="pip", folder=f"{SITE}/nvidia/cu13/lib",
        dist="nvidia-cuda-runtime 13.0.96", required_by=("torch",), version="13.0"),
    lib("cublas", "libcublas.so.13", 13, origin="pip", folder=f"{SITE}/nvidia/cu13/lib",
        dist="nvidia-cublas 13.1.1.3", required_by=("torch",), version="13.1.1"),
    lib("cudnn", "libcudnn.so.9", 13, origin="pip", folder=f"{SITE}/nvidia/cudnn/lib",
        dist="nvidia-cudnn-cu13 9.24.0.43", required_by=("torch",), version="9.24.0"),
)


@dataclass
class Case:
    id: str
    facts: FrameworkFacts
    system: SystemFacts
    status: str
    reason: tuple[str, ...]
    fix: tuple[str, ...] = ()
    device: str | None = None
    backend: str = "tf2"
    not_in_reason: tuple[str, ...] = field(default=())


CASES = [
    Case("gpu-ready: TF 2.21 with its CUDA 12 wheels and a 550 driver",
         tf(gpus=1), machine(driver="550.54.14", cuda="12.4", libs=CU12),
         "gpu-ready", ("sees 1 GPU", "NVIDIA A10")),
    Case("gpu-ready: torch cu128 on a 12.2 driver (minor version compatibility, same major)",
         torch("2.8.0+cu128", "12.8", gpus=1), machine(driver="535.104.05", cuda="12.2"),
         "gpu-ready", ("sees 1 GPU",), backend="torch", not_in_reason=("upgrade",)),
    Case("gpu-ready: ONNX Runtime GPU build, which cannot count devices, with its libraries present",
         FrameworkFacts("onnxruntime", True, "1.20.1", "onnxruntime-gpu", cuda_build=True,
                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=None),
         machine(driver="550.54.14", cuda="12.4", libs=CU12),
         "gpu-ready", ("GPU support built in", "1 GPU(s) visible"), backend="onnxruntime"),
    Case("cpu-only: no GPU or driver on the machine",
         torch(), machine(), "cpu-only", ("no NVIDIA driver", "NVML Shared Library Not Found"),
         ("NVIDIA GPU and driver",), backend="torch"),
    Case("cpu-only: TensorFlow built without CUDA, nothing asked for the GPU",
         tf(cuda=None, cudnn=None, cuda_build=False), machine(driver="550.54.14", cuda="12.4", libs=CU12),
         "cpu-only", ("TensorFlow 2.21 is built without CUDA", "this machine has 1 GPU"),
         ("pip install 'tensorflow[and-cuda]'",)),
    Case("cpu-only: all GPUs hidden by CUDA_VISIBLE_DEVICES=''",
         torch(), machine(driver="550.54.14", cuda="12.4", gpus=2, cvd=""),
         "cpu-only", ("CUDA_VISIBLE_DEVICES='' hides all 2 GPU(s)",), ("unset CUDA_VISIBLE_DEVICES",),
         backend="torch"),
    Case("cpu-only: CUDA_VISIBLE_DEVICES=-1 hides the GPU too",
         tf(), machine(driver="550.54.14", cuda="12.4", cvd="-1", libs=CU12),
         "cpu-only", ("CUDA_VISIBLE_DEVICES='-1' hides all 1 GPU(s)",), ("unset CUDA_VISIBLE_DEVICES",)),
    Case("MISMATCH (the seed case): TF 2.5 built for CUDA 11.2 on a machine with only CUDA 12.0 libraries",
         tf("2.5.0", "11.2", "8"), machine(driver="525.60.13", cuda="12.0", libs=CUDA_120_SYSTEM),
         "mismatch",
         ("TensorFlow 2.5 needs CUDA 11 and cuDNN 8 libraries", "libcudart.so.11.0", "libcublas.so.11",
          "libcudnn.so.8", "found only: libcudart.so.12", "/usr/local/cuda-12.0/lib64"),
         ("install the CUDA 11.2 toolkit and cuDNN 8", "LD_LIBRARY_PATH", "TensorFlow >= 2.15",
          "pip install 'tensorflow[and-cuda]'")),
    Case("MISMATCH: TF 2.4 whose import-free facts give only its version: CUDA 11.0/cuDNN 8.0 from the table",
         FrameworkFacts("tensorflow", True, "2.4.1", "tensorflow", cuda_build=True, gpus=0),
         machine(driver="525.60.13", cuda="12.0", libs=CUDA_120_SYSTEM),
         "mismatch", ("TensorFlow 2.4 needs CUDA 11 and cuDNN 8 libraries", "libcudart.so.11.0"),
         ("CUDA 11.0 toolkit and cuDNN 8.0",)),
    Case("MISMATCH: a too-old driver: supports CUDA up to 11.8, PyTorch cu124 needs 12.x",
         torch(), machine(driver="520.61.05", cuda="11.8"),
         "mismatch", ("the driver 520.61.05 supports CUDA up to 11.8, PyTorch 2.5 needs 12.x: upgrade the driver",),
         ("upgrade the NVIDIA driver to >= 525.60.13", "PyTorch build for CUDA 11"), backend="torch"),
    Case("MISMATCH: missing cuDNN (CUDA 12 runtime and cuBLAS present)",
         tf(), machine(driver="550.54.14", cuda="12.4", libs=CU12[:2]),
         "mismatch", ("TensorFlow 2.21 needs cuDNN 9 built for CUDA 12 (libcudnn.so.9); none was found",),
         ("pip install 'tensorflow[and-cuda]'",)),
    Case("MISMATCH: missing cuDNN for ONNX Runtime: the cuDNN wheel to install is named",
         FrameworkFacts("onnxruntime", True, "1.20.1", "onnxruntime-gpu", cuda_build=True,
                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=None),
         machine(driver="550.54.14", cuda="12.4", libs=CU12[:2]),
         "mismatch", ("ONNX Runtime 1.20 needs cuDNN 9 built for CUDA 12",), ("pip install 'nvidia-cudnn-cu12==9.*'",),
         backend="onnxruntime"),
    Case("MISMATCH: OpenCV built without CUDA, the CUDA target asked for",
         FrameworkFacts("opencv", True, "5.0.0", "opencv-python", cuda_build=False, gpus=0),
         machine(driver="550.54.14", cuda="12.4"),
         "mismatch", ("OpenCV 5.0 is built without CUDA, but the cuda target was asked for", "1 GPU(s)"),
         ("-D WITH_CUDA=ON", "OPENCV_DNN_CUDA=ON"), device="cuda", backend="opencv"),
    Case("MISMATCH: torch's CUDA 13 wheels beside TF's CUDA 12 needs in one environment",
         tf(), machine(driver="580.65.06", cuda="13.0", libs=TORCH_CU13),
         "mismatch",
         ("TensorFlow 2.21 needs CUDA 12 and cuDNN 9 libraries", "found only: libcudart.so.13",
          "from PyTorch's wheels: nvidia-cuda-runtime 13.0.96", "libcudnn.so.9 (9.24.0, built for CUDA 13)"),
         ("pip install 'tensorflow[and-cuda]'", "same site-packages/nvidia/cudnn folder as PyTorch's",
          "own environment: harness env create --gpu")),
    Case("MISMATCH: a CUDA build that sees no GPU for no cause the doctor can name: its own log is quoted",
         FrameworkFacts("tensorflow", True, "2.21.0", cuda_build=True, built_cuda="12.5.1", built_cudnn="9",
                        gpus=0, log=["failed call to cuInit: CUDA_ERROR_NO_DEVICE"]),
         machine(driver="550.54.14", cuda="12.4", libs=CU12),
         "mismatch", ("sees no GPU although 1 GPU(s) are visible", "cuInit: CUDA_ERROR_NO_DEVICE"), ("TF_CPP_MIN_LOG_LEVEL=0",)),
    Case("MISMATCH: installed but the probe failed (a broken install)",
         FrameworkFacts("tensorflow", True, "2.21.0", "tensorflow",
                        error="import tensorflow failed: ImportError: libcudart.so.12: cannot open shared object"),
         machine(driver="550.54.14", cuda="12.4"),
         "mismatch", ("installed but its probe failed", "libcudart.so.12"), ("pip install --force-reinstall tensorflow",)),
    Case("MISMATCH: CUDA 10.x needs its exact minor (libcudart.so.10.1): TF 2.3 beside CUDA 10.2",
         tf("2.3.0", "10.1", "7"), machine(driver="440.33", cuda="10.2", libs=(
             lib("cudart", "libcudart.so.10.2", 10, folder="/usr/local/cuda-10.2/lib64"),)),
         "mismatch", ("needs CUDA 10.1 and cuDNN 7 libraries", "libcudart.so.10.1"), ("CUDA 10.1 toolkit",)),
    Case("not-installed",
         FrameworkFacts("tensorflow", False), machine(driver="550.54.14", cuda="12.4"),
         "not-installed", ("TensorFlow is not installed",), ("pip install tensorflow",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verdict(case: Case) -> None:
    verdict = judge(case.backend, case.facts, case.system, device=case.device)
    assert verdict.status == case.status, verdict.reason
    for text in case.reason:
        assert text in verdict.reason, f"{text!r} not in reason: {verdict.reason}"
    for text in case.fix:
        assert text in verdict.fix, f"{text!r} not in fix: {verdict.fix}"
    for text in case.not_in_reason:
        assert text not in verdict.reason
    if verdict.status in ("mismatch", "cpu-only", "not-installed"):
        assert verdict.fix, "every verdict short of gpu-ready says what to do"
    json.dumps(verdict.to_dict())  # JSON-able, facts included


def test_cpu_build_without_a_gpu_request_is_not_a_mismatch_but_with_one_it_is() -> None:
    facts = FrameworkFacts("opencv", True, "5.0.0", cuda_build=False, gpus=0)
    system = machine(driver="550.54.14", cuda="12.4")
    assert judge("opencv", facts, system).status == "cpu-only"
    assert judge("opencv", facts, system, device="gpu").status == "mismatch"
    assert judge("opencv", facts, system, device="cpu").status == "cpu-only"


def test_a_gpu_seen_by_the_framework_wins_over_a_library_guess() -> None:
    """Libraries found by a route the doctor does not search must not turn a working GPU into a mismatch."""
    verdict = judge("tf2", tf(gpus=1), machine(driver="550.54.14", cuda="12.4"))
    assert verdict.status == "gpu-ready"
    assert "note:" in verdict.reason and verdict.problems


@pytest.mark.parametrize(
    ("value", "physical", "expected"),
    [(None, 2, 2), ("", 2, 0), ("-1", 2, 0), ("0", 2, 1), ("0,1", 2, 2), ("1,-1,0", 2, 1), ("5", 2, 0),
     ("GPU-8f2c1a", 1, 1), ("0", 0, 0)],
)
def test_visible_gpu_count_follows_cuda_rules(value: str | None, physical: int, expected: int) -> None:
    assert visible_gpu_count(value, physical) == expected


def test_requirement_data() -> None:
    assert sonames_for("11.2", "8.1") == {"cudart": "libcudart.so.11.0", "cublas": "libcublas.so.11",
                                          "cudnn": "libcudnn.so.8"}
    assert sonames_for("10.1", "7.6")["cudart"] == "libcudart.so.10.1"
    assert sonames_for("12.5.1", "9")["cudart"] == "libcudart.so.12"
    assert driver_cuda_from_version("520.61.05") == "11.8"
    assert driver_cuda_from_version("535.104.05") == "12.2"
    assert driver_cuda_from_version("580.65.06") == "13.0"
    assert driver_cuda_from_version("390.1") is None
    row = build_requirement("tensorflow", "2.5.3")
    assert (row["cuda"], row["cudnn"]) == ("11.2", "8.1") and row["source"].startswith("https://")
    assert build_requirement("tensorflow", "2.17.0")["cuda"] == "12.3"
    assert build_requirement("torch", "2.14.1+cu130")["cuda"] == "13.0"
    assert build_requirement("tensorflow", "9.9.0") == {}


def test_opencv_build_information_parsing() -> None:
    with_cuda = "  NVIDIA CUDA:                   YES (ver 12.2, CUFFT CUBLAS FAST_MATH)\n" \
                "    NVIDIA GPU arch:             86\n  cuDNN:                         YES (ver 8.9.7)\n"
    assert parse_opencv_build(with_cuda) == {"cuda": True, "cuda_version": "12.2", "cudnn_version": "8.9.7"}
    assert parse_opencv_build("  OpenCL:   YES (no extra features)\n")["cuda"] is False


def _report(*statuses: str, explicit: bool = False) -> dict:
    return {"explicit": explicit, "backends": {f"b{i}": {"status": s} for i, s in enumerate(statuses)}}


def test_exit_status() -> None:
    assert exit_status(_report("gpu-ready", "gpu-ready")) == 0
    assert exit_status(_report("gpu-ready", "not-installed")) == 0  # not asked for, not installed: ignored
    assert exit_status(_report("gpu-ready", "not-installed", explicit=True)) == 3
    assert exit_status(_report("gpu-ready", "mismatch", "cpu-only")) == 1
    assert exit_status(_report("cpu-only", "gpu-ready")) == 3
    assert exit_status(_report("cpu-only"), allow_cpu=True) == 0
    assert exit_status(_report("cpu-only", "mismatch"), allow_cpu=True) == 1
    assert exit_status(_report()) == 3  # nothing checked is not success


# the real machine --------------------------------------------------------------------------------------

def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def real_system() -> SystemFacts:
    return system_facts()


@pytest.fixture(scope="module")
def no_gpu(real_system: SystemFacts) -> SystemFacts:
    if real_system.driver.present and real_system.visible_gpus:
        pytest.skip(f"this machine has {real_system.visible_gpus} visible GPU(s); these tests describe one without")
    return real_system


def test_real_machine_doctor_json_names_torchs_cuda13_libraries_and_why_tf_has_no_gpu(no_gpu: SystemFacts) -> None:
    if not (_installed("tensorflow") and _installed("torch") and _installed("nvidia-cuda-runtime")):
        pytest.skip("needs TensorFlow and PyTorch's CUDA 13 wheels (nvidia-cuda-runtime) installed together")
    proc = subprocess.run([sys.executable, "-m", "harness", "doctor", "--json", "--backend", "tf2",
                           "--backend", "torch"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr  # no GPU here, nothing broken enough to be a mismatch
    report = json.loads(proc.stdout)
    cudart13 = [lib for lib in report["system"]["libraries"]
                if lib["kind"] == "cudart" and lib["cuda_major"] == 13 and lib["origin"] == "pip"]
    assert cudart13 and "torch" in cudart13[0]["required_by"], report["system"]["libraries"]
    # asked of the library itself, in a subprocess: 13.x, whichever minor the torch wheel pulled in
    assert cudart13[0]["version"].startswith("13.")
    assert report["system"]["driver"]["present"] is False
    tf2 = report["backends"]["tf2"]
    assert tf2["status"] == "cpu-only"
    assert tf2["facts"]["built_cuda"].startswith("12.")
    assert "no NVIDIA driver" in tf2["reason"]
    assert "needs CUDA 12 and cuDNN 9 libraries" in tf2["reason"] and "libcudart.so.13" in tf2["reason"]
    assert "PyTorch's wheels" in tf2["reason"]
    assert "pip install 'tensorflow[and-cuda]'" in tf2["fix"]
    torch_v = report["backends"]["torch"]
    assert torch_v["status"] == "cpu-only" and torch_v["facts"]["built_cuda"].startswith("13")


def test_real_machine_text_report_fits_100_columns(no_gpu: SystemFacts) -> None:
    report = doctor_report(["tf1", "opencv", "onnxruntime"])
    text = format_report(report, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "tf1" in text and "exit status 3" in text
    assert report["duration_s"] < 60


def test_live_probes_import_the_real_frameworks(no_gpu: SystemFacts) -> None:
    report = doctor_report(["opencv", "onnxruntime", "tf2"], live=True)
    assert report["probes"].startswith("live")
    cv = report["backends"]["opencv"]["facts"]
    if cv["installed"]:
        assert cv["cuda_build"] is False and cv["gpus"] == 0 and "opencl" in cv["details"]  # the PyPI wheel
    ort = report["backends"]["onnxruntime"]["facts"]
    if ort["installed"]:
        assert "CPUExecutionProvider" in ort["providers"]
    tf_facts = report["backends"]["tf2"]["facts"]
    if tf_facts["installed"]:
        assert tf_facts["error"] is None and tf_facts["gpus"] == 0
        assert tf_facts["built_cuda"] == tf_facts["details"]["build_info"]["cuda_version"]
        assert "static" not in tf_facts["details"]


def test_a_crashing_probe_is_reported_not_fatal() -> None:
    facts = run_probe("os:abort", timeout=60)  # SIGABRT in the probe process
    assert facts.error and "exited with" in facts.error
    facts = run_probe("no_such_module_xyz:probe_thing", timeout=60)
    assert facts.error and facts.installed is False


def test_unknown_backend_is_one_clear_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "doctor", "--backend", "tf3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no doctor probe for backend 'tf3'" in proc.stderr and "tf2" in proc.stderr


# defect 10: a probe that does not answer in time is not a mismatch; fixes name the installed package ----

ROOT = Path(__file__).resolve().parents[2]
TEST_PROBE = "tests.helpers.doctor_probes:probe_opencv"
OPENCV_DISTS = ("opencv-python", "opencv-contrib-python", "opencv-python-headless", "opencv-contrib-python-headless")


def _doctor_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "doctor", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def misbehaving_probe(monkeypatch: pytest.MonkeyPatch):
    """Make ``tests.helpers.doctor_probes`` importable in the probe's interpreter, and choose how it fails."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return lambda how: monkeypatch.setenv("HARNESS_TEST_PROBE", how)


def _installed_opencv() -> str:
    found = next((d for d in OPENCV_DISTS if _installed(d)), None)
    if found is None:
        pytest.skip("no OpenCV distribution installed")
    return found


def test_a_probe_that_never_answers_is_unknown_with_its_time_limit_not_a_mismatch(misbehaving_probe) -> None:
    misbehaving_probe("hang")
    facts = run_probe(TEST_PROBE, timeout=2)
    assert facts.timed_out_s == 2 and "timed out after 2 s" in facts.error
    verdict = judge("opencv", facts, machine(driver="550.54.14", cuda="12.4"))
    assert verdict.status == "unknown", verdict.reason
    assert "did not answer within 2 s" in verdict.reason and "no sign of a CUDA problem" in verdict.reason
    assert "--timeout" in verdict.fix and "force-reinstall" not in verdict.fix
    report = {"explicit": True, "backends": {"opencv": verdict.to_dict()}}
    assert exit_status(report) == 3 and exit_status(report, allow_cpu=True) == 3  # unchecked is never success
    json.dumps(report)


def test_a_crashing_probe_names_the_installed_distribution_in_its_reinstall_fix(misbehaving_probe) -> None:
    dist = _installed_opencv()
    misbehaving_probe("abort")
    facts = run_probe(TEST_PROBE, timeout=60)
    assert facts.timed_out_s is None and "exited with" in facts.error
    assert facts.distribution == dist and facts.version == metadata.version(dist)
    verdict = judge("opencv", facts, machine())
    assert verdict.status == "mismatch"
    assert verdict.fix.endswith(f"pip install --force-reinstall {dist}"), verdict.fix


@pytest.mark.parametrize("dist", ["opencv-python-headless", "opencv-contrib-python"])
def test_reinstall_fix_is_the_distribution_the_facts_name(dist: str) -> None:
    facts = FrameworkFacts("opencv", True, "4.10.0", dist, error="the probe process exited with -11")
    assert judge("opencv", facts, machine()).fix.endswith(f"pip install --force-reinstall {dist}")


def test_reinstall_fix_without_a_known_distribution_names_no_made_up_package() -> None:
    facts = FrameworkFacts("opencv", True, error="the probe process exited with -11")
    fix = judge("opencv", facts, machine()).fix
    assert "--force-reinstall" not in fix and "opencv-python-headless" in fix and "no installed pip" in fix


def test_cli_timeout_0_means_no_limit(no_gpu: SystemFacts) -> None:
    """The issue's reproduction: `--timeout 0` gave MISMATCH and `pip install --force-reinstall opencv`."""
    _installed_opencv()
    proc = _doctor_cli("--backend", "opencv", "--timeout", "0", "--json")
    assert proc.returncode == 3, proc.stderr
    opencv = json.loads(proc.stdout)["backends"]["opencv"]
    assert opencv["status"] == "cpu-only", opencv["reason"]
    assert opencv["facts"]["error"] is None and opencv["facts"]["timed_out_s"] is None


def test_cli_probe_past_its_timeout_says_so_and_exits_3() -> None:
    # 1 ms: no Python interpreter starts, let alone imports OpenCV, that fast
    proc = _doctor_cli("--backend", "opencv", "--timeout", "0.001")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "unknown" in proc.stdout and "did not answer within 0.001 s" in proc.stdout
    assert "--timeout" in proc.stdout and "MISMATCH" not in proc.stdout and "force-reinstall" not in proc.stdout


@pytest.mark.parametrize("value", ["-1", "-0.5", "nan", "inf"])
def test_cli_rejects_a_timeout_that_is_no_number_of_seconds(value: str) -> None:
    proc = _doctor_cli("--timeout", value)
    assert proc.returncode == 2
    assert f"error: --timeout {value}" in proc.stderr and "fix: give a number >= 0" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_probe_limit_api() -> None:
    assert probe_limit(0) is None and probe_limit(None) is None and probe_limit(2.5) == 2.5
    with pytest.raises(ValueError, match="0: no limit"):
        probe_limit(-1)


def test_help_has_examples() -> None:
    proc = _doctor_cli("--help")
    assert proc.returncode == 0
    assert "Examples:" in proc.stdout and "harness doctor --backend tf2 --backend torch" in proc.stdout
    assert "0 = no limit" in proc.stdout


# the package's seams ------------------------------------------------------------------------------------

def test_the_probe_runner_uses_the_interpreter_it_is_given(tmp_path: Path) -> None:
    """The seam for `--env NAME`: probes can be asked of another Python than this one."""
    used = tmp_path / "used"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {used}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    facts = run_probe("backends.probes:probe_onnxruntime", timeout=120, static=True, python=str(wrapper))
    assert used.read_text().split() == ["-m", "harness.doctor", "probe", "backends.probes:probe_onnxruntime"]
    assert facts.framework == "onnxruntime" and facts.error is None


def test_static_probes_share_one_process_and_a_failing_one_is_asked_again_alone(tmp_path: Path) -> None:
    """Without a GPU every probe reads files only, so they share one interpreter; a probe that fails there
    gets its own process, and so its own failure, as when each ran alone."""
    used = tmp_path / "used"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {used}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    good = ["backends.probes:probe_onnxruntime", "backends.probes:probe_opencv"]
    broken = "no_such_module_xyz:probe_thing"
    facts = run_static_probes([*good, broken], timeout=120, python=str(wrapper))
    assert used.read_text().splitlines() == [f"-m harness.doctor probes {' '.join([*good, broken])}",
                                             f"-m harness.doctor probe {broken}"]
    assert list(facts) == [*good, broken]
    for target in good:  # the same facts as that probe alone
        alone = run_probe(target, timeout=120, static=True)
        assert facts[target].error is None and facts[target].framework == alone.framework
        assert (facts[target].installed, facts[target].version, facts[target].cuda_build) == (
            alone.installed, alone.version, alone.cuda_build)
    assert facts[broken].installed is False and "exited with" in facts[broken].error


def test_several_reports_labelled_by_environment_print_as_one_table(no_gpu: SystemFacts) -> None:
    """The seam for `--env` / `--cluster`: per-environment verdicts in one table, the data JSON-able."""
    report = doctor_report(["opencv", "torch"])
    other = json.loads(json.dumps(report))
    other["backends"]["torch"].update(status="mismatch", reason="fabricated: a broken torch", fix="fabricated fix")
    other["exit_status"] = exit_status(other)
    text = format_reports({"main": report, "cu12-env": other}, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Machine (environment main)" in text and "Machine (environment cu12-env)" in text
    rows = [line for line in text.splitlines() if line.startswith(("main ", "cu12-env "))]
    assert [r.split()[:2] for r in rows] == [["main", "opencv"], ["main", "torch"], ["cu12-env", "opencv"],
                                             ["cu12-env", "torch"]]
    assert "MISMATCH" in rows[3] and "exit status 1" in text  # one mismatch anywhere decides
    assert format_reports({"main": report}).count("Machine (environment main)") == 1
    assert "env" not in format_report(report).splitlines()[0]


def test_doctor_modules_stay_small_and_single_minded() -> None:
    """No doctor module over ~500 lines, no function over ~80 (the project's rule for the core)."""
    package = ROOT / "harness" / "doctor"
    for path in sorted(package.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert source.count("\n") <= 500, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.name}:{node.name} is {length} lines"


def test_importing_the_doctor_imports_no_framework() -> None:
    code = ("import sys, harness.doctor, backends.probes; "
            "print(sorted({'tensorflow', 'torch', 'cv2', 'onnxruntime'} & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_the_worker_entry_point_rejects_unknown_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.doctor", "frobnicate"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "unknown worker command: frobnicate" in proc.stderr and "usage:" in proc.stderr
