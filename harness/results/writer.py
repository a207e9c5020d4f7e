"""Writing a results folder: the only code that creates or changes its files.

A :class:`ResultsWriter` locks the folder (one writer at a time, see :mod:`harness.results.lock`), decides
which jobs to run and which saved results to keep (:meth:`ResultsWriter.plan`), persists each finished job
before the next starts (its own files first, then jobs.json and frames.csv, runs.csv last: a kill at any
moment leaves whole files, and a job counts as finished only once its row is there), and lets ``harness
eval`` update runs.csv columns and write its tables. Every write is atomic; a failing disk becomes one
error naming the file and ``harness run --resume``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.core.errors import HarnessError
from harness.core.jobs import JobResult, JobSpec
from harness.results.files import (
    atomic_write_csv, atomic_write_json, atomic_write_text, check_writable, csv_text, read_csv_text_rows,
    remove_stale_temporaries, writing,
)
from harness.results.layout import FINISHED, INTEGER_RUN_COLUMNS, SCHEMA_VERSION, Layout, frame_columns
from harness.results.lock import RunLock
from harness.results.reader import SavedJob, SavedRun, absolute_path, is_path_like, load_run
from harness.results.row import ordered

#: spec fields that change what a job measures: a saved job whose spec differs in one of them is rerun.
#: ``timeout_s`` is not one (a job that finished in time measured the same); it only reruns a saved timeout.
MEASURED_SETTINGS = ("backend", "source", "model", "device", "frames", "warmup", "preprocess", "threads",
                     "options", "policy", "strict_device", "env", "python",
                     "scenario",  # scenarios: the scenario, its level and its minimum measurement
                     "precision", "strict_precision")


def _identity(value: str | None, base: str | Path | None) -> str | None:
    """A source/model as the file it names (absolute, normalized), or the asset name."""
    if value is None:
        return None
    return absolute_path(value, base) if is_path_like(value) else value


def settings_changes(saved: SavedJob, spec: JobSpec, cwd: str | Path | None = None) -> list[tuple[str, Any, Any]]:
    """(setting, saved value, new value) for every measured setting in which ``spec`` differs from ``saved``.

    Sources and models compare as the files they name: the same relative path from another folder is another
    file, and another spelling of the same absolute path is the same one.
    """
    cwd = os.getcwd() if cwd is None else cwd
    old = saved.spec
    changes: list[tuple[str, Any, Any]] = []
    for key in MEASURED_SETTINGS:
        if key == "source":
            before = saved.source_path if is_path_like(old.source) else old.source
            after = _identity(spec.source, cwd)
            if before is not None and is_path_like(before):
                before = os.path.normpath(before)
        elif key == "model":
            before, after = saved.model_path, _identity(spec.model, cwd)
        elif key == "policy":
            before, after = old.policy.to_dict(), spec.policy.to_dict()
        elif key == "scenario":  # a setting given at its scenario's default (--batch 1) measures the same
            before, after = old.scenario.normalized(), spec.scenario.normalized()
            if before != after:
                changes.append((key, old.scenario.describe(), spec.scenario.describe()))
            continue
        else:
            before, after = getattr(old, key), getattr(spec, key)
        if before != after:
            changes.append((key, before, after))
    if saved.status == "timeout" and old.timeout_s != spec.timeout_s:
        changes.append(("timeout_s", old.timeout_s, spec.timeout_s))
    return changes


def damaged_what(damage: Any, layout: Layout) -> str:
    """What a damage is, in the words of a rerun's reason: ``runs.csv row``, ``detections file`` ..."""
    if damage.path == layout.runs:
        return "runs.csv row"
    if damage.path == layout.frames:
        return "frames.csv rows"
    if damage.path.parent == layout.detections_dir:
        return "detections file"
    return "frames file"


def saved_environment(saved: SavedJob) -> dict[str, Any] | None:
    """The built environment a saved job ran in: what it recorded (name, key, requirements, Python), or for a
    folder written before jobs recorded it, the key read from its interpreter's folder (``<name>-<key>``)."""
    recorded = saved.info.get("environment")
    if isinstance(recorded, dict) and recorded.get("key"):
        return recorded
    python = str((saved.info.get("interpreter") or {}).get("python") or "")
    env = saved.spec.env
    folder = Path(python).parent.parent.name if python else ""
    if folder.startswith(f"{env}-") and len(folder) == len(env) + 17:
        return {"name": env, "key": folder[len(env) + 1:]}
    return None


def environment_change(saved: SavedJob, now: Mapping[str, Any] | None) -> str | None:
    """What changed in the environment a saved job ran in (None: the same build, or not a built one)."""
    if now is None:
        return None
    before = saved_environment(saved)
    if before is None:
        return (f"environment {now['name']!r} is now build {now['key']}, and the saved result does not record "
                "which build it ran in")
    if before.get("key") == now.get("key"):
        return None
    what = f"environment {now['name']!r} changed (build {before['key']} -> {now['key']}"
    if "requirements" in before:
        old, new = " ".join(before["requirements"]) or "-", " ".join(now.get("requirements") or ()) or "-"
        if old != new:
            what += f"; requirements {old} -> {new}"
        if before.get("python") != now.get("python"):
            what += f"; Python {before.get('python')} -> {now.get('python')}"
    return what + ")"


@dataclass
class Plan:
    """What a run does with each of its jobs."""

    run: list[JobSpec] = field(default_factory=list)  # to run, in order
    kept: list[str] = field(default_factory=list)  # finished results kept as they are
    reruns: dict[str, str] = field(default_factory=dict)  # job id -> why its saved result is replaced

    def summary(self) -> str:
        return f"{len(self.run)} job(s) to run" + (f", {len(self.kept)} kept" if self.kept else "")


def _change_text(changes: list[tuple[str, Any, Any]]) -> str:
    def show(v: Any) -> str:
        return "none" if v is None else str(v)

    return ", ".join(f"{key} changed ({show(a)} -> {show(b)})" for key, a, b in changes)


class ResultsWriter:
    """Owns one results folder while it is open: holds its lock, keeps its jobs.json entries and runs.csv rows.

    Use as a context manager (or call :meth:`close`): the lock is released when the writer closes, and by
    the kernel if the process dies.
    """

    def __init__(self, out_dir: Path | str, *, command: str | None = None) -> None:
        self.layout = Layout(Path(out_dir))
        self.out = self.layout.folder
        check_writable(self.out)
        self._lock = RunLock(self.out, command)
        self._lock.acquire()
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        remove_stale_temporaries(self.out)
        for sub in (self.layout.detections_dir, self.layout.frames_dir):
            sub.mkdir(exist_ok=True)
        self.saved: SavedRun | None = load_run(self.out) if self.layout.jobs.is_file() else None
        self.entries: dict[str, dict[str, Any]] = {}
        if self.saved is not None:
            self.entries = {jid: self._entry(job) for jid, job in self.saved.jobs.items()}
        self.run_columns: list[str] = []
        self.rows: dict[str, dict[str, Any]] = {}
        if self.layout.runs.is_file():
            header, rows = (self.saved.runs_text() if self.saved is not None
                            else read_csv_text_rows(self.layout.runs))
            if header and "job_id" not in header:
                raise HarnessError(f"{self.layout.runs} is damaged: it has no job_id column",
                                   "move it away, or write to another folder with --out")
            self.run_columns = list(header)
            self.rows = {row["job_id"]: row for row in rows}
        self._old_frames: dict[str, list[dict[str, str]]] | None = None

    @staticmethod
    def _entry(job: SavedJob) -> dict[str, Any]:
        entry = {"spec": job.spec.to_dict(), "status": job.entry_status, "cause": job.cause, "info": job.info,
                 "files": job.files}
        if job.cwd:
            entry["cwd"] = job.cwd
        return entry

    # lifetime ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # what is there ----------------------------------------------------------------------------------------
    def _files(self, job_id: str) -> dict[str, str]:
        entry = self.entries.get(job_id) or {}
        files = entry.get("files")
        if isinstance(files, dict):
            return files
        spec = entry.get("spec") or {}
        return Layout.job_files(JobSpec.from_dict(spec).file_stem if spec else job_id)

    def finished_job_ids(self) -> set[str]:
        return {jid for jid, row in self.rows.items()
                if row.get("status") in FINISHED and (self.out / self._files(jid)["detections"]).is_file()}

    # planning ---------------------------------------------------------------------------------------------
    def plan(self, specs: Iterable[JobSpec],
             env_of: Callable[[JobSpec], Mapping[str, Any] | None] | None = None) -> Plan:
        """Record the jobs of this run and decide, per job, whether its saved result can be kept.

        A finished job is kept unless its saved result is damaged (its runs.csv row, its detections or frames
        file: :mod:`harness.results.verify`), a measured setting changed (:func:`settings_changes`), or the
        environment it ran in now means another build (``env_of``: the environment a job runs in now, with
        its content key); then the saved result is dropped at once (its row and files), so an interruption
        can never leave the old result standing for the new settings, and a damaged row is never written back.
        """
        plan = Plan()
        damage = self.saved.damage if self.saved is not None else []
        damaged_rows = {d.job_id: f"its {damaged_what(d, self.layout)} is damaged ({d.why})" for d in damage if d.job_id}
        for jid in [j for j in self.rows if j in damaged_rows or not j]:
            self._forget(jid)  # never written back; a job of this run reruns below, another one is pending
        rewrite = bool(damage)
        finished = self.finished_job_ids()
        for spec in specs:
            jid = spec.job_id
            saved = self.saved.job(jid) if self.saved is not None else None
            if jid in damaged_rows and saved is not None and saved.row is not None:
                plan.reruns[jid] = f"{damaged_rows[jid]}; rerunning it"
            elif jid in finished and saved is not None:
                why = self._rerun_reason(saved, spec, env_of(spec) if env_of else None)
                if why is None:
                    plan.kept.append(jid)
                    continue
                plan.reruns[jid] = why
                self._forget(jid)
            plan.run.append(spec)
            self.entries[jid] = {"spec": spec.to_dict(), "status": "pending", "info": {},
                                 "files": Layout.job_files(spec.file_stem), "cwd": os.getcwd()}
        self._write_jobs()
        if plan.reruns or rewrite:
            self._write_frames()
            self._write_runs()
        return plan

    @staticmethod
    def _rerun_reason(saved: SavedJob, spec: JobSpec, env_now: Mapping[str, Any] | None = None) -> str | None:
        damage = saved.check_detections()
        if damage is not None:
            return f"its detections file is damaged ({damage}); rerunning it"
        changes = settings_changes(saved, spec)
        if changes:
            return f"{_change_text(changes)} since the saved result; rerunning it: the saved result is replaced"
        env_change = environment_change(saved, env_now)
        if env_change:
            return f"{env_change} since the saved result; rerunning it: the saved result is replaced"
        return None

    def _forget(self, job_id: str) -> None:
        """Drop a saved result that is about to be replaced: its row and its own files."""
        self.rows.pop(job_id, None)
        for kind in ("detections", "frames"):
            try:
                (self.out / self._files(job_id)[kind]).unlink()
            except FileNotFoundError:
                pass

    # writing ----------------------------------------------------------------------------------------------
    def _fix(self) -> str:
        return (f"free disk space or fix the folder, then finish the run with: harness run --resume {self.out} "
                "(jobs saved before are intact)")

    def write_env(self, env: Mapping[str, Any]) -> None:
        with writing(self.layout.env, self._fix()):
            atomic_write_json(self.layout.env, {"schema_version": SCHEMA_VERSION, **env})

    def _write_jobs(self) -> None:
        with writing(self.layout.jobs, self._fix()):
            atomic_write_json(self.layout.jobs, {"schema_version": SCHEMA_VERSION,
                                                 "jobs": list(self.entries.values())})

    def add(self, result: JobResult) -> None:
        """Persist one finished job; a full or failing disk becomes one clear error (earlier files stay whole)."""
        try:
            self._add(result)
        except OSError as exc:
            raise HarnessError(
                f"cannot write the results of {result.spec.job_id} to {self.out}: {exc.strerror or exc}",
                self._fix(),
            ) from exc
        except HarnessError as exc:  # a write inside already named its file
            raise HarnessError(f"cannot write the results of {result.spec.job_id}: {exc.problem}", exc.fix) from exc

    def _add(self, result: JobResult) -> None:
        jid = result.spec.job_id
        files = Layout.job_files(result.spec.file_stem)
        # per-job files first, then the indexes that point at them
        atomic_write_json(self.out / files["detections"], result.detections, indent=None)
        # the scenario's own columns too (batch_index, loop, stream: layout.frame_columns): without batch_index an
        # offline job's per-batch percentiles could not be recomputed from its frames
        atomic_write_text(self.out / files["frames"], csv_text(result.frames, frame_columns(result.frames)))
        lg_logs = result.info.pop("loadgen_logs", None) or {}  # LoadGen's own logs: files, not jobs.json text
        for name, where in Layout.loadgen_files(result.spec.file_stem).items():
            if name in lg_logs:
                atomic_write_text(self.out / where, lg_logs[name])
                files = {**files, f"loadgen_{name.split('_')[-1].split('.')[0]}": where}
        cwd = (self.entries.get(jid) or {}).get("cwd") or os.getcwd()
        self.entries[jid] = {"spec": result.spec.to_dict(), "status": result.status, "cause": result.cause,
                             "info": result.info, "files": files, "cwd": cwd}
        self._write_jobs()
        self.rows[jid] = dict(result.summary)
        self._write_frames()
        self._write_runs()  # last: a row in runs.csv is what makes the job count as finished

    def _columns(self) -> list[str]:
        seen = list(self.run_columns)
        for row in self.rows.values():
            seen.extend(c for c in row if c not in seen)
        return ordered(seen)

    def _write_runs(self) -> None:
        text = csv_text(self.rows.values(), self._columns(), integer_columns=INTEGER_RUN_COLUMNS)
        with writing(self.layout.runs, self._fix()):
            atomic_write_text(self.layout.runs, text)

    def _frames_of(self, job_id: str) -> list[dict[str, str]]:
        path = self.out / self._files(job_id)["frames"]
        if path.is_file() and path.stat().st_size > 0:
            return read_csv_text_rows(path)[1]
        if self._old_frames is None:  # a folder whose per-job file is gone: keep its rows of frames.csv
            self._old_frames = {}
            if self.layout.frames.is_file():
                for row in read_csv_text_rows(self.layout.frames)[1]:
                    self._old_frames.setdefault(row.get("job_id", ""), []).append(row)
        return self._old_frames.get(job_id, [])

    def _write_frames(self) -> None:
        rows = [row for jid in self.rows for row in self._frames_of(jid)]
        columns = frame_columns(rows)
        with writing(self.layout.frames, self._fix()):
            atomic_write_text(self.layout.frames, csv_text(rows, columns))

    def update_runs(self, extra: Mapping[str, Mapping[str, Any]]) -> None:
        """Merge columns (``harness eval``'s accuracy) into runs.csv rows by job id; other cells stay as they were."""
        for jid, cols in extra.items():
            if jid in self.rows:
                self.rows[jid].update(cols)
        self._write_runs()

    def write_table(self, name: str, table: Any) -> None:
        """Write a whole-folder table (``accuracy`` or ``agreement``, a DataFrame)."""
        path = self.layout.table(name)
        with writing(path, self._fix()):
            atomic_write_csv(path, table)
