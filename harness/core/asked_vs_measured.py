"""What a job asked for against what the framework reports it got: the one shape of placement and precision.

A device and a precision are both requests a framework may quietly not honour. Each is recorded the same way:
``requested`` (what the job asked), ``effective`` (what was read back from the framework after warm-up, never
the request echoed), ``evidence`` (how it was read) and ``fallback`` (asked, and got something else), so the
runner, the results and the report treat both alike.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


class AskedVsMeasured:
    """The shared interface of :class:`~harness.core.detector.Placement` and
    :class:`~harness.core.precision.PrecisionReport` (both dataclasses that define the fields)."""

    requested: Any
    effective: str  # a field of PrecisionReport; Placement's measured device (``actual``) under this name too
    evidence: str

    @property
    def fallback(self) -> bool:
        """Something was asked for and the framework ran something else."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """As jobs.json keeps it: the fields, plus ``fallback``."""
        d = asdict(self)  # type: ignore[call-overload]
        d["fallback"] = self.fallback
        return d
