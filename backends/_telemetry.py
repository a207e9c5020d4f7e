"""OpenVINO's and NNCF's usage telemetry off for the import that would start it (see :mod:`harness.core.telemetry`).

Both create an ``openvino_telemetry.Telemetry`` at import time with ``disable_in_ci=True``; that library
decides consent once, there, and declines when the process looks like a CI run (``CI=true``). Without it,
``import openvino`` writes a client id to ``~/intel/openvino_ga_cid``, counts every run in ``~/intel/stats``
and forks a sender that, with no network, hangs and outlives the worker. The marker is set only around the
import and removed after, so nothing else in the process (pytest, other libraries) sees a CI run.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from harness.core.telemetry import telemetry_allowed

MARKER = ("CI", "true")


@contextmanager
def frameworks_telemetry_off() -> Iterator[None]:
    """Import OpenVINO / NNCF inside this block: their telemetry then has no consent for this process."""
    name, value = MARKER
    if telemetry_allowed() or name in os.environ:
        yield  # asked for, or a real CI run: the library already decides by the user's own settings
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
