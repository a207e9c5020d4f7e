"""The backend registry: which backends exist, how to load one or its converter, and the order reports show
them in.

Backends are found through the ``harness.backends`` entry-point group, so a third-party package adds one
without editing the harness; ``"package.module:Class"`` also works for a backend that is not installed as a
package (tests use this for deliberately crashing backends). A backend's converter (:mod:`harness.core.converter`)
is found by the backend's name, without importing the backend's runtime module: this project's in
:data:`CONVERTERS`, a third party's through the ``harness.converters`` entry-point group. Importing this module
imports no framework.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from harness.core.converter import Converter
from harness.core.detector import Detector, DetectorConfig
from harness.core.errors import BackendUnavailable, HarnessError, did_you_mean

ENTRY_POINT_GROUP = "harness.backends"
CONVERTER_GROUP = "harness.converters"

#: this project's converters by backend name, as ``module:Class`` strings (imported only when asked for). A
#: table rather than entry points so that adding one needs no reinstall; a third party's entry points add to it
CONVERTERS: dict[str, str] = {
    "tf2": "backends.tf2_convert:TF2Converter",
    "torch": "backends.torch_convert:TorchConverter",
    "onnxruntime": "backends.onnxruntime_convert:ONNXRuntimeConverter",
    "openvino": "backends.openvino_convert:OpenVINOConverter",
    "tflite": "backends.tflite_convert:TFLiteConverter",
}

#: the order backends appear in reports and in the default suite; others follow alphabetically
BACKEND_ORDER: tuple[str, ...] = ("tf1", "tf2", "opencv", "torch", "onnxruntime", "openvino", "tflite")


def backend_order_key(backend: str) -> tuple[int, str]:
    """Sort key putting the known backends in :data:`BACKEND_ORDER`, the rest after them by name."""
    return (BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else len(BACKEND_ORDER), backend)


def available_backends() -> dict[str, str]:
    """Backend name -> ``module:attr`` for every registered entry point."""
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep.value for ep in eps}


def _import_target(target: str, name: str, base: type = Detector) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise HarnessError(f"backend {name!r} is not of the form package.module:Class",
                           "name a registered backend, or write e.g. mypkg.detectors:MyDetector")
    module = importlib.import_module(module_name)
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise HarnessError(f"backend {name!r}: {module_name} has no attribute {attr!r}",
                               f"check the class name in {module_name} (a {base.__name__} subclass)")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise HarnessError(f"backend {name!r}: {target} is not a {base.__name__} subclass",
                           f"point at a class derived from harness.{base.__name__}")
    return obj


def _backend_target(name: str) -> str:
    """The ``module:Class`` a backend name stands for; an unknown name is one error naming the known ones."""
    backends = available_backends()
    if name in backends:
        return backends[name]
    if ":" in name:
        return name
    raise HarnessError(
        f"unknown backend {name!r}.{did_you_mean(name, backends)}",
        f"choose one of: {', '.join(sorted(backends, key=backend_order_key)) or '(none registered: is the project installed?)'}",
    )


def backend_class(name: str) -> type[Detector]:
    """Find a backend by registered name, or by ``package.module:Class``."""
    target = _backend_target(name)
    try:
        cls: type[Detector] = _import_target(target, name)
        return cls
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} cannot be imported: {exc}",
            "install its framework, e.g. pip install -e '.[all]' (see README: Install)",
        ) from exc


def converter_targets() -> dict[str, str]:
    """Backend name -> ``module:Class`` of its converter: this project's, then third parties' entry points."""
    return {**CONVERTERS, **{ep.name: ep.value for ep in metadata.entry_points(group=CONVERTER_GROUP)}}


def converter_class(name: str) -> type[Converter] | None:
    """The converter of backend ``name`` (None: it converts nothing), imported without the backend's runtime
    module; an unknown backend is the same error as :func:`backend_class`'s."""
    target = converter_targets().get(name)
    if target is None:
        _backend_target(name)  # an unknown name is an error, a known one converts nothing
        return None
    try:
        cls: type[Converter] = _import_target(target, name, Converter)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the converter of backend {name!r} cannot be imported: {exc}",
            "install its framework, e.g. pip install -e '.[all]' (see README: Install)",
        ) from exc
    return cls


def is_own_backend(name: str) -> bool:
    """Whether ``name`` is one of this project's backends (its class lives in the ``backends`` package)."""
    try:
        return _backend_target(name).startswith("backends.")
    except HarnessError:
        return False


def create_detector(backend: str, config: DetectorConfig) -> Detector:
    return backend_class(backend)(config)


def installed_backends() -> list[str]:
    """Registered backends whose framework is installed, in report order (clients of a served model, which
    need an endpoint, are not among them)."""
    out = []
    for name in sorted(available_backends(), key=backend_order_key):
        try:
            cls = backend_class(name)
            if not cls.remote and not cls.missing_modules():
                out.append(name)
        except HarnessError:
            continue
    return out
