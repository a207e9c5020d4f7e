"""Third-party usage telemetry, off for the harness's own processes.

A benchmark must not report a user's models or machines anywhere on its own. Some frameworks the harness runs
send usage data unless told not to; each is told through its own documented switch, for the processes the
harness starts (this command, its job workers, the local Ray it starts), never by writing the user's global
setting (OpenVINO's ``opt_in_out --opt_out`` writes ``~/intel/openvino_telemetry`` for every program of the
user): an environment variable set here reaches only the harness and what it starts.

* Ray: ``RAY_USAGE_STATS_ENABLED=0`` (Ray's usage-stats opt-out; read by the head the harness starts).
* NNCF: ``NNCF_CI=1`` (NNCF replaces its telemetry with a stub when it is set; nothing else reads it).
* ONNX Runtime: ``ORT_DISABLE_TELEMETRY=1`` (the full opt-out of its Linux/macOS telemetry, which 1.32 has:
  measured here, ``import onnxruntime`` writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid``
  and an upload queue ``onnxruntime.db`` without it, nothing with it) and ``ORT_TELEMETRY_DISABLED=1`` (the
  name later releases read).
* OpenVINO and NNCF both send through ``openvino_telemetry``, created with ``disable_in_ci=True`` when
  ``import openvino`` / ``import nncf`` runs: :func:`backends._telemetry.frameworks_telemetry_off` marks those
  imports (and only them) as such a run, so the library decides "no consent" and writes nothing under
  ``~/intel``, forks no sender and sends nothing.
* TensorFlow, PyTorch, OpenCV and TFLite send nothing.

A variable the user set keeps the user's value. ``HARNESS_TELEMETRY=allow`` leaves every framework to its own
settings (the user asked for its telemetry).
"""

from __future__ import annotations

import os
from typing import MutableMapping

#: the environment variables that turn a framework's telemetry off, with the value that does
OPT_OUTS: dict[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "NNCF_CI": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "ORT_TELEMETRY_DISABLED": "1",
}
#: set to ``allow`` to leave the frameworks' telemetry as their own settings say
SWITCH = "HARNESS_TELEMETRY"


def telemetry_allowed(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the user asked for the frameworks' own telemetry settings (``HARNESS_TELEMETRY=allow``)."""
    env = os.environ if environ is None else environ
    return env.get(SWITCH, "").strip().lower() == "allow"


def apply_opt_outs(environ: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Add the opt-out variables to ``environ`` (this process's environment by default) where unset."""
    env = os.environ if environ is None else environ
    if not telemetry_allowed(env):
        for name, value in OPT_OUTS.items():
            env.setdefault(name, value)
    return env
