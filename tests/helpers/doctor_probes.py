"""Probes that misbehave on purpose, run by the real doctor machinery in its real subprocesses.

The function is named like the OpenCV probe so that the doctor treats its failure as OpenCV's (it reads the
framework from the probe's name when a probe gives no answer); ``HARNESS_TEST_PROBE`` picks the misbehaviour.
"""

from __future__ import annotations

import os
import time


def probe_opencv() -> dict:
    how = os.environ.get("HARNESS_TEST_PROBE", "")
    if how == "hang":  # a framework import that never finishes
        time.sleep(600)
    if how == "abort":  # a framework import that crashes its process
        os.abort()
    raise SystemExit(f"set HARNESS_TEST_PROBE to hang or abort, not {how!r}")
