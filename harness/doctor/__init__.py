"""Is each backend ready to use the GPU here, and if not, why: driver, CUDA/cuDNN libraries, builds.

The classic failure this exists for: TensorFlow built for one CUDA, the machine has another, TF quietly
registers no GPU and the detector runs on the CPU. The doctor gathers facts, then judges them; one module
per concern:

* :mod:`~harness.doctor.facts`: the dataclasses of what is known, and the machine's facts (the NVIDIA
  driver via NVML / ``nvidia-smi`` / ``/proc``, the GPUs, ``CUDA_VISIBLE_DEVICES``);
* :mod:`~harness.doctor.libraries`: which CUDA runtime / cuBLAS / cuDNN libraries are loadable, from where,
  brought by which wheel for which framework, and what version each reports about itself;
* :mod:`~harness.doctor.probes`: running each framework's probe (``harness.probes`` entry points,
  ``backends/probes.py``) in its own subprocess, with a time limit and a chosen interpreter;
* :mod:`~harness.doctor.worker`: the subprocess protocol both of those use (``python -m harness.doctor``);
* :mod:`~harness.doctor.rules`: ``harness/cuda_requirements.toml`` (builds, driver minimums, sonames);
* :mod:`~harness.doctor.verdicts`: :func:`judge`, pure, facts -> ``gpu-ready`` / ``cpu-only`` /
  ``mismatch`` / ``not-installed`` / ``unknown`` with a reason and a fix; the exit status;
* :mod:`~harness.doctor.report`: :func:`doctor_report`, the JSON-able report (``--json``, ``env.json``);
* :mod:`~harness.doctor.formatting`: the report(s) as terminal text.

Nothing here imports a framework: the probes import them in their own processes.
"""

from harness.doctor.facts import (
    DriverFacts,
    FrameworkFacts,
    GpuInfo,
    SystemFacts,
    driver_facts,
    system_facts,
    visible_gpu_count,
)
from harness.doctor.formatting import format_report, format_reports
from harness.doctor.libraries import CudaLibrary, find_cuda_libraries, library_versions
from harness.doctor.probes import (
    PROBE_GROUP,
    PROBE_TIMEOUT_S,
    STATIC_ENV,
    available_probes,
    installed_distribution,
    probe_limit,
    run_probe,
    run_static_probes,
)
from harness.doctor.report import doctor_report
from harness.doctor.rules import (
    REQUIREMENTS_FILE,
    build_requirement,
    driver_cuda_from_version,
    framework_rules,
    minimum_driver,
    requirements,
    sonames_for,
)
from harness.doctor.verdicts import (
    EXIT_MISMATCH,
    EXIT_NOT_READY,
    EXIT_READY,
    STATUSES,
    Verdict,
    combined_exit_status,
    exit_status,
    judge,
)

__all__ = [
    "EXIT_MISMATCH", "EXIT_NOT_READY", "EXIT_READY", "PROBE_GROUP", "PROBE_TIMEOUT_S", "REQUIREMENTS_FILE",
    "STATIC_ENV", "STATUSES", "CudaLibrary", "DriverFacts", "FrameworkFacts", "GpuInfo", "SystemFacts", "Verdict",
    "available_probes", "build_requirement", "combined_exit_status", "doctor_report", "driver_cuda_from_version",
    "driver_facts", "exit_status", "find_cuda_libraries", "format_report", "format_reports", "framework_rules",
    "installed_distribution", "judge", "library_versions", "minimum_driver", "probe_limit", "requirements",
    "run_probe", "run_static_probes", "sonames_for", "system_facts", "visible_gpu_count",
]
