"""The backend registry: which backends exist, how to load one, and the order reports show them in.

Backends are found through the ``harness.backends`` entry-point group, so a third-party package adds one
without editing the harness; ``"package.module:Class"`` also works for a backend that is not installed as a
package (tests use this for deliberately crashing backends). Importing this module imports no framework.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from harness.core.detector import Detector, DetectorConfig
from harness.core.errors import BackendUnavailable, HarnessError, did_you_mean

ENTRY_POINT_GROUP = "harness.backends"

#: the order backends appear in reports and in the default suite; others follow alphabetically
BACKEND_ORDER: tuple[str, ...] = ("tf1", "tf2", "opencv", "torch", "onnxruntime", "openvino", "tflite")


def backend_order_key(backend: str) -> tuple[int, str]:
    """Sort key putting the known backends in :data:`BACKEND_ORDER`, the rest after them by name."""
    return (BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else len(BACKEND_ORDER), backend)


def available_backends() -> dict[str, str]:
    """Backend name -> ``module:attr`` for every registered entry point."""
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep.value for ep in eps}


def _import_target(target: str, name: str) -> type[Detector]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise HarnessError(f"backend {name!r} is not of the form package.module:Class",
                           "name a registered backend, or write e.g. mypkg.detectors:MyDetector")
    module = importlib.import_module(module_name)
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise HarnessError(f"backend {name!r}: {module_name} has no attribute {attr!r}",
                               f"check the class name in {module_name} (a Detector subclass)")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Detector)):
        raise HarnessError(f"backend {name!r}: {target} is not a Detector subclass",
                           "point at a class derived from harness.Detector")
    return obj


def backend_class(name: str) -> type[Detector]:
    """Find a backend by registered name, or by ``package.module:Class``."""
    backends = available_backends()
    if name in backends:
        target = backends[name]
    elif ":" in name:
        target = name
    else:
        raise HarnessError(
            f"unknown backend {name!r}.{did_you_mean(name, backends)}",
            f"choose one of: {', '.join(sorted(backends, key=backend_order_key)) or '(none registered: is the project installed?)'}",
        )
    try:
        return _import_target(target, name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} cannot be imported: {exc}",
            "install its framework, e.g. pip install -e '.[all]' (see README: Install)",
        ) from exc


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
