"""A framework missing from the environment a job runs in: say which environment, and fix it there.

The worker of a job in another environment reports ``BackendUnavailable`` like any other; without the
environment's name the fix ("pip install tensorflow") would point at the wrong ``site-packages``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.errors import BackendUnavailable, HarnessError

if TYPE_CHECKING:
    from harness.core.jobs import JobSpec


def in_environment(exc: HarnessError, spec: "JobSpec") -> HarnessError:
    """``exc`` naming the job's environment when it is a missing framework outside the default one."""
    if not isinstance(exc, BackendUnavailable) or (spec.env == "default" and not spec.python):
        return exc
    from harness.core.registry import backend_class

    try:
        package = " ".join(backend_class(spec.backend).distributions[:1]) or "its framework's package"
    except HarnessError:
        package = "the backend's package"
    if spec.python:
        return BackendUnavailable(f"{exc.problem} (in python {spec.python})",
                                  f"install it into that interpreter: {spec.python} -m pip install {package}")
    return BackendUnavailable(f"{exc.problem} (in environment {spec.env!r})",
                              f"add {package} to that environment's requirements: harness env create {spec.env} "
                              f"<its requirements> {package} (see harness env list)")
