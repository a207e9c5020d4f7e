"""What runs on a node: one job's Ray task, and the doctor of one node.

The job's task does not run the detector itself. It starts the same ``python -m harness.execution.worker`` process the
process executor starts (through :class:`~harness.execution.process.SubprocessExecutor`, on the node), so a
job on a cluster gets exactly the local timeout, crash, hang and out-of-memory rows, in a clean interpreter
of its own environment. The task is a streaming generator: it yields ``started`` (with the node's facts),
``progress`` (at most every :data:`PROGRESS_INTERVAL_S`) and ``result`` (the job's result and its worker
log), or ``refused`` when the job cannot start on this node (a local file it cannot see, another protocol).

Ray's worker process is not a plain parent: Ray sets ``OMP_NUM_THREADS`` to the task's CPUs and puts its
own bundled packages on ``sys.path``. The job's worker gets the node's environment as the Ray worker was
started with (Linux: ``/proc/self/environ``), so a framework picks its threads as it does under the
process executor, and the job's ``threads`` setting stays the only thing that changes them.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

#: seconds between two progress messages of one job (the worker reports every 0.25 s)
PROGRESS_INTERVAL_S = 0.5
#: the most of a worker's log sent back to the driver (its end: where a crash explains itself)
LOG_TAIL_BYTES = 4 << 20
#: variables Ray sets in its worker for each task, which a job's worker must not inherit
RAY_TASK_VARIABLES = ("OMP_NUM_THREADS", "PYTHONBREAKPOINT")


def _started_with() -> dict[str, str] | None:
    """The environment this process was started with (before Ray's per-task changes); None off Linux."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def child_environ() -> dict[str, str]:
    """The environment a job's worker starts from on this node: this process's, minus what Ray set per task."""
    env = dict(os.environ)
    original = _started_with()
    if original is not None:
        for key in RAY_TASK_VARIABLES:
            if key in env and original.get(key) != env[key]:
                if key in original:
                    env[key] = original[key]
                else:
                    del env[key]
    return env


def child_path() -> list[str]:
    """This process's ``sys.path`` without Ray's own folders (its bundled psutil, its worker scripts)."""
    try:
        import ray

        ray_dir = os.path.dirname(os.path.abspath(ray.__file__)) + os.sep
    except ImportError:
        return list(sys.path)
    return [p for p in sys.path if not os.path.abspath(p or os.getcwd()).startswith(ray_dir)]


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return text if size <= LOG_TAIL_BYTES else f"[... the first {size - LOG_TAIL_BYTES} bytes were cut ...]\n{text}"


def _prepare_env(payload: dict[str, Any] | None) -> dict[str, Any]:
    """Make the job's named environment known on this node with the driver's spec; the node builds it (or
    finds it built) with the same harness.envs code, cache layout and content key when the job's worker is
    resolved. What was done is returned for the job's info."""
    if not payload:
        return {}
    from harness.envs import EnvSpec, EnvStore, current_key
    from harness.core.errors import HarnessError

    spec = EnvSpec.from_dict(payload["spec"])
    store = EnvStore()
    try:
        known = store.spec(spec.name)
    except HarnessError:
        known = None
    notes: dict[str, Any] = {"name": spec.name, "driver_key": payload.get("key")}
    if known != spec:
        store.define(spec)
        notes["registered"] = ("the driver's spec was registered on this node"
                               + (" (it replaced another)" if known else ""))
    try:
        notes["key"] = current_key(spec)
    except HarnessError as exc:
        notes["key"] = None
        notes["key_error"] = exc.problem
    return notes


def job_on_node(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One job on this node (the body of the Ray task; see the module docstring for the messages)."""
    from harness.execution.ray.facts import ray_node_facts

    facts = ray_node_facts()
    yield {"type": "started", "t": time.time(), "node": facts}
    label = f"{facts.get('hostname') or facts.get('node_ip')}/{str(facts.get('node'))[:8]}"
    try:
        spec, info = _ready_spec(payload, label)
    except Exception as exc:  # noqa: BLE001 - anything that stops the job here is its row's cause
        from harness.core.errors import HarnessError

        cause = (f"{type(exc).__name__}: {exc.problem}" + (f" (fix: {exc.fix})" if exc.fix else "")
                 if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}")
        yield {"type": "refused", "t": time.time(), "cause": cause}
        return
    yield from _run_worker(spec, payload, info)


def _ready_spec(payload: dict[str, Any], label: str) -> tuple[Any, dict[str, Any]]:
    """The job as this node runs it: the protocol checked, local inputs placed, its environment known."""
    from harness.data.assets import cache_dir
    from harness.execution.ray.inputs import place_inputs
    from harness.core.errors import ProtocolMismatch
    from harness.core.jobs import JobSpec
    from harness.core.worker_protocol import PROTOCOL_VERSION, harness_version

    if payload.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolMismatch(f"node {label} runs harness {harness_version()} (worker protocol {PROTOCOL_VERSION}), "
                               f"the driver protocol {payload.get('protocol')}",
                               "install the driver's harness version on every node")
    import ray

    spec = JobSpec.from_dict(payload["spec"])
    spec, inputs = place_inputs(spec, payload.get("shipments") or [], label, cache_dir() / "ray-inputs", ray.get)
    info: dict[str, Any] = {"inputs": inputs} if inputs else {}
    env = _prepare_env(payload.get("env"))
    if env:
        info["env_on_node"] = env
    return spec, info


def _run_worker(spec: Any, payload: dict[str, Any], info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run the job through a SubprocessExecutor on this node, relaying its progress; always stop its worker."""
    from harness.execution.process import SubprocessExecutor

    with tempfile.TemporaryDirectory(prefix="harness-ray-logs-") as logs:
        executor = SubprocessExecutor(log_dir=Path(logs), default_timeout_s=payload.get("default_timeout_s"),
                                      environ=child_environ(), sys_path=child_path())
        messages: queue.Queue = queue.Queue()

        def progress(done: int, total: int | None, fps: float, phase: str = "") -> None:
            messages.put(("progress", {"done": done, "total": total, "fps": fps, "phase": phase}))

        def body() -> None:
            try:
                messages.put(("result", executor.run(spec, progress)))
            except BaseException as exc:  # noqa: BLE001 - handed to the generator, which re-raises it
                messages.put(("error", exc))

        thread = threading.Thread(target=body, name="harness-job", daemon=True)
        thread.start()
        try:
            last = 0.0
            while True:
                kind, value = messages.get()
                if kind == "progress":
                    if value.get("phase") or time.monotonic() - last >= PROGRESS_INTERVAL_S:  # never drop a phase
                        last = time.monotonic()
                        yield {"type": "progress", **value}
                    continue
                if kind == "error":
                    raise value
                break
            result = value
            log = _log_tail(Path(logs) / f"{spec.file_stem}.log")
            yield {"type": "result", "t": time.time(), "result": result.to_dict(), "log": log, "info": info}
        finally:
            executor.close()  # a cancelled task: its worker is stopped (SIGTERM, then SIGKILL)
            thread.join(timeout=10)


def doctor_on_node(options: dict[str, Any]) -> dict[str, Any]:
    """``harness doctor`` on this node: its facts and its whole report (a Ray task pinned to the node)."""
    from harness.execution.ray.facts import ray_node_facts
    from harness.doctor import doctor_report, exit_status

    facts = ray_node_facts()
    report = doctor_report(options.get("backends"), device=options.get("device"), timeout=options.get("timeout"),
                           live=options.get("live"))
    report["exit_status"] = exit_status(report, allow_cpu=bool(options.get("allow_cpu")))
    return {"node": facts, "report": report}
