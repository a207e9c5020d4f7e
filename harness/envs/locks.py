"""File locks between harness processes: one builds an environment while the others wait for it.

``fcntl.flock`` on a lock file next to the environments: the kernel drops the lock when its holder dies
(even by SIGKILL), so a killed build never leaves a lock that blocks the next run. Two kinds:

* a build lock (exclusive) per environment folder: whoever holds it builds; the others wait, then find
  the environment complete and reuse it;
* a use lock (shared) held by every run that uses an environment, for the whole run: removing an
  environment needs it exclusively, so ``harness env remove`` or the clean-up of a superseded
  environment never deletes one a running job is using.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


class FileLock:
    """A held (or not) ``flock`` on ``path``; :meth:`release` frees it."""

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = True, on_wait: Callable[[], None] | None = None) -> bool:
        """Take the lock; ``wait`` False: return False at once when another process holds it.

        ``on_wait`` is called once before blocking, so the user learns why nothing happens.
        """
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                return False
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, mode)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


@contextmanager
def locked(path: Path, shared: bool = False, wait: bool = True,
           on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """``with locked(path) as got:``; ``got`` is False only when ``wait`` is False and the lock is busy."""
    lock = FileLock(path, shared)
    got = lock.acquire(wait, on_wait)
    try:
        yield got
    finally:
        lock.release()
