"""The Ray executor: each job a Ray task on a node of a cluster, its result streamed back to the driver.

What Ray does: start and place the tasks, account CPUs/GPUs/custom resources, move shipped files through the
object store, notice dead nodes. What the driver adds, because Ray has no notion of a benchmark:

* **One job per node at a time** (``jobs_per_node=1``, the default): two jobs on one machine disturb each
  other's latency, and Ray's scheduler would pack them by free CPUs. So the driver picks, for each job, a
  free node among those whose resources fit it (a CPU job prefers a node without a GPU) and pins the task
  there (``NodeAffinitySchedulingStrategy``, hard). ``jobs_per_node=N`` allows N at once; ``0`` leaves the
  placement to Ray's scheduler (by resources alone). Each row's ``node_concurrent_jobs`` names the other
  jobs that ran on its node while it ran, so a shared node is never hidden.
* **Fail fast**: a job whose resources no alive node has becomes a ``no-node`` row at once, naming the
  missing resource and every node's resources, instead of waiting in Ray's queue forever (also a job that
  waits when the last node able to run it dies).
* **Node loss**: a job whose node dies is retried elsewhere (``node_retries``, default 1); the row records
  ``attempts`` and ``lost_nodes`` and says ``node-lost`` in its cause, or as its status when no retry is left.
* **Ctrl-C**: every running task is cancelled (its worker process killed, the job's own worker exits when
  its parent's pipe closes), then the interrupt goes on to the run loop, which saves what finished.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.execution.ray.connect import RaySession, connect
from harness.execution.ray.facts import NODE_COLUMNS
from harness.execution.ray.inputs import SHIP_LIMIT_BYTES, Shipper
from harness.execution.ray.resources import (
    Demand, Node, demand_of, device_problem, fitting, missing_fix, missing_text, nodes_from_ray,
)
from harness.core.errors import HarnessError
from harness.execution.interface import Executor, OnResult, ProgressFor
from harness.core.jobs import NO_NODE, NODE_LOST, JobResult, JobSpec
from harness.execution.process import DEFAULT_TIMEOUT_S
from harness.core.worker_protocol import PROTOCOL_VERSION
from harness.execution.runner import Progress, failure_result

#: seconds between two looks at the cluster's nodes (to place jobs and to notice dead ones)
NODES_EVERY_S = 1.0
#: seconds the interrupted run waits for its cancelled tasks to end
CANCEL_WAIT_S = 10.0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class _Job:
    """A job of the run and what happened to its attempts so far."""

    spec: JobSpec
    attempts: int = 0
    lost: list[str] = field(default_factory=list)  # "<node label> after N frame(s)" per lost attempt


@dataclass
class _Attempt:
    """One submitted task of a job."""

    job: _Job
    gen: Any  # ray.ObjectRefGenerator
    node: Node | None  # where it was pinned (None: Ray places it)
    facts: dict[str, Any] = field(default_factory=dict)  # the node's, from its "started" message
    started: float | None = None  # node clock
    ended: float | None = None
    done: int = 0  # frames reported
    progress: Progress | None = None


class RayExecutor(Executor):
    """Runs each job as a Ray task (see the module docstring); the results folder is written by the caller.

    ``address``: None starts a private local Ray for the run; ``"auto"`` or ``HOST:PORT`` connect to a
    cluster. ``jobs_per_node``: how many jobs a node runs at once (1; 0 = as Ray's resources allow).
    ``node_retries``: attempts on another node after a node dies under a job. ``ship_limit_mb``: local
    files up to this size are shipped to nodes that lack them (:mod:`harness.execution.ray.inputs`).
    """

    name = "ray"

    def __init__(self, log_dir: Path | None = None, address: str | None = None, jobs_per_node: int = 1,
                 node_retries: int = 1, ship_limit_mb: float = SHIP_LIMIT_BYTES / 2**20,
                 default_timeout_s: float | None = DEFAULT_TIMEOUT_S, poll_s: float = 0.5,
                 notice: Callable[[str], None] = _stderr, session: RaySession | None = None) -> None:
        if jobs_per_node < 0 or node_retries < 0:
            raise HarnessError(f"jobs per node {jobs_per_node} / node retries {node_retries}: expected numbers >= 0",
                               "give --jobs-per-node 1 (the default; 0 = as Ray's resources allow), --node-retries 1")
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.jobs_per_node = jobs_per_node
        self.node_retries = node_retries
        self.default_timeout_s = default_timeout_s
        self.poll_s = poll_s
        self.notice = notice
        self.session = session or connect(address)
        import ray

        self._ray = ray
        self.shipper = Shipper(ray.put, int(ship_limit_mb * 2**20))
        self._task = ray.remote(num_returns="streaming", max_retries=0)(_job_on_node())
        self._nodes: list[Node] = []
        self._nodes_at = 0.0
        #: nodes a task saw die: Ray's node table lists a dead node as alive until it misses enough
        #: heartbeats (seconds), and a retry pinned there in the meantime would fail again
        self._dead: set[str] = set()
        self._running: dict[Any, _Attempt] = {}
        self._intervals: dict[str, list[tuple[str, float, float | None]]] = {}  # node -> (job, start, end)

    # the cluster ------------------------------------------------------------------------------------------
    def nodes(self, refresh: bool = False) -> list[Node]:
        """The alive nodes, as Ray reported them at most :data:`NODES_EVERY_S` ago."""
        if refresh or time.monotonic() - self._nodes_at >= NODES_EVERY_S:
            self._nodes = [n for n in nodes_from_ray(self._ray.nodes()) if n.node_id not in self._dead]
            self._nodes_at = time.monotonic()
        return self._nodes

    def describe(self) -> dict[str, Any]:
        """The cluster as the run found it, for env.json: address, placement settings, every alive node."""
        return {"name": self.name, "address": self.session.address, "gcs_address": self.session.gcs_address,
                "local_ray_started": self.session.started, "jobs_per_node": self.jobs_per_node,
                "node_retries": self.node_retries, "ship_limit_bytes": self.shipper.limit_bytes,
                "ray_version": getattr(self._ray, "__version__", ""),
                "nodes": [{"node": n.node_id, "ip": n.ip, "hostname": n.hostname, "resources": dict(n.total)}
                          for n in self.nodes(refresh=True)]}

    def _busy(self, node_id: str) -> int:
        return sum(1 for a in self._running.values() if a.node is not None and a.node.node_id == node_id)

    # running ------------------------------------------------------------------------------------------------
    def run(self, spec: JobSpec, progress: Progress | None = None) -> JobResult:
        results: list[JobResult] = []
        self.run_all([spec], results.append, (lambda _spec: progress) if progress else None)
        return results[0]

    def ship_inputs(self, specs: Sequence[JobSpec]) -> None:
        """Hash every local input of these jobs and put it into the object store, once per run (see
        :class:`~harness.execution.ray.inputs.Shipper`); :meth:`run_all` does it before its first job starts."""
        for spec in specs:
            self.shipper.shipments(spec)

    def run_all(self, specs: Sequence[JobSpec], on_result: OnResult, progress_for: ProgressFor | None = None) -> None:
        waiting: deque[_Job] = deque(_Job(spec) for spec in specs)
        self.ship_inputs(specs)
        try:
            while waiting or self._running:
                self._submit(waiting, on_result)
                self._check_waiting_tasks(waiting, on_result)
                if not self._running:
                    if waiting:
                        time.sleep(self.poll_s)  # every fitting node is busy with work of others
                    continue
                ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=self.poll_s)
                for gen in ready:
                    self._receive(gen, waiting, on_result, progress_for)
        except BaseException:
            self._cancel_all()
            raise

    def _submit(self, waiting: deque[_Job], on_result: OnResult) -> None:
        """Start every waiting job that has a free node; turn those no node can run into ``no-node`` rows."""
        if not waiting:
            return
        nodes = self.nodes()
        for job in list(waiting):
            problem = device_problem(job.spec.device)
            if problem:
                waiting.remove(job)
                on_result(self._finish_row(job, failure_result(job.spec, "failed", f"HarnessError: {problem}"), None))
                continue
            demand = demand_of(job.spec)
            fits = fitting(demand, nodes)
            if not fits:
                waiting.remove(job)
                on_result(self._no_node(job, demand, nodes))
                continue
            if self.jobs_per_node == 0:
                node = None
            else:
                free = [n for n in fits if self._busy(n.node_id) < self.jobs_per_node]
                if not free:
                    continue
                node = free[0]
            waiting.remove(job)
            self._start(job, demand, node, on_result)

    def _start(self, job: _Job, demand: Demand, node: Node | None, on_result: OnResult) -> None:
        try:
            payload = self._payload(job.spec)
        except HarnessError as exc:  # its environment is unknown here, say: the job's row, not the run's end
            cause = f"{type(exc).__name__}: {exc.problem}" + (f" (fix: {exc.fix})" if exc.fix else "")
            on_result(self._finish_row(job, failure_result(job.spec, "failed", cause), None))
            return
        options = demand.ray_options()
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        job.attempts += 1
        gen = self._task.options(**options).remote(payload)
        self._running[gen] = _Attempt(job, gen, node)

    def _payload(self, spec: JobSpec) -> dict[str, Any]:
        """What the node gets: plain JSON-able values, the shipped inputs' object refs, the environment."""
        return {"protocol": PROTOCOL_VERSION, "spec": spec.to_dict(), "default_timeout_s": self.default_timeout_s,
                "shipments": [s.to_payload() for s in self.shipper.shipments(spec)], "env": _env_payload(spec)}

    def _receive(self, gen: Any, waiting: deque[_Job], on_result: OnResult, progress_for: ProgressFor | None) -> None:
        """Handle the next message of one task: started, progress, the result, or the task's failure."""
        ray = self._ray
        attempt = self._running[gen]
        try:
            message = ray.get(next(gen))
        except StopIteration:
            self._running.pop(gen)
            on_result(self._finish_row(attempt.job, failure_result(
                attempt.job.spec, "crashed", "the Ray task ended without sending a result"), attempt))
            return
        except (ray.exceptions.NodeDiedError, ray.exceptions.TaskUnschedulableError,
                ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError,
                ray.exceptions.OutOfMemoryError) as exc:
            self._running.pop(gen)
            self._lost_or_crashed(attempt, exc, waiting, on_result)
            return
        except ray.exceptions.RayError as exc:  # an error inside the task itself: a bug, not the job's
            self._running.pop(gen)
            on_result(self._finish_row(attempt.job, failure_result(
                attempt.job.spec, "failed", f"the Ray task failed: {_first_line(exc)}"), attempt))
            return
        kind = message.get("type")
        if kind == "started":
            attempt.facts, attempt.started = message["node"], float(message["t"])
            self._intervals.setdefault(str(attempt.facts.get("node")), []).append(
                (attempt.job.spec.job_id, attempt.started, None))
            attempt.progress = progress_for(attempt.job.spec) if progress_for else None
        elif kind == "progress":
            attempt.done = int(message.get("done") or 0)
            if attempt.progress:
                attempt.progress(attempt.done, message.get("total"), float(message.get("fps") or 0.0),
                                 str(message.get("phase") or ""))
        elif kind in ("result", "refused"):
            self._running.pop(gen)
            attempt.ended = float(message["t"])
            on_result(self._result_row(attempt, message))

    def _lost_or_crashed(self, attempt: _Attempt, exc: Exception, waiting: deque[_Job], on_result: OnResult) -> None:
        """A dead node: retry the job elsewhere while retries are left, else a ``node-lost`` row. A dead task
        on a live node (Ray's memory monitor, a killed worker): a ``crashed`` row."""
        node_id = str(attempt.facts.get("node") or (attempt.node.node_id if attempt.node else ""))
        lost = isinstance(exc, (self._ray.exceptions.NodeDiedError, self._ray.exceptions.TaskUnschedulableError)) \
            or (node_id and node_id not in {n.node_id for n in self.nodes(refresh=True)})
        if lost and node_id:
            self._dead.add(node_id)
            self.nodes(refresh=True)
        self._close_interval(attempt, time.time())
        if lost and attempt.started is None:  # it never ran there (pinned to a node that just died): no attempt
            attempt.job.attempts -= 1
            waiting.appendleft(attempt.job)
            return
        if not lost:
            on_result(self._finish_row(attempt.job, failure_result(
                attempt.job.spec, "crashed", f"the Ray task died on node {_label(attempt)}: {_first_line(exc)}"),
                attempt))
            return
        job = attempt.job
        job.lost.append(f"{_label(attempt)} after {attempt.done} frame(s)")
        if job.attempts <= self.node_retries:
            self.notice(f"{job.spec.job_id}: node-lost ({_label(attempt)} died after {attempt.done} frame(s)); "
                        f"retrying on another node ({job.attempts} of {self.node_retries} retries)")
            waiting.appendleft(job)
            return
        cause = (f"node-lost: node {_label(attempt)} died after {attempt.done} frame(s) ({_first_line(exc)}); "
                 f"{'no retry left' if self.node_retries else 'retries are off (--node-retries 0)'}")
        on_result(self._finish_row(job, failure_result(job.spec, NODE_LOST, cause), attempt))

    def _check_waiting_tasks(self, waiting: deque[_Job], on_result: OnResult) -> None:
        """Submitted tasks that have not started yet, checked against the alive nodes: one pinned to a node that
        died goes back to the queue (it never ran: no attempt is counted); one that no alive node can run any
        more becomes a ``no-node`` row instead of waiting in Ray's queue for a node that may never come."""
        nodes = self.nodes()
        alive = {n.node_id for n in nodes}
        for gen, attempt in list(self._running.items()):
            if attempt.started is not None:
                continue
            demand = demand_of(attempt.job.spec)
            can_run = bool(fitting(demand, nodes))
            if can_run and (attempt.node is None or attempt.node.node_id in alive):
                continue
            self._ray.cancel(gen, force=True)
            self._running.pop(gen)
            if can_run:
                attempt.job.attempts -= 1
                waiting.appendleft(attempt.job)
            else:
                on_result(self._no_node(attempt.job, demand, nodes))

    # rows -----------------------------------------------------------------------------------------------
    def _no_node(self, job: _Job, demand: Demand, nodes: list[Node]) -> JobResult:
        cause = f"NoNode: {missing_text(demand, nodes, job.spec.machine)} (fix: {missing_fix(demand)})"
        return self._finish_row(job, failure_result(job.spec, NO_NODE, cause), None)

    def _result_row(self, attempt: _Attempt, message: dict[str, Any]) -> JobResult:
        spec = attempt.job.spec
        if message["type"] == "refused":
            return self._finish_row(attempt.job, failure_result(spec, "failed", str(message["cause"])), attempt)
        result = JobResult.from_dict(message["result"])
        node_info = message.get("info") or {}
        result.info.update(node_info)
        shipped = (node_info.get("inputs") or {}).get("source") or {}
        if shipped.get("node_path") and isinstance(result.info.get("source"), dict):
            result.info["source"]["path"] = shipped["path"]  # the driver's file: ground truth is found beside it
        model = (node_info.get("inputs") or {}).get("model") or {}
        if model.get("node_path") and isinstance(result.summary.get("model"), str):
            result.summary["model"] = result.summary["model"].replace(model["node_path"], model["path"])
        calibration = (node_info.get("inputs") or {}).get("calibration") or {}
        if calibration.get("node_path"):  # precision: the driver's calibration folder, not the copy
            _driver_path(result, calibration["node_path"], calibration["path"])
        env = node_info.get("env_on_node") or {}
        if env.get("key") and env.get("driver_key") and env["key"] != env["driver_key"]:
            _note(result, f"note: node built environment {env['name']!r} under key {env['key']}, the driver's is "
                          f"{env['driver_key']} (another harness source there)")
        result.spec = spec  # the driver's spec: its paths, not the node's copies
        result.summary["video"] = spec.source
        self._write_log(spec, message.get("log") or "", result)
        return self._finish_row(attempt.job, result, attempt)

    def _finish_row(self, job: _Job, result: JobResult, attempt: _Attempt | None) -> JobResult:
        """Stamp the node's facts, the attempts and the jobs that shared the node into the row."""
        facts = dict(attempt.facts) if attempt is not None and attempt.facts else {"executor": "ray"}
        facts.pop("ray_gpu_ids", None)
        for column in NODE_COLUMNS:
            result.summary[column] = facts.get(column, "")
        result.summary["machine"] = job.spec.machine or ""
        shared = self._close_interval(attempt, attempt.ended) if attempt is not None else []
        result.summary["attempts"] = job.attempts
        result.summary["lost_nodes"] = "; ".join(job.lost)
        result.summary["node_concurrent_jobs"] = "; ".join(shared)
        if job.lost and result.status != NODE_LOST:
            where = f"{facts.get('hostname', '?')}/{str(facts.get('node', ''))[:8]}"
            _note(result, f"note: node-lost ({'; '.join(job.lost)}), retried on {where}")
        result.info["node"] = {**facts, "attempts": job.attempts, "lost": list(job.lost),
                               "concurrent_jobs": shared, "jobs_per_node": self.jobs_per_node}
        return result

    def _close_interval(self, attempt: _Attempt | None, end: float | None) -> list[str]:
        """Mark the attempt's run on its node ended; return the other jobs whose runs overlapped it there."""
        if attempt is None or attempt.started is None:
            return []
        end = end if end is not None else time.time()
        spans = self._intervals.get(str(attempt.facts.get("node")), [])
        me = attempt.job.spec.job_id
        for i, (job_id, start, stop) in enumerate(spans):
            if job_id == me and start == attempt.started:
                spans[i] = (job_id, start, end)
        return sorted({job_id for job_id, start, stop in spans
                       if job_id != me and start < end and (stop is None or stop > attempt.started)})

    def _write_log(self, spec: JobSpec, text: str, result: JobResult) -> None:
        node_log = result.info.get("log")
        if node_log:
            result.info["node_log"] = node_log
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{spec.file_stem}.log"
        path.write_text(text, encoding="utf-8")
        result.info["log"] = str(path)

    # stopping -------------------------------------------------------------------------------------------
    def _cancel_all(self) -> None:
        """Cancel every running task (force: its Ray worker is killed, and the job's worker exits when its
        parent's pipe closes); wait a little for them to end so that none is still measuring."""
        gens = list(self._running)
        for gen in gens:
            try:
                self._ray.cancel(gen, force=True)
            except Exception:  # noqa: BLE001 - a task that just ended, a cluster going away
                pass
        deadline = time.monotonic() + CANCEL_WAIT_S
        for gen in gens:
            try:
                left = max(0.1, deadline - time.monotonic())
                while True:
                    ready, _ = self._ray.wait([gen], timeout=left)
                    if not ready:
                        break
                    self._ray.get(next(gen))
            except BaseException:  # noqa: BLE001 - cancelled, ended, or gone: all mean "stopped"
                pass
        self._running.clear()

    def close(self) -> None:
        if self._running:
            self._cancel_all()
        self.session.close()


def _job_on_node() -> Any:
    from harness.execution.ray.node_task import job_on_node

    return job_on_node


def _env_payload(spec: JobSpec) -> dict[str, Any] | None:
    """The job's named environment as the driver defines it (its spec and content key), for the node."""
    if spec.python or spec.env == "default":
        return None
    from harness.envs import EnvStore, current_key

    env_spec = EnvStore().spec(spec.env)
    try:
        key: str | None = current_key(env_spec)
    except HarnessError:
        key = None
    return {"spec": env_spec.to_dict(), "key": key}


def _note(result: JobResult, note: str) -> None:
    """Put a note in front of the row's cause (runs.csv and the result alike)."""
    result.cause = note + (f"; {result.cause}" if result.cause else "")
    result.summary["cause"] = result.cause


def _label(attempt: _Attempt) -> str:
    if attempt.facts:
        return f"{attempt.facts.get('hostname') or attempt.facts.get('node_ip')}/{str(attempt.facts.get('node'))[:8]}"
    return attempt.node.label if attempt.node is not None else "?"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _driver_path(result: JobResult, node_path: str, driver_path: str) -> None:
    """Say the driver's path where a row and its model record name the node's copy of a shipped calibration
    source (runs.csv ``calibration``, jobs.json ``info.model.calibration.path``)."""
    if isinstance(result.summary.get("calibration"), str):
        result.summary["calibration"] = result.summary["calibration"].replace(node_path, driver_path)
    record = (result.info.get("model") or {}).get("calibration")
    if isinstance(record, dict):
        for key in ("path", "source"):
            if isinstance(record.get(key), str):
                record[key] = record[key].replace(node_path, driver_path)
