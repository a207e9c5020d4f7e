"""Which CUDA runtime / cuBLAS / cuDNN / driver libraries a program here could load, and from where.

The search approximates the loader without loading anything in this process (``LD_LIBRARY_PATH``, the
``ldconfig`` cache, ``CUDA_HOME`` and ``/usr/local/cuda*``, the system folders, pip's
``site-packages/nvidia/*/lib``). Each pip file is traced to the wheel that installed it and to the framework
whose requirements pulled that wheel in, because "found only PyTorch's CUDA 13" is the actionable answer.
Versions come from the libraries themselves, asked in a throwaway subprocess (:func:`harness.doctor.dlopen.dlopen_versions`):
cuDNN 9 for CUDA 12 and for CUDA 13 share one file name, only ``cudnnGetCudartVersion`` tells them apart.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from harness.core.versions import name_and_version
from harness.doctor.rules import display_list, requirements
from harness.doctor.dlopen import LIB_RE
from harness.doctor.worker import run_worker

LIBRARY_CHECK_TIMEOUT_S = 30.0


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
            who = f"{display_list(self.required_by)}'s wheels: " if self.required_by else "pip: "
            return f"{who}{self.distribution or 'an nvidia-* wheel'}"
        return f"{self.origin}: {Path(self.path).parent}"


# where to look ------------------------------------------------------------------------------------------

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
        if LIB_RE.match(name.split(" ")[0]) and path:
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


# who brought it -----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _pip_owners() -> dict[str, tuple[str, str]]:
    """Resolved library path -> (distribution, version) for the nvidia-* / cuda-* wheels installed here."""
    owners: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        name, version = name_and_version(dist)
        name = (name or "").lower()
        if not name.startswith(("nvidia-", "cuda-")):
            continue
        for f in dist.files or ():
            if LIB_RE.match(Path(str(f)).name):
                try:
                    owners[str(Path(dist.locate_file(f)).resolve())] = (name, version or "")
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


# the search ---------------------------------------------------------------------------------------------

def _candidates() -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for origin, folder in _library_search_dirs():
        try:
            found += [(origin, p) for p in sorted(folder.iterdir()) if LIB_RE.match(p.name)]
        except OSError:
            continue
    return found + [("ldconfig", p) for p in _ldconfig_entries()]


def find_cuda_libraries() -> list[CudaLibrary]:
    """Every CUDA runtime/cuBLAS/cuDNN/driver library a program here could load, without loading any."""
    found: dict[str, CudaLibrary] = {}
    owners = _pip_owners()
    closures = _framework_closures()
    for origin, path in _candidates():
        match = LIB_RE.match(path.name)
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
        kind, soname_major = match.group(1), int(match.group(2))
        lib = CudaLibrary(kind=kind, name=path.name, path=str(path), soname_major=soname_major, origin=origin)
        if kind in ("cudart", "cublas"):
            lib.cuda_major = soname_major
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


# asking each library ------------------------------------------------------------------------------------

def library_versions(libs: list[CudaLibrary], timeout: float = LIBRARY_CHECK_TIMEOUT_S) -> None:
    """Fill in version / CUDA major / loadability, asking each library in a subprocess."""
    if not libs:
        return
    answer = run_worker(["libraries", *[lib.path for lib in libs]], timeout)
    if answer.data is None:
        if answer.timed_out:
            why = f"the library check timed out after {timeout:g} s"
        else:
            why = answer.start_error or f"the library check failed (exit {answer.returncode})"
        tail = answer.stderr.strip()[-200:]
        for lib in libs:
            lib.error = lib.error or (f"{why}: {tail}" if tail else why)
        return
    by_path = {r["path"]: r for r in answer.data}
    for lib in libs:
        info = by_path.get(lib.path, {})
        lib.loadable = info.get("loadable", lib.loadable)
        lib.version = info.get("version", lib.version)
        lib.error = info.get("error", lib.error)
        if info.get("cuda_major") is not None:
            lib.cuda_major = info["cuda_major"]
