"""The results folder: every file written atomically, job by job, so a crash or kill never leaves a
half-written file and every finished job's results survive.

Layout (schema version in ``env.json``): ``runs.csv`` (one row per job), ``frames.csv`` (per-frame
timings), ``detections/<job_id>.json`` (COCO-style results), ``jobs.json`` (specs + placement, versions,
model facts per job), ``env.json`` (machine, versions, command, doctor), and reports made from them.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.jobs import JobResult, JobSpec

SCHEMA_VERSION = 1
RUN_COLUMNS_FIRST = [
    "job_id", "backend", "model", "video", "device_requested", "device_actual", "status", "cause", "preprocess",
    "frames", "load_s", "first_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms",
    "max_ms", "decode_ms", "pre_ms", "infer_ms", "post_ms", "model_fps", "pipeline_fps", "peak_rss_mb",
    "peak_gpu_mb",
]
FRAME_COLUMNS = ["job_id", "frame", "decode_ms", "pre_ms", "infer_ms", "post_ms", "n_dets"]
FINISHED = {"ok", "fallback", "failed", "timeout", "crashed"}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared and served
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, default=str, allow_nan=True) + "\n")


def atomic_write_csv(path: Path, frame: "Any") -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        raise HarnessError(
            f"cannot write results to {folder}: {exc.strerror or exc}",
            "choose another folder with --out, free some disk space, or fix its permissions",
        ) from exc


def remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.<name>.*.tmp`` files that a killed run left behind (their targets were never replaced)."""
    for sub in (folder, folder / "detections", folder / "frames"):
        if sub.is_dir():
            for tmp in sub.glob(".*.tmp"):
                try:
                    tmp.unlink()
                except OSError:
                    pass


class ResultsWriter:
    """Owns one results folder. ``add`` persists a finished job before the next one starts."""

    def __init__(self, out_dir: Path) -> None:
        self.out = Path(out_dir)
        check_writable(self.out)
        remove_stale_temporaries(self.out)
        (self.out / "detections").mkdir(exist_ok=True)
        (self.out / "frames").mkdir(exist_ok=True)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        jobs_file = self.out / "jobs.json"
        if jobs_file.is_file():  # resuming: keep what finished
            data = json.loads(jobs_file.read_text())
            self.jobs = {j["spec"]["job_id"]: j for j in data.get("jobs", [])}
        runs = self.out / "runs.csv"
        if runs.is_file():
            import pandas as pd

            for row in pd.read_csv(runs, keep_default_na=False).to_dict("records"):
                self.rows[str(row["job_id"])] = row

    def finished_job_ids(self) -> set[str]:
        return {
            jid for jid, row in self.rows.items()
            if row.get("status") in FINISHED and (self.out / "detections" / f"{jid}.json").is_file()
        }

    def write_env(self, env: dict[str, Any]) -> None:
        env = {"schema_version": SCHEMA_VERSION, **env}
        atomic_write_json(self.out / "env.json", env)

    def plan(self, specs: list[JobSpec]) -> None:
        for spec in specs:
            self.jobs.setdefault(spec.job_id, {"spec": spec.to_dict(), "status": "pending", "info": {}})
        self._write_jobs()

    def _write_jobs(self) -> None:
        atomic_write_json(self.out / "jobs.json", {"schema_version": SCHEMA_VERSION, "jobs": list(self.jobs.values())})

    def add(self, result: JobResult) -> None:
        """Persist one finished job; a full or failing disk becomes one clear error (earlier files stay whole)."""
        try:
            self._add(result)
        except OSError as exc:
            raise HarnessError(
                f"cannot write the results of {result.spec.job_id} to {self.out}: {exc.strerror or exc}",
                f"free disk space or fix the folder, then finish the run with: harness run --resume {self.out} "
                "(jobs saved before this one are intact)",
            ) from exc

    def _add(self, result: JobResult) -> None:
        import pandas as pd

        jid = result.spec.job_id
        # per-job files first, then the indexes that point at them
        atomic_write_json(self.out / "detections" / f"{jid}.json", result.detections, indent=None)
        atomic_write_csv(self.out / "frames" / f"{jid}.csv", pd.DataFrame(result.frames, columns=FRAME_COLUMNS))
        self.jobs[jid] = {"spec": result.spec.to_dict(), "status": result.status, "cause": result.cause,
                          "info": result.info}
        self._write_jobs()
        self.rows[jid] = result.summary
        self._write_indexes()

    def _write_indexes(self) -> None:
        import pandas as pd

        runs = pd.DataFrame(list(self.rows.values()))
        cols = [c for c in RUN_COLUMNS_FIRST if c in runs.columns] + [c for c in runs.columns if c not in RUN_COLUMNS_FIRST]
        atomic_write_csv(self.out / "runs.csv", runs[cols])
        parts = []
        for jid in self.rows:
            f = self.out / "frames" / f"{jid}.csv"
            if f.is_file() and f.stat().st_size > 0:
                parts.append(pd.read_csv(f))
        frames = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FRAME_COLUMNS)
        atomic_write_csv(self.out / "frames.csv", frames)

    def update_runs(self, extra: dict[str, dict[str, Any]]) -> None:
        """Merge extra columns (accuracy...) into runs.csv rows by job id."""
        for jid, cols in extra.items():
            if jid in self.rows:
                self.rows[jid].update(cols)
        self._write_indexes()
