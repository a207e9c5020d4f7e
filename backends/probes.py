"""What each framework says about its own GPU support, for ``harness doctor``.

Registered under the ``harness.probes`` entry-point group (keyed by backend name). Each probe imports its
framework lazily, in the throwaway process the doctor starts for it, and returns
:class:`harness.doctor.facts.FrameworkFacts`: installed, version, built with CUDA (for which CUDA/cuDNN),
and the GPUs the framework itself can see. A framework that is not installed gives ``installed=False``; a failing
import gives ``error``; a probe never raises.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from pathlib import Path
from types import ModuleType

from harness.doctor.facts import FrameworkFacts
from harness.doctor.probes import STATIC_ENV, installed_distribution
from harness.doctor.rules import framework_rules

_STATIC_NOTE = "no GPU is visible, so the framework was not imported: its build facts were read from its files"


def _static() -> bool:
    """The doctor asks for file-only probing when no GPU is visible (importing TF would only cost seconds)."""
    return os.environ.get(STATIC_ENV) == "1"


def _load_file(package: str, relative: str) -> ModuleType | None:
    """Execute one plain file of ``package`` (e.g. TF's build_info.py) without importing the package."""
    spec = importlib.util.find_spec(package)
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / relative
        if path.is_file():
            file_spec = importlib.util.spec_from_file_location(f"_harness_probe_{package}", path)
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
            return module
    return None


def _start(framework: str, module: str) -> FrameworkFacts:
    dist = installed_distribution(framework_rules(framework).get("distributions", [module]))
    facts = FrameworkFacts(framework=framework, installed=importlib.util.find_spec(module) is not None)
    if dist:
        facts.distribution, facts.version = dist
    return facts


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:500]


def probe_tensorflow() -> FrameworkFacts:
    """TensorFlow: its build info (CUDA/cuDNN it was compiled for) and the GPUs it registers."""
    facts = _start("tensorflow", "tensorflow")
    if not facts.installed:
        return facts
    if _static():
        try:
            info = dict(getattr(_load_file("tensorflow", "python/platform/build_info.py"), "build_info", {}))
        except Exception as exc:
            info = {}
            facts.log.append(f"build_info.py: {_error(exc)}")
        if info:
            facts.cuda_build = bool(info.get("is_cuda_build"))
            facts.built_cuda = info.get("cuda_version") or None
            facts.built_cudnn = info.get("cudnn_version") or None
            facts.details["build_info"] = {k: v for k, v in info.items() if isinstance(v, (str, bool, int, list))}
            facts.gpus, facts.details["static"] = 0, _STATIC_NOTE
            return facts
    try:
        from backends._tf_common import import_tensorflow

        tf = import_tensorflow()
    except Exception as exc:
        facts.error = f"import tensorflow failed: {_error(exc)}"
        return facts
    try:
        facts.version = tf.__version__
        info = dict(tf.sysconfig.get_build_info())
        facts.cuda_build = bool(info.get("is_cuda_build", tf.test.is_built_with_cuda()))
        facts.built_cuda = info.get("cuda_version") or None
        facts.built_cudnn = info.get("cudnn_version") or None
        facts.details["build_info"] = {k: v for k, v in info.items() if isinstance(v, (str, bool, int, list))}
        gpus = tf.config.list_physical_devices("GPU")
        facts.gpus = len(gpus)
        for gpu in gpus:
            try:
                facts.gpu_names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
            except Exception:
                facts.gpu_names.append(gpu.name)
    except Exception as exc:
        facts.error = f"TensorFlow probe failed: {_error(exc)}"
    return facts


def _cudnn_text(version: int | None) -> str | None:
    """torch's cuDNN integer (8907, 92400) as text (8.9.7, 9.24.0)."""
    if not version:
        return None
    major, rest = (version // 10000, version % 10000) if version >= 90000 else (version // 1000, version % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def probe_torch() -> FrameworkFacts:
    """PyTorch: the CUDA its wheel bundles (torch.version.cuda), cuDNN, and torch.cuda.device_count()."""
    facts = _start("torch", "torch")
    facts.bundles_cuda = True
    if not facts.installed:
        return facts
    if _static():
        try:
            version = _load_file("torch", "version.py")
        except Exception as exc:
            version = None
            facts.log.append(f"torch/version.py: {_error(exc)}")
        if version is not None:
            facts.version = getattr(version, "__version__", facts.version)
            facts.built_cuda = getattr(version, "cuda", None)
            facts.cuda_build = facts.built_cuda is not None
            facts.gpus, facts.details["static"] = 0, _STATIC_NOTE
            return facts
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch

            facts.version = torch.__version__
            facts.built_cuda = torch.version.cuda
            facts.cuda_build = torch.version.cuda is not None
            facts.details["hip"] = getattr(torch.version, "hip", None)
            if facts.cuda_build:
                try:
                    facts.built_cudnn = _cudnn_text(torch.backends.cudnn.version())
                except Exception as exc:
                    facts.log.append(f"cuDNN: {_error(exc)}")
            facts.gpus = torch.cuda.device_count()
            facts.details["cuda_is_available"] = torch.cuda.is_available()
            for i in range(facts.gpus if facts.details["cuda_is_available"] else 0):
                facts.gpu_names.append(torch.cuda.get_device_name(i))
        facts.log += [str(w.message)[:240] for w in caught if "cuda" in str(w.message).lower()]
    except Exception as exc:
        facts.error = f"PyTorch probe failed: {_error(exc)}"
    return facts


def parse_opencv_build(info: str) -> dict[str, str | bool | None]:
    """The CUDA/cuDNN lines of ``cv2.getBuildInformation()``: {"cuda": bool, "cuda_version", "cudnn_version"}."""
    cuda = re.search(r"NVIDIA CUDA:\s*YES(?:\s*\(ver\s*([\d.]+))?", info)
    cudnn = re.search(r"cuDNN:\s*YES(?:\s*\(ver\s*([\d.]+))?", info)
    return {
        "cuda": cuda is not None,
        "cuda_version": cuda.group(1) if cuda else None,
        "cudnn_version": cudnn.group(1) if cudnn else None,
    }


def probe_opencv() -> FrameworkFacts:
    """OpenCV: CUDA/cuDNN from the build information, DNN CUDA targets, cv2.cuda device count."""
    facts = _start("opencv", "cv2")
    if not facts.installed:
        return facts
    try:
        import cv2
    except Exception as exc:
        facts.error = f"import cv2 failed: {_error(exc)}"
        return facts
    try:
        facts.version = cv2.__version__
        build = parse_opencv_build(cv2.getBuildInformation())
        facts.cuda_build = bool(build["cuda"])
        facts.built_cuda, facts.built_cudnn = build["cuda_version"], build["cudnn_version"]
        try:
            targets = cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_CUDA)
            facts.details["dnn_cuda_targets"] = [int(t) for t in targets]
        except Exception as exc:
            facts.details["dnn_cuda_targets"] = f"unavailable: {_error(exc)}"
        count = cv2.cuda.getCudaEnabledDeviceCount()
        if count < 0:  # -1: the CUDA driver is missing or too old for this build
            facts.log.append("cv2.cuda.getCudaEnabledDeviceCount() == -1: CUDA driver not installed or incompatible")
        facts.gpus = max(count, 0)
        facts.details["opencl"] = bool(cv2.ocl.haveOpenCL())
        from backends.opencv_dnn import IMPORTERS, importers

        found = importers(cv2)
        facts.details["importers"] = [IMPORTERS[name] for name in found]
        if "Tensorflow" not in found:  # OpenCV 5.1: the opencv backend's reference route changes
            facts.details["notes"] = [
                f"OpenCV {cv2.__version__} has no TensorFlow importer (readNetFromTensorflow): the opencv backend "
                "runs the reference SSD through its ONNX conversion (made once by `harness convert` in an "
                "environment with TensorFlow); a TensorFlow .pb of your own needs an ONNX export or "
                "opencv-python<5.1 in an environment"]
    except Exception as exc:
        facts.error = f"OpenCV probe failed: {_error(exc)}"
    return facts


def probe_onnxruntime() -> FrameworkFacts:
    """ONNX Runtime: whether its build has the CUDA execution provider, and the CUDA it was built for."""
    facts = _start("onnxruntime", "onnxruntime")
    if not facts.installed:
        return facts
    try:
        import onnxruntime as ort
    except Exception as exc:
        facts.error = f"import onnxruntime failed: {_error(exc)}"
        return facts
    try:
        facts.version = ort.__version__
        facts.providers = list(ort.get_available_providers())
        facts.cuda_build = "CUDAExecutionProvider" in facts.providers
        try:
            from onnxruntime.capi import build_and_package_info as info

            facts.built_cuda = getattr(info, "cuda_version", None) or None
            facts.built_cudnn = getattr(info, "cudnn_version", None) or None
            facts.details["package"] = getattr(info, "package_name", None)
        except Exception:
            pass
        facts.details["device"] = ort.get_device()
        # ONNX Runtime cannot count devices without creating a session: gpus stays None
    except Exception as exc:
        facts.error = f"ONNX Runtime probe failed: {_error(exc)}"
    return facts


def probe_openvino() -> FrameworkFacts:
    """OpenVINO: the devices its plugins find. Its GPU plugin drives Intel GPUs through
    OpenCL/Level Zero, never CUDA, so ``gpus`` counts OpenVINO's own ``GPU`` devices; the CPU's precision
    capabilities (``OPTIMIZATION_CAPABILITIES``: FP32, INT8, BF16 ...) go with them."""
    facts = _start("openvino", "openvino")
    if not facts.installed:
        return facts
    from backends._telemetry import frameworks_telemetry_off

    try:
        with frameworks_telemetry_off():
            import openvino as ov
    except Exception as exc:
        facts.error = f"import openvino failed: {_error(exc)}"
        return facts
    try:
        core = ov.Core()
        devices = list(core.available_devices)
        facts.version = str(ov.get_version()).split("-")[0]
        facts.providers = devices
        gpus = [d for d in devices if d.startswith("GPU")]
        facts.gpus = len(gpus)
        facts.gpu_names = [f"{d}: {core.get_property(d, 'FULL_DEVICE_NAME')}" for d in gpus]
        facts.details["devices"] = {d: str(core.get_property(d, "FULL_DEVICE_NAME")) for d in devices}
        facts.details["cpu_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:
        facts.error = f"OpenVINO probe failed: {_error(exc)}"
    return facts
