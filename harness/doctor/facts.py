"""What the doctor knows, as dataclasses, and the machine facts it gathers itself.

Framework-agnostic facts (the NVIDIA driver, its GPUs, ``CUDA_VISIBLE_DEVICES``, the CUDA libraries) are
gathered here; what a framework says about itself comes back from its probe as :class:`FrameworkFacts`.
Every gatherer turns its failures into text inside the facts, because a doctor that crashes on a broken
machine is no use on exactly the machines that need it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.doctor.libraries import CudaLibrary, find_cuda_libraries, library_versions
from harness.doctor.rules import cuda_version_text, driver_cuda_from_version


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_mb: float | None = None
    compute_capability: str | None = None


@dataclass
class DriverFacts:
    """The NVIDIA driver as the machine reports it; ``cuda`` is the highest CUDA it supports ("12.2")."""

    present: bool
    version: str | None = None
    cuda: str | None = None
    cuda_source: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    gpu_count: int = 0
    source: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class SystemFacts:
    """One Python environment on one machine: the driver and GPUs, and the CUDA libraries it can load."""

    driver: DriverFacts
    cuda_visible_devices: str | None
    visible_gpus: int
    libraries: list[CudaLibrary] = field(default_factory=list)
    python: str = sys.executable
    errors: list[str] = field(default_factory=list)


@dataclass
class FrameworkFacts:
    """What a probe learned about one framework, in its own process. Never raised, always returned."""

    framework: str  # key into cuda_requirements.toml [frameworks]
    installed: bool
    version: str | None = None
    distribution: str | None = None  # the pip distribution that provides it here, e.g. opencv-python-headless
    cuda_build: bool | None = None  # None: could not tell
    built_cuda: str | None = None
    built_cudnn: str | None = None
    bundles_cuda: bool = False  # its wheels bring their own CUDA libraries
    gpus: int | None = None  # devices the framework itself sees; None: it cannot count them
    gpu_names: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    error: str | None = None
    log: list[str] = field(default_factory=list)  # the framework's own CUDA messages
    details: dict[str, Any] = field(default_factory=dict)
    probe_s: float | None = None
    timed_out_s: float | None = None  # the probe was stopped after this limit without answering

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrameworkFacts":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# the driver ---------------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_gpus(pynvml: Any, facts: DriverFacts) -> None:
    facts.gpu_count = int(pynvml.nvmlDeviceGetCount())
    for i in range(facts.gpu_count):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        gpu = GpuInfo(index=i, name=_text(pynvml.nvmlDeviceGetName(handle)))
        try:
            gpu.memory_mb = round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20, 1)
            gpu.compute_capability = ".".join(map(str, pynvml.nvmlDeviceGetCudaComputeCapability(handle)))
        except Exception:
            pass
        facts.gpus.append(gpu)


def _driver_from_nvml(facts: DriverFacts) -> bool:
    try:
        import pynvml
    except ImportError as exc:
        facts.errors.append(f"NVML: nvidia-ml-py is not installed ({exc})")
        return False
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        facts.errors.append(f"NVML: {exc}")
        return False
    try:
        facts.present, facts.source = True, "nvml"
        facts.version = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            getter = getattr(pynvml, "nvmlSystemGetCudaDriverVersion_v2", pynvml.nvmlSystemGetCudaDriverVersion)
            facts.cuda, facts.cuda_source = cuda_version_text(int(getter())), "nvml"
        except Exception as exc:
            facts.errors.append(f"NVML CUDA version: {exc}")
        _nvml_gpus(pynvml, facts)
    except Exception as exc:
        facts.errors.append(f"NVML: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return True


def _driver_from_smi(facts: DriverFacts) -> bool:
    exe = shutil.which("nvidia-smi")
    if not exe:
        facts.errors.append("nvidia-smi: not on PATH")
        return False
    try:
        query = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=15,
        )
        header = subprocess.run([exe], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        facts.errors.append(f"nvidia-smi: {exc}")
        return False
    if query.returncode != 0:
        facts.errors.append(f"nvidia-smi: {(query.stderr or query.stdout).strip()[:200]}")
        return False
    facts.present, facts.source = True, "nvidia-smi"
    for line in query.stdout.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 4:
            mem = float(cells[2]) if re.fullmatch(r"[\d.]+", cells[2]) else None
            facts.gpus.append(GpuInfo(index=int(cells[0]), name=cells[1], memory_mb=mem))
            facts.version = cells[3]
    facts.gpu_count = len(facts.gpus)
    found = re.search(r"CUDA Version:\s*([\d.]+)", header)
    if found:
        facts.cuda, facts.cuda_source = found.group(1), "nvidia-smi"
    return True


def _driver_from_proc(facts: DriverFacts) -> bool:
    path = Path("/proc/driver/nvidia/version")
    try:
        text = path.read_text()
    except OSError:
        facts.errors.append(f"{path}: not present (no NVIDIA kernel module loaded)")
        return False
    found = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", text)
    facts.present, facts.source = True, str(path)
    facts.version = found.group(1) if found else None
    gpus_dir = Path("/proc/driver/nvidia/gpus")
    facts.gpu_count = len(list(gpus_dir.iterdir())) if gpus_dir.is_dir() else 0
    return True


def driver_facts() -> DriverFacts:
    """The driver and GPUs: NVML first (exact), then nvidia-smi, then the kernel module's version file."""
    facts = DriverFacts(present=False)
    for source in (_driver_from_nvml, _driver_from_smi, _driver_from_proc):
        try:
            if source(facts):
                break
        except Exception as exc:  # a source must never take the doctor down
            facts.errors.append(f"{source.__name__}: {exc}")
    if facts.present and facts.version and not facts.cuda:
        facts.cuda, facts.cuda_source = driver_cuda_from_version(facts.version), "driver table"
    return facts


def safe_driver_facts() -> DriverFacts:
    try:
        return driver_facts()
    except Exception as exc:
        return DriverFacts(present=False, errors=[f"driver check failed: {exc}"])


def visible_gpu_count(value: str | None, physical: int) -> int:
    """How many GPUs CUDA programs see under ``CUDA_VISIBLE_DEVICES=value`` (None: unset, all of them).

    CUDA reads the list up to the first entry that names no device, so ``""`` and ``"-1"`` hide every GPU.
    """
    if value is None:
        return physical
    seen: set[str] = set()
    for token in (t.strip() for t in value.split(",")):
        if token.isdigit() and int(token) < physical:
            seen.add(token)
        elif token.startswith(("GPU-", "MIG-")) and len(token) > 4:
            seen.add(token)
        else:
            break
    return min(len(seen), physical) if physical else 0


# the whole machine --------------------------------------------------------------------------------------

def system_facts(check_libraries: bool = True, driver: DriverFacts | None = None) -> SystemFacts:
    """Driver, GPUs, CUDA_VISIBLE_DEVICES and the CUDA libraries, each gathered so that none can raise."""
    errors: list[str] = []
    driver = driver or safe_driver_facts()
    try:
        libs = find_cuda_libraries()
    except Exception as exc:
        libs, _ = [], errors.append(f"library search failed: {type(exc).__name__}: {exc}")
    if check_libraries:
        try:
            library_versions(libs)
        except Exception as exc:
            errors.append(f"library versions failed: {type(exc).__name__}: {exc}")
    if driver.present and not driver.cuda:
        libcuda = next((lib for lib in libs if lib.kind == "cuda" and lib.version), None)
        if libcuda:
            driver.cuda, driver.cuda_source = libcuda.version, "libcuda cuDriverGetVersion"
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = driver.gpu_count or len(driver.gpus)
    return SystemFacts(
        driver=driver, cuda_visible_devices=cvd, visible_gpus=visible_gpu_count(cvd, physical),
        libraries=libs, errors=errors,
    )
