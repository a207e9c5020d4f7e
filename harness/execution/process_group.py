"""The processes a job's worker started, found and ended after the job: nothing a job starts outlives it.

Each worker is started in a session of its own (``start_new_session``), so its process group id is its pid,
and every process it forks (a framework's telemetry sender, a data-loader pool, a compiler) stays in that
group even after the worker exits and the kernel re-parents it to init. After each job the executor lists the
group's members from ``/proc``, ends them with SIGKILL and records them in the job's row: a process that
outlives its job holds memory and CPU while the next job is measured, and may send data on its own.

A process that calls ``setsid`` itself leaves the group and is not found; none of the frameworks the harness
runs does. On systems without ``/proc`` (macOS) nothing is listed, and the group is still sent SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of each living process of process group ``pgid`` (zombies excluded)."""
    found: list[tuple[int, str]] = []
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'
            state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
            if int(pgrp) != pgid or state in ("Z", "X"):
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
        found.append((int(entry.name), cmd or stat[stat.index("(") + 1:stat.rindex(")")]))
    return sorted(found)


def end_group(pgid: int, wait_s: float = 5.0) -> list[tuple[int, str]]:
    """SIGKILL every process left in group ``pgid``; returns what was found. Waits up to ``wait_s`` for them
    to be gone (init reaps an orphan once it is dead)."""
    left = group_members(pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return left
    deadline = time.monotonic() + wait_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def describe(processes: list[tuple[int, str]], limit: int = 3) -> str:
    """``pid 123 (python -m ...)`` for a row's note, the first few in full."""
    words = [f"pid {pid} ({cmd[:80]})" for pid, cmd in processes[:limit]]
    if len(processes) > limit:
        words.append(f"and {len(processes) - limit} more")
    return ", ".join(words)
