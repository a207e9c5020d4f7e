"""What a CUDA library says about itself once loaded: the part of the doctor's library check that runs in
the throwaway worker process (harness.doctor.worker), apart from the search for the files, so that the worker
and the search need not import each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from harness.doctor.rules import cuda_version_text

#: the CUDA runtime, cuBLAS, cuDNN and driver library file names the doctor looks for (kind, major, rest)
LIB_RE = re.compile(r"^lib(cudart|cublas|cudnn|cuda)\.so\.(\d+)((?:\.\d+)*)$")


def _ask_version(lib: Any, kind: str | None) -> dict[str, Any]:
    """The version (and CUDA major) one loaded library reports about itself."""
    import ctypes

    info: dict[str, Any] = {}
    value = ctypes.c_int()
    if kind == "cudart" and lib.cudaRuntimeGetVersion(ctypes.byref(value)) == 0:
        info["version"] = cuda_version_text(value.value)
        info["cuda_major"] = value.value // 1000
    elif kind == "cublas":
        parts = [str(value.value) for prop in range(3) if lib.cublasGetProperty(prop, ctypes.byref(value)) == 0]
        if parts:
            info["version"] = ".".join(parts)
            info["cuda_major"] = int(parts[0])
    elif kind == "cudnn":
        lib.cudnnGetVersion.restype = ctypes.c_size_t
        v = int(lib.cudnnGetVersion())
        cudnn_major, rest = (v // 10000, v % 10000) if v >= 90000 else (v // 1000, v % 1000)
        info["version"] = f"{cudnn_major}.{rest // 100}.{rest % 100}"
        if hasattr(lib, "cudnnGetCudartVersion"):
            lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
            info["cuda_major"] = int(lib.cudnnGetCudartVersion()) // 1000
    elif kind == "cuda" and lib.cuDriverGetVersion(ctypes.byref(value)) == 0:
        info["version"] = cuda_version_text(value.value)  # the CUDA this driver supports
    return info


def dlopen_versions(paths: Sequence[str]) -> list[dict[str, Any]]:
    """In a throwaway process: dlopen each library and ask it its version (no GPU or driver needed)."""
    import ctypes

    out = []
    for path in paths:
        info: dict[str, Any] = {"path": path}
        kind = (LIB_RE.match(Path(path).name) or [None, None])[1]
        try:
            lib = ctypes.CDLL(path)
            info["loadable"] = True
            info.update(_ask_version(lib, kind))
        except OSError as exc:
            info["loadable"], info["error"] = False, str(exc)
        except Exception as exc:  # a missing symbol: loadable, version unknown
            info["error"] = f"{type(exc).__name__}: {exc}"
        out.append(info)
    return out
