"""Reaching Ray: a local instance started (and stopped) for the run, or an existing cluster.

No address: the harness starts a private local Ray bound to 127.0.0.1 (``address="local"``, so it never
attaches by accident to another cluster running on this machine), without the dashboard, and stops it when
the run ends. Ray picks the loopback address only when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the
environment before Ray is imported (measured: without it, Ray 2.60 advertises the machine's interface
address, and a cluster started that way hung in GCS timeouts here), so the harness sets it when it starts
Ray itself. With an address (``auto``, ``HOST:6379``), it connects to that cluster and
only disconnects at the end: the cluster is not the harness's to stop.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from harness.core.errors import HarnessError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
INSTALL_FIX = "install the ray extra: pip install -e '.[ray]' (Ray 2.60: pip install 'ray[default]==2.60.*')"


def import_ray(loopback: bool = False) -> Any:
    """Ray, or one clear error saying how to install it. ``loopback``: make a Ray imported now use 127.0.0.1."""
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as exc:
        raise HarnessError(f"the Ray executor needs Ray, which cannot be imported here ({exc})", INSTALL_FIX) from None
    return ray


@dataclass
class RaySession:
    """A connection to Ray; :meth:`close` ends the connection the harness made (and with it a local instance
    it started), never one it found already open in this process."""

    address: str  # what was asked ("local" for a private instance, "current" for one found open)
    gcs_address: str
    started: bool  # a private local instance, stopped by close()
    owned: bool = True  # this session called ray.init, so close() calls ray.shutdown

    def close(self) -> None:
        import ray

        if self.owned and ray.is_initialized():
            ray.shutdown()


#: seconds to reach a head given as HOST:PORT before Ray is asked to connect (Ray itself retries for minutes)
REACH_TIMEOUT_S = 5.0

ADDRESS_FIX = ("give auto (a node of the cluster), HOST:PORT of the head's GCS (6379 by default, as "
               "`ray start --head` prints it) or ray://HOST:PORT (Ray Client, port 10001)")


def check_address(address: str) -> None:
    """Refuse an address Ray could not mean, at once: ``ray.init`` takes a malformed one as a cluster to look
    for and fails only after the run made its results folder."""
    text = address.strip()
    if text == "auto":
        return
    rest = text[len("ray://"):] if text.startswith("ray://") else text
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port:
        raise HarnessError(f"--address {address!r} is not a Ray cluster address", ADDRESS_FIX)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise HarnessError(f"--address {address!r}: invalid port {port!r} (a port is 1-65535)", ADDRESS_FIX)
    if any(c.isspace() or c in "/?#@" for c in host):
        raise HarnessError(f"--address {address!r}: {host!r} is not a host name or IP address", ADDRESS_FIX)


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """One clear error at once for a HOST:PORT nobody listens on: measured, Ray 2.60's ``ray.init`` keeps
    retrying such an address for more than five minutes, printing GCS timeouts, before it gives up. A host
    that does not answer at all (a firewall dropping packets) is given ``timeout`` seconds."""
    check_address(address)
    text = address.strip()
    if text.startswith("ray://"):
        text = text[len("ray://"):]
    host, sep, port = text.rpartition(":")
    if not sep:
        return  # "auto": Ray says itself when it finds nothing
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except socket.timeout:
        raise HarnessError(f"cannot reach the Ray cluster's head at {address}: no answer within {timeout:g} s",
                           "check the address, that the head runs, and that no firewall drops this machine's "
                           "packets to it") from None
    except OSError as exc:
        raise HarnessError(f"cannot reach the Ray cluster's head at {address}: {exc.strerror or exc}",
                           "check the address (the head's `ray start --head` prints it; the GCS port is 6379 by "
                           "default), that the head runs, and that this machine can reach it") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> RaySession:
    """Connect to ``address``, or start a private local Ray (see the module docstring). A Ray already
    initialized in this process (a test's cluster, a notebook) is used as it is."""
    ray = import_ray(loopback=address is None)
    if ray.is_initialized():
        context = ray.get_runtime_context()
        return RaySession("current", str(getattr(context, "gcs_address", "")), started=False, owned=False)
    # Ray's own warnings (its token-authentication notice among them) stay in Ray's session logs
    # (/tmp/ray/session_*/logs); the run's terminal output is the harness's
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": "ERROR"}
    try:
        if address is None:
            from harness.core.settings import logical_cpus

            info = ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                            num_cpus=num_cpus or logical_cpus(), **kwargs)
        else:
            check_reachable(address)
            info = ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = "start a local Ray" if address is None else f"connect to the Ray cluster at {address}"
        raise HarnessError(
            f"cannot {where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
            "start the head with `ray start --head` and give its address (--address HOST:6379, or auto on a "
            "node of the cluster); with Ray's token authentication, RAY_AUTH_TOKEN must match the cluster's"
            if address is not None else "check that this machine can run Ray (`ray start --head` by hand shows why)",
        ) from None
    address_info = getattr(info, "address_info", {}) or {}
    gcs = str(address_info.get("gcs_address") or address_info.get("address", ""))
    return RaySession(address or "local", gcs, started=address is None)
