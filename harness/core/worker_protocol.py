"""The version of the parent-worker protocol, and the hello that carries it.

A job may run in another Python environment, with the harness that was installed there. Parent and worker
must then agree on the job spec and the messages (``JobSpec.to_dict``, progress and result lines). Rather
than let a newer spec crash an older worker halfway through ("unknown job spec keys"), every worker first
says which protocol it speaks, and the parent refuses a worker that speaks another one with one clear error.

Bump :data:`PROTOCOL_VERSION` whenever ``JobSpec``/``JobResult`` or the message lines change in a way the
other side cannot read. ``python -m harness.execution.worker --hello`` prints the same hello and exits, so an
interpreter can be checked before any job is sent to it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from harness.core.errors import ProtocolMismatch

#: 1: the first versioned protocol (JobSpec with ``env`` and ``python``; hello, progress, result lines)
#: 2: JobSpec gains machine/resources (Ray), scenario (scenarios) and precision/strict_precision
PROTOCOL_VERSION = 2


def harness_version() -> str:
    from harness import __version__

    return __version__


def hello_message() -> dict[str, Any]:
    """What a worker says first: the protocol it speaks and where it runs."""
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "harness": harness_version(),
        "python": ".".join(map(str, sys.version_info[:3])),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "harness_path": str(Path(__file__).resolve().parents[1]),
    }


def check_hello(message: Mapping[str, Any] | None, where: str, fix: str) -> None:
    """Raise :class:`ProtocolMismatch` unless ``message`` is a hello of this protocol version.

    ``where`` names the worker's environment for the message, ``fix`` says how to bring it in line.
    """
    if not isinstance(message, Mapping) or message.get("type") != "hello":
        raise ProtocolMismatch(
            f"the harness in {where} sent no protocol version: it is older than this one "
            f"(harness {harness_version()}, protocol {PROTOCOL_VERSION})",
            fix,
        )
    theirs = message.get("protocol")
    if theirs != PROTOCOL_VERSION:
        raise ProtocolMismatch(
            f"the harness in {where} speaks worker protocol {theirs} (harness {message.get('harness')}), "
            f"this one speaks protocol {PROTOCOL_VERSION} (harness {harness_version()})",
            fix,
        )
