"""Is each backend ready to use the GPU here, and if not, why: driver, CUDA/cuDNN libraries, builds.

The classic failure this exists for: TensorFlow built for one CUDA, the machine has another, TF quietly
registers no GPU and the detector runs on the CPU. The doctor gathers facts and then judges them:

* machine facts, framework-agnostic: the NVIDIA driver (NVML, else ``nvidia-smi``, else
  ``/proc/driver/nvidia/version``), the highest CUDA it supports, the GPUs, ``CUDA_VISIBLE_DEVICES``, and
  every CUDA runtime / cuBLAS / cuDNN library the loader or pip's ``nvidia-*`` wheels can provide, with
  where it lives, which pip package brought it and which framework required that package;
* framework facts from the probes in the ``harness.probes`` entry-point group (``backends/probes.py``):
  installed, version, built with CUDA for which CUDA/cuDNN, how many GPUs it sees;
* :func:`judge` turns both into a :class:`Verdict` (``gpu-ready`` / ``cpu-only`` / ``mismatch`` /
  ``not-installed``) with a reason and a fix. It is a pure function, so tests drive it with fabricated facts.

The mismatch rules are data (``cuda_requirements.toml``): framework builds, driver minimums, sonames.

Every probe and the library check run in their own subprocess, for three reasons: TensorFlow and PyTorch
bring CUDA libraries of different majors whose cuDNN shares one soname (``libcudnn.so.9``), so whichever
loads first would decide what the other "finds" (the answer must be what a job in its own process finds,
as the executor runs them); a broken CUDA library can crash its importer, which must not kill the doctor;
and the process that calls :func:`doctor_report` (the runner) stays free of CUDA libraries. The probes run
in parallel, so the report costs about one TensorFlow import.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import tomllib

from harness.versions import first_installed

PROBE_GROUP = "harness.probes"
STATUSES = ("gpu-ready", "cpu-only", "mismatch", "not-installed")
REQUIREMENTS_FILE = Path(__file__).with_name("cuda_requirements.toml")
PROBE_TIMEOUT_S = 120.0
#: set to "1" in a probe's environment when no GPU is visible: probes then read build facts from the
#: framework's files instead of importing it (TensorFlow's import alone costs 5-15 s on a busy machine)
STATIC_ENV = "HARNESS_DOCTOR_STATIC"
_JSON_MARK = "HARNESS_DOCTOR_JSON:"
_ACCELERATOR_PREFIXES = ("gpu", "cuda")

# exit statuses of `harness doctor` (documented in docs/doctor.md)
EXIT_READY = 0
EXIT_MISMATCH = 1
EXIT_NOT_READY = 3


# facts ---------------------------------------------------------------------------------------------------

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
class CudaLibrary:
    """One CUDA runtime / cuBLAS / cuDNN / driver library file that a program here could load."""

    kind: str  # cudart | cublas | cudnn | cuda (the driver's libcuda)
    name: str  # the soname-like file name, e.g. libcudart.so.13
    path: str
    soname_major: int | None
    origin: str  # pip | LD_LIBRARY_PATH | ldconfig | system
    distribution: str | None = None  # "nvidia-cuda-runtime 13.0.96" for pip wheels
    required_by: list[str] = field(default_factory=list)  # frameworks whose install pulled it in
    version: str | None = None  # as the library itself reports it
    cuda_major: int | None = None  # the CUDA major it belongs to (cuDNN: the runtime it was built for)
    loadable: bool | None = None
    error: str | None = None

    def label(self) -> str:
        """``libcudnn.so.9 (9.24.0, built for CUDA 13)``: what a reader needs to tell two copies apart."""
        bits = [self.version] if self.version else []
        if self.kind == "cudnn" and self.cuda_major is not None:
            bits.append(f"built for CUDA {self.cuda_major}")
        return f"{self.name} ({', '.join(bits)})" if bits else self.name

    def provenance(self) -> str:
        if self.origin == "pip":
            who = f"{_display_list(self.required_by)}'s wheels: " if self.required_by else "pip: "
            return f"{who}{self.distribution or 'an nvidia-* wheel'}"
        return f"{self.origin}: {Path(self.path).parent}"


@dataclass
class SystemFacts:
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
    distribution: str | None = None
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrameworkFacts":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Verdict:
    backend: str
    framework: str
    status: str
    reason: str
    fix: str
    problems: list[str] = field(default_factory=list)
    facts: FrameworkFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# the rules, as data ---------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def requirements() -> dict[str, Any]:
    """The parsed ``cuda_requirements.toml`` (framework builds, driver minimums, sonames)."""
    return tomllib.loads(REQUIREMENTS_FILE.read_text(encoding="utf-8"))


def _vtuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or ""))


def _major(text: str | None) -> int | None:
    parts = _vtuple(text)
    return parts[0] if parts else None


def _series(version: str | None) -> str:
    parts = _vtuple(version)
    return ".".join(str(p) for p in parts[:2])


def framework_rules(framework: str, reqs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    reqs = reqs or requirements()
    return dict(reqs.get("frameworks", {}).get(framework, {}))


def build_requirement(framework: str, version: str | None, reqs: Mapping[str, Any] | None = None) -> dict:
    """The table row for ``version`` (matched on major.minor), or ``{}`` when the table has none."""
    rules = framework_rules(framework, reqs)
    series = _series(version)
    for row in rules.get("builds", []):
        if series in row.get("series", []):
            return {"source": rules.get("source"), **row}
    return {}


def driver_cuda_from_version(driver_version: str, reqs: Mapping[str, Any] | None = None) -> str | None:
    """The newest toolkit whose shipped driver is <= ``driver_version`` (when NVML cannot say)."""
    reqs = reqs or requirements()
    table = {k: v for k, v in reqs["driver"]["toolkit"].items() if k != "source"}
    have = _vtuple(driver_version)
    ok = [cuda for cuda, drv in table.items() if _vtuple(drv) <= have]
    return max(ok, key=_vtuple) if ok else None


def minimum_driver(cuda_major: int, reqs: Mapping[str, Any] | None = None) -> str | None:
    reqs = reqs or requirements()
    return reqs["driver"]["minimum_for_major"].get(str(cuda_major))


def sonames_for(cuda: str, cudnn: str | None, reqs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What a build for CUDA ``cuda`` / cuDNN ``cudnn`` asks the loader for, e.g. libcudart.so.11.0."""
    reqs = reqs or requirements()
    parts = _vtuple(cuda) + (0, 0)
    table = reqs["sonames"].get(str(parts[0]), {})
    out = {k: v.format(minor=parts[1]) for k, v in table.items()}
    if not out:  # a major the table does not know yet: the 12+ rule
        out = {"cudart": f"libcudart.so.{parts[0]}", "cublas": f"libcublas.so.{parts[0]}"}
    if cudnn and _major(cudnn) is not None:
        out["cudnn"] = reqs["sonames"]["cudnn"].format(major=_major(cudnn))
    return out


# machine facts -------------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_int_to_str(value: int) -> str:
    return f"{value // 1000}.{(value % 1000) // 10}"


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
            facts.cuda, facts.cuda_source = _cuda_int_to_str(int(getter())), "nvml"
        except Exception as exc:
            facts.errors.append(f"NVML CUDA version: {exc}")
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


_LIB_RE = re.compile(r"^lib(cudart|cublas|cudnn|cuda)\.so\.(\d+)((?:\.\d+)*)$")


def _site_dirs() -> list[Path]:
    dirs = []
    try:
        dirs += [Path(p) for p in site.getsitepackages()]
    except Exception:
        pass
    try:
        dirs.append(Path(site.getusersitepackages()))
    except Exception:
        pass
    dirs += [Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in {o.resolve() for o in out}:
            out.append(d)
    return out


def _ldconfig_entries() -> list[Path]:
    exe = shutil.which("ldconfig") or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    paths = []
    for line in out.splitlines():
        name, _, path = line.strip().partition(" => ")
        if _LIB_RE.match(name.split(" ")[0]) and path:
            paths.append(Path(path.strip()))
    return paths


def _library_search_dirs() -> list[tuple[str, Path]]:
    """(origin, folder) in the order a program would meet them."""
    dirs: list[tuple[str, Path]] = []
    for part in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if part:
            dirs.append(("LD_LIBRARY_PATH", Path(part)))
    for sp in _site_dirs():
        for lib in sorted(sp.glob("nvidia/*/lib")) + sorted(sp.glob("nvidia/*/lib64")):
            dirs.append(("pip", lib))
    homes = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")] + sorted(
        str(p) for p in Path("/usr/local").glob("cuda*")
    )
    for home in filter(None, homes):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
            dirs.append(("system", Path(home) / sub))
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib", "/usr/lib/aarch64-linux-gnu"):
        dirs.append(("system", Path(d)))
    return [(o, d) for o, d in dirs if d.is_dir()]


@lru_cache(maxsize=1)
def _pip_owners() -> dict[str, tuple[str, str]]:
    """Resolved library path -> (distribution, version) for the nvidia-* / cuda-* wheels installed here."""
    owners: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if not name.startswith(("nvidia-", "cuda-")):
            continue
        for f in dist.files or ():
            if _LIB_RE.match(Path(str(f)).name):
                try:
                    owners[str(Path(dist.locate_file(f)).resolve())] = (name, dist.version)
                except OSError:
                    continue
    return owners


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_closure(dist_name: str, depth: int = 4) -> set[str]:
    """Distributions ``dist_name`` pulls in (all its own extras; its dependencies' requested extras)."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        return set()
    try:
        top_extras = metadata.metadata(dist_name).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        return set()
    seen: set[str] = set()
    frontier: list[tuple[str, tuple[str, ...], int]] = [(dist_name, tuple(top_extras), 0)]
    while frontier:
        name, extras, level = frontier.pop()
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in reqs:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None:
                envs = [{"extra": e} for e in extras] or [{"extra": ""}]
                try:
                    if not any(req.marker.evaluate(env) for env in envs):
                        continue
                except Exception:
                    continue
            dep = _canonical(req.name)
            if dep not in seen:
                seen.add(dep)
                if level + 1 < depth:
                    frontier.append((dep, tuple(req.extras), level + 1))
    return seen


@lru_cache(maxsize=1)
def _framework_closures() -> dict[str, set[str]]:
    """Framework key -> the distributions its installed packages pulled in."""
    out: dict[str, set[str]] = {}
    for key, rules in requirements().get("frameworks", {}).items():
        for dist in rules.get("distributions", []):
            deps = _requirement_closure(dist)
            if deps:
                out.setdefault(key, set()).update(deps)
    return out


def find_cuda_libraries() -> list[CudaLibrary]:
    """Every CUDA runtime/cuBLAS/cuDNN/driver library a program here could load, without loading any."""
    found: dict[str, CudaLibrary] = {}
    candidates: list[tuple[str, Path]] = []
    for origin, folder in _library_search_dirs():
        try:
            candidates += [(origin, p) for p in sorted(folder.iterdir()) if _LIB_RE.match(p.name)]
        except OSError:
            continue
    candidates += [("ldconfig", p) for p in _ldconfig_entries()]
    owners = _pip_owners()
    closures = _framework_closures()
    for origin, path in candidates:
        match = _LIB_RE.match(path.name)
        try:
            real = str(path.resolve())
        except OSError:
            continue
        if not match or not os.path.exists(real):
            continue
        known = found.get(real)
        if known is not None:  # the same file by another name: keep the shortest (the soname)
            if len(path.name) < len(known.name):
                known.name, known.path = path.name, str(path)
            continue
        kind, major = match.group(1), int(match.group(2))
        lib = CudaLibrary(kind=kind, name=path.name, path=str(path), soname_major=major, origin=origin)
        if kind in ("cudart", "cublas"):
            lib.cuda_major = major
        if real in owners:
            dist, version = owners[real]
            lib.origin, lib.distribution = "pip", f"{dist} {version}"
            lib.required_by = sorted(k for k, deps in closures.items() if _canonical(dist) in deps)
            if kind == "cudnn":
                cu = re.search(r"-cu(\d+)$", dist)
                lib.cuda_major = int(cu.group(1)) if cu else None
        found[real] = lib
    order = {"cuda": 0, "cudart": 1, "cublas": 2, "cudnn": 3}
    return sorted(found.values(), key=lambda lib: (order.get(lib.kind, 9), -(lib.cuda_major or 0), lib.origin != "pip"))


def _library_worker(paths: Sequence[str]) -> list[dict[str, Any]]:
    """In a throwaway process: dlopen each library and ask it its version (no GPU or driver needed)."""
    import ctypes

    out = []
    for path in paths:
        info: dict[str, Any] = {"path": path}
        kind = (_LIB_RE.match(Path(path).name) or [None, None])[1]
        try:
            lib = ctypes.CDLL(path)
            info["loadable"] = True
            value = ctypes.c_int()
            if kind == "cudart" and lib.cudaRuntimeGetVersion(ctypes.byref(value)) == 0:
                info["version"] = _cuda_int_to_str(value.value)
                info["cuda_major"] = value.value // 1000
            elif kind == "cublas":
                parts = []
                for prop in range(3):
                    if lib.cublasGetProperty(prop, ctypes.byref(value)) == 0:
                        parts.append(str(value.value))
                if parts:
                    info["version"] = ".".join(parts)
                    info["cuda_major"] = int(parts[0])
            elif kind == "cudnn":
                lib.cudnnGetVersion.restype = ctypes.c_size_t
                v = int(lib.cudnnGetVersion())
                major, rest = (v // 10000, v % 10000) if v >= 90000 else (v // 1000, v % 1000)
                info["version"] = f"{major}.{rest // 100}.{rest % 100}"
                if hasattr(lib, "cudnnGetCudartVersion"):
                    lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
                    info["cuda_major"] = int(lib.cudnnGetCudartVersion()) // 1000
            elif kind == "cuda" and lib.cuDriverGetVersion(ctypes.byref(value)) == 0:
                info["version"] = _cuda_int_to_str(value.value)  # the CUDA this driver supports
        except OSError as exc:
            info["loadable"], info["error"] = False, str(exc)
        except Exception as exc:  # a missing symbol: loadable, version unknown
            info["error"] = f"{type(exc).__name__}: {exc}"
        out.append(info)
    return out


def _run_worker(args: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
                ) -> tuple[Any, str, int | None]:
    """Run ``python -m harness.doctor ARGS``; return (parsed JSON or None, stderr, exit status)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.doctor", *args],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, f"timed out after {timeout:.0f} s\n{err}", None
    except OSError as exc:
        return None, str(exc), None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_JSON_MARK):
            try:
                return json.loads(line[len(_JSON_MARK):]), proc.stderr, proc.returncode
            except json.JSONDecodeError:
                break
    return None, proc.stderr, proc.returncode


def library_versions(libs: list[CudaLibrary], timeout: float = 30.0) -> None:
    """Fill in version / CUDA major / loadability, asking each library in a subprocess."""
    if not libs:
        return
    result, err, code = _run_worker(["libraries", *[lib.path for lib in libs]], timeout)
    if result is None:
        for lib in libs:
            lib.error = lib.error or f"library check failed (exit {code}): {err.strip()[-200:]}"
        return
    by_path = {r["path"]: r for r in result}
    for lib in libs:
        info = by_path.get(lib.path, {})
        lib.loadable = info.get("loadable", lib.loadable)
        lib.version = info.get("version", lib.version)
        lib.error = info.get("error", lib.error)
        if info.get("cuda_major") is not None:
            lib.cuda_major = info["cuda_major"]


def _safe_driver_facts() -> DriverFacts:
    try:
        return driver_facts()
    except Exception as exc:
        return DriverFacts(present=False, errors=[f"driver check failed: {exc}"])


def system_facts(check_libraries: bool = True, driver: DriverFacts | None = None) -> SystemFacts:
    """Driver, GPUs, CUDA_VISIBLE_DEVICES and the CUDA libraries, each gathered so that none can raise."""
    errors: list[str] = []
    driver = driver or _safe_driver_facts()
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


# the verdict ---------------------------------------------------------------------------------------------

def _display_list(items: Iterable[str]) -> str:
    names = {"torch": "PyTorch", "tensorflow": "TensorFlow", "onnxruntime": "ONNX Runtime", "opencv": "OpenCV"}
    return " and ".join(names.get(i, i) for i in items)


def _is_accelerator(device: str | None) -> bool:
    return bool(device) and device.strip().lower().startswith(_ACCELERATOR_PREFIXES)


@dataclass
class _Problem:
    text: str
    fix: str


def _library_problems(name: str, key: str, need_cuda: str, need_cudnn: str | None, facts: FrameworkFacts,
                      system: SystemFacts, reqs: Mapping[str, Any]) -> list[_Problem]:
    """The CUDA libraries a build needs that this machine cannot give it."""
    rules = framework_rules(key, reqs)
    cuda_major = _major(need_cuda)
    cudnn_major = _major(need_cudnn)
    names = sonames_for(need_cuda, need_cudnn, reqs)
    libs = [lib for lib in system.libraries if lib.loadable is not False]

    def has(kind: str, pred) -> bool:
        return any(lib.kind == kind and pred(lib) for lib in libs)

    def serves(kind: str):
        """From CUDA 11 on, any library of the major serves; before, only the exact soname does."""
        if (cuda_major or 0) >= 11:
            return lambda lib: lib.cuda_major == cuda_major
        return lambda lib: lib.name == names[kind] or lib.name.startswith(names[kind] + ".")

    missing = []
    if not has("cudart", serves("cudart")):
        missing.append(names["cudart"])
    if not has("cublas", serves("cublas")):
        missing.append(names["cublas"])
    wrong_cudnn = [lib for lib in libs if lib.kind == "cudnn" and lib.soname_major == cudnn_major
                   and lib.cuda_major not in (None, cuda_major)]
    if cudnn_major is not None and not has(
        "cudnn", lambda lib: lib.soname_major == cudnn_major and lib.cuda_major in (None, cuda_major)
    ):
        missing.append(names["cudnn"])
    if not missing:
        return []

    if key == "tensorflow" and _vtuple(facts.version) and _vtuple(facts.version) < (2, 15):
        fix = rules["install_old"].format(cuda=need_cuda, cudnn=need_cudnn or "?")
    elif key == "tensorflow" or key == "onnxruntime":
        fix = rules["install_gpu"]
    else:
        fix = f"install the CUDA {need_cuda} runtime and cuBLAS" + (f" and cuDNN {need_cudnn}" if need_cudnn else "") \
            + f" that {name} was built against, and put their folder on LD_LIBRARY_PATH"
    if wrong_cudnn and any(lib.origin == "pip" for lib in wrong_cudnn) and cuda_major is not None:
        owners = _display_list(sorted({o for lib in wrong_cudnn for o in lib.required_by})) or "another package"
        fix += (f" (note: nvidia-cudnn-cu{cuda_major} installs into the same site-packages/nvidia/cudnn folder as"
                f" {owners}'s cuDNN for CUDA {wrong_cudnn[0].cuda_major}; if both frameworks need the GPU, give"
                " each its own virtual environment)")

    # from CUDA 11 on any runtime of the major serves (minor version compatibility); before, the minor counts
    cuda_text = str(cuda_major) if (cuda_major or 0) >= 11 else ".".join(map(str, _vtuple(need_cuda)[:2]))
    need = f"CUDA {cuda_text}" + (f" and cuDNN {cudnn_major}" if cudnn_major is not None else "")
    order = {"cudart": 0, "cublas": 1, "cudnn": 2}
    others = sorted((lib for lib in libs if lib.kind in order), key=lambda lib: order[lib.kind])
    if missing == [names.get("cudnn")]:
        text = f"{name} needs cuDNN {cudnn_major} built for CUDA {cuda_major} ({names['cudnn']}); "
        text += (f"the only one found is {wrong_cudnn[0].label()} from {wrong_cudnn[0].provenance()}"
                 if wrong_cudnn else "none was found")
        if not wrong_cudnn and key != "tensorflow" and cuda_major in (11, 12, 13) and cudnn_major:
            fix = f"pip install 'nvidia-cudnn-cu{cuda_major}=={cudnn_major}.*'"
        return [_Problem(text, fix)]
    text = f"{name} needs {need} libraries ({', '.join(missing)} not found); "
    if others:
        seen: dict[str, list[str]] = {}
        for lib in others:
            seen.setdefault(lib.label(), []).append(lib.provenance())
        found = "; ".join(f"{label} from {', '.join(dict.fromkeys(where))}" for label, where in seen.items())
        text += f"found only: {found}"
    else:
        text += "no CUDA runtime, cuBLAS or cuDNN library was found on the loader path or in pip's nvidia wheels"
    return [_Problem(text, fix)]


def _driver_problems(name: str, need_cuda: str, system: SystemFacts, reqs: Mapping[str, Any]) -> list[_Problem]:
    driver = system.driver
    need_major = _major(need_cuda)
    if not driver.present or need_major is None:
        return []
    floor = minimum_driver(need_major, reqs)
    have_major = _major(driver.cuda)
    too_old_major = have_major is not None and have_major < need_major
    below_floor = bool(driver.version and floor and _vtuple(driver.version) < _vtuple(floor))
    if not (too_old_major or below_floor):
        return []
    upto = f"supports CUDA up to {driver.cuda}" if driver.cuda else "is too old"
    text = f"the driver {driver.version or ''} {upto}, {name} needs {need_major}.x".replace("  ", " ")
    fix = f"upgrade the NVIDIA driver to >= {floor}" if floor else "upgrade the NVIDIA driver"
    if have_major:
        fix += f", or install a {name.split(' ')[0]} build for CUDA {have_major}"
    return [_Problem(f"{text}: upgrade the driver", fix)]


def judge(backend: str, facts: FrameworkFacts, system: SystemFacts, device: str | None = None,
          reqs: Mapping[str, Any] | None = None) -> Verdict:
    """Decide whether ``backend`` can use a GPU here; pure: it only reads the facts it is given.

    ``device`` is what a job asks for (``"gpu"``, ``"cuda"``...; None: the doctor's plain question). It only
    changes one case: a CPU-only build on a machine with a GPU is ``cpu-only`` when nothing asked for the
    GPU (a deliberate CPU package), and ``mismatch`` when a job asked for the GPU/CUDA target.
    """
    reqs = reqs or requirements()
    key = facts.framework
    rules = framework_rules(key, reqs)
    display = rules.get("display", key)
    name = f"{display} {_series(facts.version)}".strip() if facts.version else display

    def verdict(status: str, reason: str, fix: str, problems: Sequence[_Problem] = ()) -> Verdict:
        return Verdict(backend, key, status, reason, fix, [p.text for p in problems], facts)

    if not facts.installed:
        return verdict("not-installed", f"{display} is not installed in this environment ({sys.executable})",
                       rules.get("install", f"pip install {key}"))
    if facts.error:
        hint = f"; its log: {' | '.join(facts.log[:3])}" if facts.log else ""
        return verdict("mismatch", f"{name} is installed but its probe failed: {facts.error}{hint}",
                       f"reinstall it in this environment: pip install --force-reinstall {facts.distribution or key}")

    row = build_requirement(key, facts.version, reqs)
    need_cuda = facts.built_cuda or row.get("cuda")
    need_cudnn = facts.built_cudnn or row.get("cudnn")
    cpu_build = facts.cuda_build is False
    problems: list[_Problem] = []
    if not cpu_build and need_cuda:
        if not facts.bundles_cuda:
            problems += _library_problems(name, key, need_cuda, need_cudnn, facts, system, reqs)
        problems += _driver_problems(name, need_cuda, system, reqs)
    fixes = "; ".join(dict.fromkeys(p.fix for p in problems))
    details = "; ".join(p.text for p in problems)
    physical = system.driver.gpu_count or len(system.driver.gpus)
    built = f" (built for CUDA {need_cuda}" + (f", cuDNN {need_cudnn})" if need_cudnn else ")") if need_cuda else ""

    if not cpu_build and facts.gpus:
        names = f": {', '.join(facts.gpu_names)}" if facts.gpu_names else ""
        note = f"; note: {details}" if details else ""
        return verdict("gpu-ready", f"{name}{built} sees {facts.gpus} GPU(s){names}{note}", "", problems)

    if not system.driver.present or physical == 0:
        why = "no NVIDIA driver" if not system.driver.present else "the NVIDIA driver lists no GPU"
        errs = f" ({'; '.join(system.driver.errors[:2])})" if system.driver.errors and not system.driver.present else ""
        reason = f"{why} on this machine{errs}"
        if cpu_build:
            reason += f"; {name} is also built without CUDA"
        if details:
            reason += f"; even with a GPU, {details}"
        fix = "run on a machine with an NVIDIA GPU and driver"
        fix += f"; {rules.get('install_gpu')}" if cpu_build else (f"; {fixes}" if fixes else "")
        return verdict("cpu-only", reason, fix, problems)

    if system.visible_gpus == 0:
        reason = f"CUDA_VISIBLE_DEVICES={system.cuda_visible_devices!r} hides all {physical} GPU(s)"
        reason += f"; also: {details}" if details else ""
        fix = "unset CUDA_VISIBLE_DEVICES, or list the GPUs to use (e.g. CUDA_VISIBLE_DEVICES=0)"
        return verdict("cpu-only", reason, fix + (f"; {fixes}" if fixes else ""), problems)

    if cpu_build:
        gpus = f"this machine has {physical} GPU(s)"
        if _is_accelerator(device):
            return verdict("mismatch", f"{name} is built without CUDA, but the {device} target was asked for ({gpus})",
                           rules.get("install_gpu", ""), problems)
        return verdict("cpu-only", f"{name} is built without CUDA ({gpus})", rules.get("install_gpu", ""), problems)

    if facts.gpus is None and not problems:  # a framework that cannot count devices (ONNX Runtime)
        return verdict("gpu-ready", f"{name}{built}: GPU support built in, {physical} GPU(s) visible, "
                       "the CUDA libraries it needs are present", "", problems)

    if problems:
        return verdict("mismatch", details, fixes, problems)
    log = f"; its log: {' | '.join(facts.log[:4])}" if facts.log else ""
    return verdict("mismatch", f"{name}{built} sees no GPU although {system.visible_gpus} GPU(s) are visible; the "
                   f"doctor found no library or driver cause{log}",
                   "run the framework with its CUDA logging on (TF_CPP_MIN_LOG_LEVEL=0) and read its messages",
                   problems)


# probes --------------------------------------------------------------------------------------------------

def available_probes() -> dict[str, str]:
    """Backend name -> ``module:function`` of its probe (the ``harness.probes`` entry points)."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=PROBE_GROUP)}


_LOG_RE = re.compile(
    r"could not load|cannot dlopen|cannot open shared object|cuinit|driver|libcud|cudnn|cublas|"
    r"skipping registering gpu|gpu will not be used|cuda", re.IGNORECASE,
)
_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+\s+\S+:\d+\]\s*")


def _log_hints(stderr: str, limit: int = 6) -> list[str]:
    out: list[str] = []
    for line in stderr.splitlines():
        line = _LOG_PREFIX.sub("", line.strip())
        if line and _LOG_RE.search(line) and line not in out:
            out.append(line[:240])
        if len(out) >= limit:
            break
    return out


def _framework_of(target: str) -> str:
    func = target.rpartition(":")[2]
    return func[len("probe_"):] if func.startswith("probe_") else func


def run_probe(target: str, timeout: float = PROBE_TIMEOUT_S, static: bool = False) -> FrameworkFacts:
    """Run one probe (``module:function``) in its own interpreter and return its facts, whatever happens.

    ``static``: no GPU is visible, so the probe may read build facts from files instead of importing.
    """
    start = time.perf_counter()
    result, stderr, code = _run_worker(["probe", target], timeout, {STATIC_ENV: "1"} if static else None)
    if isinstance(result, dict) and "framework" in result:
        facts = FrameworkFacts.from_dict(result)
    else:
        framework = _framework_of(target)
        dists = framework_rules(framework).get("distributions", [framework])
        facts = FrameworkFacts(framework=framework, installed=installed_distribution(dists) is not None)
        tail = " | ".join(stderr.strip().splitlines()[-2:])[:300]
        facts.error = f"the probe process {'timed out' if code is None else f'exited with {code}'}: {tail}"
    facts.log = list(dict.fromkeys([*facts.log, *_log_hints(stderr)]))
    facts.probe_s = round(time.perf_counter() - start, 2)
    return facts


def installed_distribution(names: Iterable[str]) -> tuple[str, str] | None:
    """The first of ``names`` that is installed, with its version."""
    return first_installed(names)


# the report ----------------------------------------------------------------------------------------------

def doctor_report(backends: Sequence[str] | None = None, device: str | None = None,
                  timeout: float = PROBE_TIMEOUT_S, live: bool | None = None) -> dict[str, Any]:
    """The doctor's findings as JSON-able data (for ``harness doctor --json`` and every results' env.json).

    Never raises: whatever fails becomes an ``error`` inside the report. ``backends`` None means every backend
    with a registered probe. Probes run in parallel subprocesses, one per distinct probe function.
    ``live`` None: import the frameworks only when a GPU is visible (without one no framework can see a GPU,
    and the build facts can be read from files in a fraction of the time); True: always import them.
    """
    start = time.perf_counter()
    report: dict[str, Any] = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device,
                              "requirements": str(REQUIREMENTS_FILE), "backends": {}, "errors": []}
    driver = _safe_driver_facts()
    visible = visible_gpu_count(os.environ.get("CUDA_VISIBLE_DEVICES"), driver.gpu_count or len(driver.gpus))
    static = not live and visible == 0
    report["probes"] = "static (no GPU visible)" if static else "live (frameworks imported)"
    try:
        probes = available_probes()
    except Exception as exc:
        probes, _ = {}, report["errors"].append(f"probe registry: {exc}")
    names = list(dict.fromkeys(backends)) if backends else sorted(probes)
    targets = sorted({probes[n] for n in names if n in probes})
    with ThreadPoolExecutor(max_workers=max(1, len(targets) + 1)) as pool:
        sys_future = pool.submit(system_facts, True, driver)
        futures = {t: pool.submit(run_probe, t, timeout, static) for t in targets}
        try:
            system = sys_future.result()
        except Exception as exc:
            system = SystemFacts(DriverFacts(present=False), os.environ.get("CUDA_VISIBLE_DEVICES"), 0,
                                 errors=[f"system facts failed: {exc}"])
        facts_by_target: dict[str, FrameworkFacts] = {}
        for target, fut in futures.items():
            try:
                facts_by_target[target] = fut.result()
            except Exception as exc:
                facts_by_target[target] = FrameworkFacts(_framework_of(target), installed=False,
                                                         error=f"probe failed: {exc}")
    report["system"] = asdict(system)
    for name in names:
        try:
            if name not in probes:
                raise LookupError(f"no probe registered for backend {name!r} (known: {', '.join(sorted(probes))})")
            verdict = judge(name, facts_by_target[probes[name]], system, device)
            report["backends"][name] = verdict.to_dict()
        except Exception as exc:
            report["backends"][name] = {"backend": name, "framework": None, "status": "mismatch",
                                        "reason": f"the doctor could not judge it: {exc}",
                                        "fix": "see the error; is the project installed (pip install -e .)?",
                                        "problems": [], "facts": None}
    report["explicit"] = bool(backends)
    report["exit_status"] = exit_status(report)
    report["duration_s"] = round(time.perf_counter() - start, 2)
    return report


def exit_status(report: Mapping[str, Any], allow_cpu: bool = False) -> int:
    """0: every backend asked about is gpu-ready; 1: any mismatch; 3: otherwise not GPU-ready.

    Without an explicit backend list, frameworks that are not installed are left out (you did not ask for
    them). ``allow_cpu`` counts ``cpu-only`` as success (CI on machines without a GPU: "nothing is broken").
    """
    explicit = report.get("explicit", False)
    statuses = [v.get("status") for v in report.get("backends", {}).values()]
    if not explicit:
        statuses = [s for s in statuses if s != "not-installed"]
    if "mismatch" in statuses:
        return EXIT_MISMATCH
    ok = {"gpu-ready", "cpu-only"} if allow_cpu else {"gpu-ready"}
    return EXIT_READY if statuses and all(s in ok for s in statuses) else EXIT_NOT_READY


def _short_path(path: str) -> str:
    i = path.find("site-packages/")
    return path[i:] if i >= 0 else path


def format_report(report: Mapping[str, Any], width: int = 100) -> str:
    """The report as text for a terminal ``width`` columns wide."""
    sysf = report.get("system", {})
    drv = sysf.get("driver", {})
    lines = ["Machine"]

    def row(label: str, value: str) -> None:
        lines.extend(textwrap.wrap(value, width, initial_indent=f"  {label:<22}", subsequent_indent=" " * 24,
                                   break_on_hyphens=False) or [f"  {label}"])

    if drv.get("present"):
        row("NVIDIA driver", f"{drv.get('version') or '?'} (from {drv.get('source')}), CUDA up to "
                             f"{drv.get('cuda') or '?'} ({drv.get('cuda_source') or '-'})")
    else:
        row("NVIDIA driver", "none found: " + "; ".join(drv.get("errors", [])))
    gpus = drv.get("gpus") or []
    row("GPUs", ", ".join(f"{g['index']}: {g['name']}" for g in gpus) or str(drv.get("gpu_count", 0)))
    cvd = sysf.get("cuda_visible_devices")
    row("CUDA_VISIBLE_DEVICES", "(unset)" if cvd is None else repr(cvd) + f" -> {sysf.get('visible_gpus')} visible")
    libs = sysf.get("libraries", [])
    if not libs:
        row("CUDA libraries", "none found")
    for i, lib in enumerate(libs):
        what = CudaLibrary(**lib)
        text = f"{what.label()}, {what.provenance() if what.origin == 'pip' else what.origin}"
        if what.loadable is False:
            text += f", NOT LOADABLE: {what.error}"
        row("CUDA libraries" if i == 0 else "", text)
        lines.append(" " * 26 + _short_path(what.path))

    lines += ["", f"{'backend':<12}{'framework':<22}{'built for':<26}{'GPUs':<6}verdict"]
    for name, v in report.get("backends", {}).items():
        f = v.get("facts") or {}
        display = framework_rules(f.get("framework", "")).get("display", f.get("framework", "?"))
        fw = f"{display} {f.get('version') or ''}".strip()
        if f.get("cuda_build") is False:
            built = "CPU only"
        elif f.get("built_cuda"):
            built = f"CUDA {f['built_cuda']}" + (f", cuDNN {f['built_cudnn']}" if f.get("built_cudnn") else "")
        else:
            built = "-"
        seen = "-" if f.get("gpus") is None else str(f.get("gpus"))
        status = v.get("status", "?")
        lines.append(f"{name:<12}{fw[:21]:<22}{built[:25]:<26}{seen:<6}{status.upper() if status == 'mismatch' else status}")
        for label, text in (("why", v.get("reason")), ("fix", v.get("fix"))):
            if text:
                lines.extend(textwrap.wrap(text, width, initial_indent=f"    {label}: ", subsequent_indent=" " * 9,
                                           break_on_hyphens=False))
    lines += ["", f"exit status {report.get('exit_status')} (0 all GPU-ready, 1 a mismatch to fix, 3 not GPU-ready); "
                  f"{report.get('duration_s')} s"]
    return "\n".join(lines)


# subprocess workers: python -m harness.doctor probe MODULE:FUNC | libraries PATH... -----------------------

def _worker_main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m harness.doctor probe MODULE:FUNC | libraries PATH...", file=sys.stderr)
        return 2
    if argv[0] == "libraries":
        print(_JSON_MARK + json.dumps(_library_worker(argv[1:])), flush=True)
        return 0
    if argv[0] == "probe" and len(argv) == 2:
        import importlib

        module_name, _, attr = argv[1].partition(":")
        result = getattr(importlib.import_module(module_name), attr)()
        data = asdict(result) if is_dataclass(result) else dict(result)
        print(_JSON_MARK + json.dumps(data, default=str), flush=True)
        return 0
    print(f"unknown worker command: {' '.join(argv)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
