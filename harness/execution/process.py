"""Each job in a fresh process: a crash, a hang or an out-of-memory kill costs one row, not the suite.

The parent starts ``python -m harness.execution.worker`` per job (a clean interpreter, like multiprocessing's
"spawn", but with nothing pickled: the spec goes in as one JSON line, progress and the result come back as
JSON lines on a dedicated pipe). The child's stdout and stderr go to a log file, so a TensorFlow banner
never garbles the progress bars and a crash can be explained by the last lines it wrote.

What becomes of a job:

- it returns a result (``ok``, ``fallback``, or ``failed`` with the exception type and message): kept;
- its process dies from a signal (SIGSEGV, SIGABRT, SIGBUS...): ``crashed``, with the signal's name, the
  frames it had done, and the tail of its stderr (which holds faulthandler's Python stack);
- SIGKILL that the executor did not send: ``crashed``, named as the likely out-of-memory kill, with the
  child's peak resident memory (from ``wait4``);
- it runs past its timeout: ``timeout``; the executor sends SIGTERM, then SIGKILL after a grace period;
- it outgrows the memory ceiling (:mod:`harness.execution.memory_guard`): ``crashed``, its process group killed by the
  executor before the kernel's out-of-memory killer picks some other process;
- it exits non-zero, or zero without a result: ``crashed`` with the exit code and the stderr tail.

The child runs in its own session (a terminal's Ctrl-C reaches only the parent, which then stops the child
itself) and exits by itself if the parent dies, because its stdin, held open by the parent, reaches EOF.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.envs.interpreter import Interpreter, python_fix
from harness.envs.resolve import InterpreterResolver
from harness.core.errors import HarnessError, ProtocolMismatch
from harness.execution.interface import Executor
from harness.core.jobs import JobResult, JobSpec
from harness.execution.memory_guard import LIMIT_ENV, MemoryGuard, memory_limit_mb
from harness.execution.process_group import describe, end_group
from harness.core.worker_protocol import check_hello
from harness.execution.runner import Progress, failure_result
from harness.core.telemetry import apply_opt_outs

#: a job with no timeout of its own gets this many seconds (a full PETS run of a slow CPU model fits easily)
DEFAULT_TIMEOUT_S = 3600.0
#: seconds between SIGTERM and SIGKILL when stopping a child
TERMINATE_GRACE_S = 5.0
#: after a child has sent its result, how long it may take to exit before it is killed (the result stands)
EXIT_GRACE_S = 30.0
STDERR_TAIL_LINES = 60

SIGNAL_NOTES = {
    "SIGSEGV": "segmentation fault in native code",
    "SIGABRT": "aborted, often a failed assertion or check in a native library",
    "SIGBUS": "bus error in native code",
    "SIGFPE": "arithmetic error in native code",
    "SIGILL": "illegal instruction: a binary built for another CPU (e.g. AVX on a CPU without it)",
    "SIGKILL": "killed from outside: most often the kernel's out-of-memory killer (check `dmesg`)",
    "SIGTERM": "terminated from outside",
}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def child_environment(interpreter: Interpreter | None = None, base: Mapping[str, str] | None = None,
                      import_path: Sequence[str] | None = None) -> dict[str, str]:
    """This process's environment plus its ``sys.path`` as PYTHONPATH, so the child imports the same code
    (including ``package.module:Class`` backends importable here only through a path pytest or a script
    added). For an interpreter of another environment, nothing of ours: no PYTHONPATH at all, or this
    environment's packages (and their CUDA libraries) would shadow that one's.

    ``base`` and ``import_path`` replace ``os.environ`` and ``sys.path`` for a parent that is not a plain process:
    a Ray task's worker, whose environment and path hold Ray's own per-task settings (``OMP_NUM_THREADS``
    set to the task's CPUs, Ray's bundled packages) that a job must not inherit."""
    if interpreter is not None:
        env = interpreter.environ(base)
        apply_opt_outs(env)  # no framework telemetry from a job (harness.core.telemetry)
        env["PYTHONFAULTHANDLER"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env
    env = dict(os.environ if base is None else base)
    paths: list[str] = []
    for entry in (sys.path if import_path is None else import_path):
        path = os.path.abspath(entry or os.getcwd())
        if path not in paths and os.path.isdir(path):
            paths.append(path)
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry and entry not in paths:
            paths.append(entry)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    apply_opt_outs(env)
    env["PYTHONFAULTHANDLER"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES, max_bytes: int = 64 * 1024) -> list[str]:
    """The last non-empty lines of a log file (read from its end: logs of long jobs can be large)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - max_bytes, 0))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return kept[-lines:]


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>.+)$')


def explain_stderr(lines: list[str], keep: int = 5) -> str:
    """The part of a dead worker's stderr that explains it, on one line.

    After a fatal signal faulthandler prints ``Fatal Python error: ...`` and every thread's stack; what
    matters is the line the program wrote just before, the fatal line, and the top frames of the current
    thread (where it died). Otherwise, the last ``keep`` lines.
    """
    fatal = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Fatal Python error")), None)
    if fatal is None:
        return " | ".join(lines[-keep:])
    parts = []
    before = [ln for ln in lines[:fatal] if not _FRAME.match(ln) and "most recent call first" not in ln]
    if before:
        parts.append(before[-1])
    parts.append(lines[fatal])
    current = next((i for i in range(fatal, len(lines)) if lines[i].startswith("Current thread")), None)
    if current is not None:
        frames = []
        for ln in lines[current + 1:]:
            m = _FRAME.match(ln)
            if not m:
                break
            frames.append(f"{m['func']} ({Path(m['file']).name}:{m['line']})")
        if frames:
            parts.append("in " + " <- ".join(frames[:3]))
    return " | ".join(parts)


def _wait_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int | None, float | None]:
    """Wait up to ``timeout`` s for ``proc``; return its exit code (negative: signal) and peak RSS in MB.

    Reaps with ``wait4`` instead of ``Popen.poll`` so that the peak memory of a child that died (e.g. an
    out-of-memory kill) is still known. Returns ``(None, None)`` while it runs.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            return proc.returncode, getattr(proc, "harness_peak_mb", None)
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return proc.poll(), None
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
            proc.harness_peak_mb = usage.ru_maxrss / divisor  # type: ignore[attr-defined]
            return proc.returncode, proc.harness_peak_mb  # type: ignore[attr-defined]
        if time.monotonic() >= deadline:
            return None, None
        time.sleep(0.02)


def _running(proc: subprocess.Popen) -> bool:
    return _wait_rusage(proc, 0)[0] is None


class SubprocessExecutor(Executor):
    """Runs every job in a fresh ``python -m harness.execution.worker`` process.

    ``log_dir``: where ``<file stem>.log`` (the child's stdout+stderr) is kept; None = a temporary folder
    removed by :meth:`close`. ``default_timeout_s`` applies to jobs without ``timeout_s``; a job's
    ``timeout_s`` of 0 or less means no limit. ``environ``/``sys_path``: what workers start from instead of
    this process's environment and path (the Ray executor's node side passes them, see child_environment).
    """

    name = "process"

    def __init__(
        self,
        log_dir: Path | None = None,
        default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
        terminate_grace_s: float = TERMINATE_GRACE_S,
        resolver: InterpreterResolver | None = None,
        environ: Mapping[str, str] | None = None,
        sys_path: Sequence[str] | None = None,
    ) -> None:
        #: which interpreter runs each job (``JobSpec.env`` / ``.python``), checked once per environment
        self.resolver = resolver or InterpreterResolver()
        self._tmp: tempfile.TemporaryDirectory | None = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="harness-logs-")
            log_dir = Path(self._tmp.name)
        self.log_dir = Path(log_dir)
        self.default_timeout_s = default_timeout_s
        self.terminate_grace_s = terminate_grace_s
        self._proc: subprocess.Popen | None = None
        #: the environment and import path workers start from (None: this process's); see child_environment
        self.environ = dict(environ) if environ is not None else None
        self.sys_path = list(sys_path) if sys_path is not None else None

    # ---------------------------------------------------------------------------------------------------
    def _timeout_for(self, spec: JobSpec) -> float | None:
        limit = spec.timeout_s if spec.timeout_s is not None else self.default_timeout_s
        return limit if limit and limit > 0 else None

    def _stop(self, proc: subprocess.Popen) -> str:
        """SIGTERM, then SIGKILL after the grace period. Returns what it took."""
        if not _running(proc):
            return "had already exited"
        proc.terminate()
        code, _ = _wait_rusage(proc, self.terminate_grace_s)
        if code is not None:
            return "stopped by SIGTERM"
        proc.kill()
        _wait_rusage(proc, 10.0)
        return f"ignored SIGTERM for {self.terminate_grace_s:g} s, killed with SIGKILL"

    def run(self, spec: JobSpec, progress: Progress | None = None) -> JobResult:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.file_stem}.log"  # bounded: job ids can be longer than a file name
        try:  # an environment that cannot be built or an interpreter that fails its check: before any job
            interpreter = self.resolver.resolve(spec.env, spec.python)
        except HarnessError as exc:
            cause = f"{type(exc).__name__}: {exc.problem}" + (f" (fix: {exc.fix})" if exc.fix else "")
            return failure_result(spec, "failed", cause, {"log": str(log_path), "env": spec.env_label})
        read_fd, write_fd = os.pipe()
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [interpreter.python if interpreter else sys.executable, "-m", "harness.execution.worker",
                     "--fd", str(write_fd)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    env=child_environment(interpreter, self.environ, self.sys_path),
                    start_new_session=True,
                )
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            return failure_result(spec, "failed", f"could not start a worker process: {exc}", {"log": str(log_path)})
        os.close(write_fd)
        self._proc = proc
        job: JobResult | None = None
        try:
            job = self._supervise(spec, proc, read_fd, log_path, progress)
            if interpreter is not None:
                job.info.setdefault("interpreter", interpreter.to_dict())
            return job
        finally:
            # Always leave no child behind: on KeyboardInterrupt (Ctrl-C, SIGTERM via run.py) too.
            if _running(proc):
                self._stop(proc)
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            os.close(read_fd)
            self._proc = None
            self._end_leftovers(spec, proc, job, log_path)

    @staticmethod
    def _end_leftovers(spec: JobSpec, proc: subprocess.Popen, job: JobResult | None, log_path: Path) -> None:
        """Whatever the worker started and left running (its process group outlives it): ended and recorded
        in the job's ``info`` (jobs.json), its log, and a warning."""
        left = end_group(proc.pid)
        if not left:
            return
        text = (f"{len(left)} process(es) the job started were still running after it and were killed: "
                f"{describe(left)}")
        if job is not None:
            job.info["leftover_processes"] = [{"pid": pid, "cmd": cmd} for pid, cmd in left]
        try:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"\nharness: {text}\n")
        except OSError:
            pass
        print(f"warning: {spec.job_id}: {text}", file=sys.stderr)

    def _supervise(
        self, spec: JobSpec, proc: subprocess.Popen, read_fd: int, log_path: Path, progress: Progress | None
    ) -> JobResult:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(spec.to_dict()) + "\n").encode("utf-8"))
        proc.stdin.flush()  # stdin stays open: its EOF is how the child learns the parent died

        limit = self._timeout_for(spec)
        guard = MemoryGuard(proc.pid, memory_limit_mb())
        start = time.monotonic()
        deadline = start + limit if limit else None
        selector = selectors.DefaultSelector()
        selector.register(read_fd, selectors.EVENT_READ)
        buffer = b""
        result: dict[str, Any] | None = None
        done = 0
        greeted = False
        pipe_open = True
        info: dict[str, Any] = {"log": str(log_path), "worker_pid": proc.pid}
        try:
            while pipe_open and result is None:
                wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
                for _key, _ in selector.select(wait):
                    chunk = os.read(read_fd, 1 << 20)
                    if not chunk:
                        pipe_open = False
                        break
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        message = json.loads(line)
                        if not greeted:
                            mismatch = self._check_hello(spec, message)
                            if mismatch is not None:
                                info["stopped"] = self._stop(proc)
                                return failure_result(spec, "failed", mismatch, info)
                            greeted = True
                            continue
                        if message.get("type") == "progress":
                            done = int(message.get("done") or 0)
                            if progress:
                                progress(done, message.get("total"), float(message.get("fps") or 0.0),
                                         str(message.get("phase") or ""))
                        elif message.get("type") == "result":
                            result = message["result"]
                if result is not None or not pipe_open:
                    break
                if not _running(proc) and not selector.select(0):
                    break  # exited; a grandchild may hold the pipe open, don't wait for it
                over = guard.exceeded()
                if over is not None:
                    return self._over_memory(spec, proc, over, guard.limit_mb, done, log_path, info)
                if deadline is not None and time.monotonic() >= deadline:
                    how = self._stop(proc)
                    elapsed = time.monotonic() - start
                    cause = (f"timeout: no result after {elapsed:.1f} s (limit {limit:g} s, --timeout), "
                             f"{done} frame(s) done; the worker {how}")
                    tail = stderr_tail(log_path)
                    info["stderr_tail"] = tail
                    if tail:
                        cause += "; last stderr: " + explain_stderr(tail, keep=3)
                    return failure_result(spec, "timeout", cause, info)
        finally:
            selector.close()

        if result is not None:
            code, peak = _wait_rusage(proc, EXIT_GRACE_S)
            if code is None:
                self._stop(proc)
            job = JobResult.from_dict(result)
            job.info.setdefault("log", str(log_path))
            if peak is not None:
                job.info["worker_peak_rss_mb"] = round(peak, 1)
            return job

        code, peak = _wait_rusage(proc, EXIT_GRACE_S)
        if code is None:  # closed its pipe but will not exit
            self._stop(proc)
            code = proc.returncode
        return self._crash_result(spec, code, done, peak, log_path, info)

    def _over_memory(self, spec: JobSpec, proc: subprocess.Popen, rss_mb: float, limit_mb: float, done: int,
                     log_path: Path, info: dict[str, Any]) -> JobResult:
        """Kill the worker's whole process group at the ceiling and say so in the row."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the worker and its children
        except OSError:
            proc.kill()
        _wait_rusage(proc, 10.0)
        info["stderr_tail"] = stderr_tail(log_path)
        cause = (f"memory limit: the job's processes held {rss_mb:,.0f} MB, over the {limit_mb:,.0f} MB ceiling, "
                 f"after {done} frame(s); it was stopped before the machine ran out (fix: a smaller --batch, "
                 f"--streams or --instances, or set {LIMIT_ENV}) (full log: {log_path})")
        return failure_result(spec, "crashed", cause, info, peak_rss=rss_mb)

    @staticmethod
    def _check_hello(spec: JobSpec, message: dict[str, Any]) -> str | None:
        """The row's cause when the worker's first message is not a hello of this protocol, else None."""
        where = f"environment {spec.env_label!r}"
        fix = python_fix(spec.python) if spec.python else (
            "run it in the environment of this harness (the default), or rebuild that environment: "
            f"harness env create {spec.env} --force" if spec.env != "default" else
            "the worker imported another harness than this one: check PYTHONPATH")
        try:
            check_hello(message, where, fix)
        except ProtocolMismatch as exc:
            return f"ProtocolMismatch: {exc.problem} (fix: {exc.fix})"
        return None

    def _crash_result(
        self, spec: JobSpec, code: int | None, done: int, peak: float | None, log_path: Path, info: dict[str, Any]
    ) -> JobResult:
        tail = stderr_tail(log_path)
        info["stderr_tail"] = tail
        info["exit_code"] = code
        if code is not None and code < 0:
            name = signal_name(-code)
            what = f"worker process killed by {name}"
            note = SIGNAL_NOTES.get(name)
            if note:
                what += f" ({note})"
        elif code == 0:
            what = "worker process exited without sending a result"
        else:
            what = f"worker process exited with code {code}"
        cause = f"{what} after {done} frame(s)"
        if peak is not None:
            cause += f", peak memory {peak:.0f} MB"
        if tail:
            cause += "; stderr: " + explain_stderr(tail)
        cause += f" (full log: {log_path})"
        return failure_result(spec, "crashed", cause, info, peak_rss=peak)

    def close(self) -> None:
        proc = self._proc
        if proc is not None and _running(proc):
            self._stop(proc)
        self.resolver.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
