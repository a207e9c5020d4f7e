"""The child side of :class:`harness.execution.process.SubprocessExecutor`: run ONE job, then exit.

``python -m harness.execution.worker --fd N`` reads the job spec as one JSON line on stdin, runs it with
:func:`harness.execution.runner.run_job`, and writes JSON lines to file descriptor ``N``: first
``{"type": "hello", "protocol": ...}`` (:mod:`harness.core.worker_protocol`: the parent refuses a worker of another
protocol version, e.g. an older harness in another environment), then ``{"type": "progress", "done",
"total", "fps"}`` while it runs, then ``{"type": "result", "result": JobResult.to_dict()}``.
``python -m harness.execution.worker --hello`` prints the hello on stdout and exits: how the parent checks an
interpreter before it sends it a job.
Only plain JSON crosses the process boundary (never pickle), so a malicious or broken child cannot make
the parent execute anything.

Why a separate process: a segfault in a native library, a hang, an out-of-memory kill or a framework's
CUDA libraries stay inside this process. stdout and stderr go to the job's log file (the parent reads its
tail to explain a crash); ``faulthandler`` writes the Python stack of a fatal signal there too.

The parent keeps stdin open for the whole job; if the parent dies (even by SIGKILL) stdin reaches EOF and
this process exits at once instead of running on as an orphan.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import threading
from typing import Any

EXIT_PARENT_GONE = 75
EXIT_BAD_SPEC = 64


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths and the like, for json.dumps."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return value.tolist()
    return str(value)


class _Channel:
    """JSON lines to the parent; one lock so the decoder thread can never interleave a message."""

    def __init__(self, fd: int) -> None:
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, default=_jsonable, allow_nan=True) + "\n").encode("utf-8")
        with self._lock:
            self._fh.write(data)

    def close(self) -> None:
        self._fh.close()


def _exit_when_parent_goes(stdin: Any) -> None:
    """Block on stdin; EOF means the parent closed it or died: stop now (no cleanup can be trusted)."""
    try:
        while stdin.read(65536):
            pass
    except (OSError, ValueError):
        pass
    os._exit(EXIT_PARENT_GONE)


#: prctl(2) option: the signal this process gets when the thread that started it dies
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the executor dies (Linux ``PR_SET_PDEATHSIG``), so a worker busy in
    native code that never reads its stdin again still ends with it; elsewhere the stdin watch below does."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request was made: it will never fire
        os._exit(EXIT_PARENT_GONE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.execution.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, help="file descriptor for JSON-line messages")
    parser.add_argument("--hello", action="store_true", help="print the protocol hello as JSON and exit")
    args = parser.parse_args(argv)

    from harness.core.worker_protocol import hello_message

    if args.hello:
        print(json.dumps(hello_message()), flush=True)
        return 0
    if args.fd is None:
        parser.error("--fd is required (or --hello)")
    faulthandler.enable(file=sys.stderr, all_threads=True)
    _die_with_parent()
    channel = _Channel(args.fd)
    channel.send(hello_message())
    stdin = sys.stdin.buffer
    line = stdin.readline()
    if not line:
        return EXIT_PARENT_GONE
    try:
        spec_dict = json.loads(line)
    except json.JSONDecodeError as exc:
        print(f"worker: bad job spec on stdin: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    threading.Thread(target=_exit_when_parent_goes, args=(stdin,), name="harness-parent-watch", daemon=True).start()

    from harness.core.jobs import JobSpec
    from harness.execution.runner import run_job

    spec = JobSpec.from_dict(spec_dict)

    def progress(done: int, total: int | None, fps: float, phase: str = "") -> None:
        # "phase" is an optional key: a parent that predates it reads the message as before
        channel.send({"type": "progress", "done": done, "total": total, "fps": fps, "phase": phase})

    result = run_job(spec, progress)
    channel.send({"type": "result", "result": result.to_dict()})
    channel.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: some frameworks' thread pools hang or crash at exit, and the result is sent.
    os._exit(code)
