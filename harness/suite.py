"""Which jobs a run means: from command-line flags, or the embedded default suite.

(Suite files in TOML extend this module.)
"""

from __future__ import annotations

from typing import Any, Iterable

from harness.detector import available_backends, backend_class
from harness.errors import HarnessError
from harness.jobs import JobSpec

DEFAULT_SOURCE = "pets09-s2l1"
#: the order backends appear in reports; others follow alphabetically
BACKEND_ORDER = ("tf1", "tf2", "opencv", "torch", "onnxruntime", "tflite")


def installed_backends() -> list[str]:
    """Registered backends whose framework is installed, in report order."""
    names = sorted(available_backends(), key=lambda n: (BACKEND_ORDER.index(n) if n in BACKEND_ORDER else 99, n))
    out = []
    for name in names:
        try:
            if not backend_class(name).missing_modules():
                out.append(name)
        except HarnessError:
            continue
    return out


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; values that look like numbers or booleans become them."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HarnessError(f"option {pair!r} is not key=value", "write e.g. --opt input=image_tensor:0")
        lowered = value.lower()
        if lowered in {"true", "false"}:
            out[key] = lowered == "true"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def jobs_from_flags(
    backends: list[str],
    devices: list[str],
    *,
    source: str,
    model: str | None,
    **common: Any,
) -> list[JobSpec]:
    return [JobSpec(backend=b, source=source, model=model, device=d, **common) for b in backends for d in devices]
