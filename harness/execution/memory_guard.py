"""A job's memory ceiling, enforced by the parent: a job that outgrows the machine dies alone.

Left to the kernel, a worker that asks for more memory than the machine has is stopped by the out-of-memory
killer, which picks by its own score: seen here, it killed another process on the machine first (a 22.8 GB
offline batch). So the executor watches the resident memory of the worker and everything it started, and
stops that process group itself when it passes the ceiling: the job gets a row that says so, nothing else is
touched. ``RLIMIT_AS`` was not chosen: TensorFlow and PyTorch reserve far more address space than they use,
so an address-space limit fails healthy jobs; a cgroup needs privileges the harness cannot assume.

The ceiling is the memory available when the job starts, less a reserve for the rest of the machine;
``HARNESS_MEMORY_LIMIT_MB`` sets it outright.
"""

from __future__ import annotations

import os
import time

LIMIT_ENV = "HARNESS_MEMORY_LIMIT_MB"
#: what is left to the rest of the machine: this share of its memory, at least RESERVE_MIN_MB
RESERVE_SHARE = 0.10
RESERVE_MIN_MB = 1024.0
#: seconds between two looks at the worker's memory (a fast-growing job overshoots by what it adds in this time)
POLL_S = 0.2


def memory_limit_mb() -> float:
    """The ceiling for the next job: ``HARNESS_MEMORY_LIMIT_MB``, else what is available now less the reserve."""
    import psutil

    given = os.environ.get(LIMIT_ENV, "").strip()
    if given:
        try:
            value = float(given)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
        from harness.core.errors import HarnessError

        raise HarnessError(f"{LIMIT_ENV}={given!r} is not a positive number of megabytes",
                           f"e.g. {LIMIT_ENV}=8000, or unset it for the memory available less a reserve")
    vm = psutil.virtual_memory()
    reserve = max(RESERVE_MIN_MB, RESERVE_SHARE * vm.total / 2**20)
    return max(256.0, vm.available / 2**20 - reserve)


class MemoryGuard:
    """Samples the resident memory of a process and its descendants; :meth:`exceeded` says when it passed."""

    def __init__(self, pid: int, limit_mb: float) -> None:
        self.pid = pid
        self.limit_mb = limit_mb
        self.peak_mb = 0.0
        self._next = 0.0

    def tree_rss_mb(self) -> float:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def exceeded(self) -> float | None:
        """The tree's resident MB when it is over the ceiling (checked at most every :data:`POLL_S`), else None."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + POLL_S
        rss = self.tree_rss_mb()
        self.peak_mb = max(self.peak_mb, rss)
        return rss if rss > self.limit_mb else None
