"""One writer per results folder at a time.

Two ``harness run --out X`` at once (or ``harness eval X`` while X is being written) would each rewrite
``runs.csv`` and ``jobs.json`` from what they read at the start, and one job's rows would silently vanish.
The writer therefore holds an exclusive ``flock`` on ``X/.lock`` for as long as it writes. The kernel drops
the lock when the holding process dies, however it dies (SIGKILL included), so a crashed run never leaves
a folder locked; the file itself stays (deleting a lock file races with the next opener) and only says who
held it last. The holder writes its pid, command and start time into it, so a refused run can say who is
using the folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError


class FolderInUse(HarnessError):
    """Another process (or another writer in this one) is writing the results folder."""


def _describe(holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    parts = [f"pid {pid}" if pid else "a process"]
    if holder.get("command"):
        parts.append(f"({holder['command']})")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return " ".join(parts)


class RunLock:
    """An exclusive, non-blocking lock on ``<folder>/.lock``; use as a context manager or acquire/release."""

    def __init__(self, folder: Path, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.command = command if command is not None else " ".join(["harness", *sys.argv[1:]])
        self._fh: Any = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no locking (documented in docs/reliability.md)
            return
        try:
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:  # a read-only copy of a folder, a lock file someone made unreadable
            raise HarnessError(f"cannot lock results folder {self.folder}: {exc.strerror or exc}",
                               "make the folder writable (or copy it somewhere writable) and run the command again") \
                from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            text = fh.read()
            fh.close()
            try:
                holder = json.loads(text) if text.strip() else {}
            except ValueError:  # being written this very moment
                holder = {}
            raise FolderInUse(
                f"results folder {self.folder} is in use by another harness process: {_describe(holder)}",
                "wait until it ends (or stop it), or give the new run another folder (--out DIR)",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "command": self.command,
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.truncate(0)  # nobody holds it now; the kernel releases the lock with the descriptor
        except OSError:
            pass
        fh.close()

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
