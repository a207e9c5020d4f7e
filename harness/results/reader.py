"""Reading a results folder back: one typed view for ``--resume``, eval, report, compare and the notebook.

:func:`load_run` checks what it reads and turns a damaged file into one error naming the file and the fix,
never a traceback. A :class:`SavedJob` answers everything a reader asks about one job (its spec as a
:class:`~harness.core.jobs.JobSpec`, status, cause, placement and model facts, the runs.csv row, the frames it
decoded, its detections as results-json rows or as per-frame :class:`~harness.core.detections.Detections`), using
the absolute paths the folder recorded, so a run made in one folder reads the same from any other.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

from harness.core.detections import Detections, group_coco_records
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.core.policy import PostprocessPolicy
from harness.results.files import csv_text, read_csv_text_rows
from harness.results.layout import FINISHED, FRAME_COLUMNS, READABLE_SCHEMAS, SCHEMA_VERSION, Layout
from harness.results.row import read_types
from harness.data.paths import anchor_path

RECORD_KEYS = ("frame", "bbox", "score", "category_id")


class DamagedFile(HarnessError):
    """A file of a results folder cannot be read (truncated, overwritten, not what the harness wrote)."""


def damaged(path: Path, why: str, fix: str) -> DamagedFile:
    return DamagedFile(f"{path} is damaged: {why}", fix)


def is_path_like(text: str) -> bool:
    """A source or model given as a path, not an asset name or a handle with a scheme (``hub:...``)."""
    return Path(text).expanduser().is_absolute() or anchor_path(text, "/") != text


def absolute_path(text: str, base: str | Path | None) -> str:
    """``text`` as the absolute, normalized path it names from ``base`` (as :func:`harness.data.paths.anchor_path`
    stores paths); asset names, handles with a scheme, and relative paths with no known base stay as they are."""
    if not is_path_like(text):
        return text
    if Path(text).expanduser().is_absolute():
        return os.path.normpath(Path(text).expanduser())
    return anchor_path(text, base) if base else text


def _fix_index(layout: Layout) -> str:
    return (f"restore {layout.folder.name}'s files from a copy, or run the jobs again into a new folder "
            "(harness run ... --out NEW_FOLDER)")


@dataclass
class SavedJob:
    """One job as its results folder describes it."""

    spec: JobSpec
    entry_status: str  # jobs.json: pending, ok, fallback, failed, timeout, crashed
    cause: str
    info: dict[str, Any]
    row: dict[str, Any] | None  # its runs.csv row (read by the declared types), None until it finished
    files: dict[str, str]  # its own files, relative to the folder
    folder: Path
    cwd: str | None = None  # where the run that planned it was started (relative paths are relative to it)
    frames_table: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def backend(self) -> str:
        return self.spec.backend

    @property
    def status(self) -> str:
        """The runs.csv status once the job finished, else jobs.json's (``pending``)."""
        if self.row is not None and str(self.row.get("status") or ""):
            return str(self.row["status"])
        return self.entry_status

    @property
    def policy(self) -> PostprocessPolicy:
        return self.spec.policy

    @property
    def frame_size(self) -> tuple[int, int] | None:
        size = self.info.get("frame_size")
        return (int(size[0]), int(size[1])) if size else None

    @property
    def model_info(self) -> dict[str, Any]:
        return dict(self.info.get("model") or {})

    @property
    def label_space(self) -> str:
        return str(self.model_info.get("label_space", "coco"))

    @property
    def source_path(self) -> str:
        """The frames' source as an absolute path (as the job resolved it), or the asset name when it never ran."""
        recorded = (self.info.get("source") or {}).get("path")
        return str(recorded) if recorded else absolute_path(self.spec.source, self.cwd)

    @property
    def model_path(self) -> str | None:
        return None if self.spec.model is None else absolute_path(self.spec.model, self.cwd)

    def path(self, kind: str) -> Path:
        """The job's ``detections``, ``frames`` or ``log`` file."""
        return self.folder / self.files[kind]

    @property
    def detections_path(self) -> Path:
        return self.path("detections")

    @property
    def finished(self) -> bool:
        """It ran to an end (a failure included) and its row and detections file are both saved."""
        return self.row is not None and self.status in FINISHED and self.detections_path.is_file()

    # detections -------------------------------------------------------------------------------------------
    @cached_property
    def records(self) -> list[dict[str, Any]]:
        """The saved results-json rows: ``frame, bbox [x, y, w, h] pixels, score, category_id``."""
        path = self.detections_path
        if not path.is_file():
            return []
        fix = f"rerun that job: harness run --resume {self.folder}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise damaged(path, str(exc), fix) from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) and all(k in r for k in RECORD_KEYS)
                                                 for r in data):
            raise damaged(path, "not a list of {frame, bbox, score, category_id} records", fix)
        return data

    @cached_property
    def detections_by_frame(self) -> dict[int, Detections]:
        """Every saved box, per frame, as canonical Detections (xyxy pixels); frames without boxes are absent."""
        return group_coco_records(self.records, self.frame_size, label_space=self.label_space)

    def detections(self, frame: int) -> Detections:
        """All saved boxes of one frame (empty when it had none)."""
        found = self.detections_by_frame.get(int(frame))
        if found is not None:
            return found
        return Detections.empty(self.frame_size or (1, 1), self.label_space)

    def shown(self, frame: int, policy: PostprocessPolicy | None = None) -> Detections:
        """The boxes of one frame at the operating point (the job's policy unless another is given)."""
        return (policy or self.policy).apply(self.detections(frame))

    def check_detections(self) -> str | None:
        """Why the detections file cannot be used (None when it reads)."""
        try:
            self.records
        except DamagedFile as exc:
            return exc.problem
        return None

    # frames -----------------------------------------------------------------------------------------------
    @cached_property
    def frames(self) -> Any:
        """The job's per-frame timings (a DataFrame): its own frames file, else its rows of frames.csv."""
        import pandas as pd

        path = self.path("frames")
        if path.is_file() and path.stat().st_size > 0:
            try:
                return pd.read_csv(path)
            except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
                raise damaged(path, str(exc), f"rerun that job: harness run --resume {self.folder}") from exc
        table = self.frames_table() if self.frames_table else None
        if table is not None and len(table):
            return table[table["job_id"].astype(str) == self.job_id].reset_index(drop=True)
        return pd.DataFrame(columns=FRAME_COLUMNS)

    @property
    def decoded_frames(self) -> list[int]:
        """The indices of the frames the job decoded and timed."""
        f = self.frames
        if "frame" not in f.columns:
            return []
        return sorted(int(x) for x in f["frame"].dropna().unique())


@dataclass
class SavedRun:
    """A results folder, read. ``jobs`` in jobs.json order (pending ones included); ``runs`` is runs.csv."""

    folder: Path
    schema_version: int
    jobs: dict[str, SavedJob]
    runs: Any  # pandas DataFrame, one row per finished job (may hold ids jobs.json does not, e.g. renamed)
    cwd: str | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.folder)

    def finished_job_ids(self) -> set[str]:
        return {jid for jid, job in self.jobs.items() if job.finished}

    def job(self, job_id: str) -> SavedJob | None:
        return self.jobs.get(str(job_id))

    @cached_property
    def frames(self) -> Any:
        """frames.csv: per-frame timings of every job."""
        import pandas as pd

        path = self.layout.frames
        if not path.is_file() or path.stat().st_size == 0:
            return pd.DataFrame(columns=FRAME_COLUMNS)
        table = _read_table(path, self.layout)
        if "job_id" not in table.columns or "frame" not in table.columns:
            raise damaged(path, "it has no job_id/frame columns", _fix_index(self.layout))
        table["job_id"] = table["job_id"].astype(str)
        return table

    @cached_property
    def env(self) -> dict[str, Any]:
        path = self.layout.env
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise damaged(path, str(exc), "it only describes the machine: move it away and rebuild the report") from exc
        return data if isinstance(data, dict) else {}

    def optional_table(self, name: str) -> Any:
        """accuracy.csv or agreement.csv as a DataFrame; None when absent or empty (one job: no pairs)."""
        path = self.layout.table(name)
        if not path.is_file() or path.stat().st_size == 0:
            return None
        table = _read_table(path, self.layout, fix=f"recompute it: harness eval {self.folder}", empty_ok=True)
        return None if table is None or (table.empty and not len(table.columns)) else table

    @cached_property
    def agreement(self) -> Any:
        return self.optional_table("agreement")

    @cached_property
    def accuracy(self) -> Any:
        return self.optional_table("accuracy")

    @cached_property
    def damage(self) -> list[Any]:
        """Every damaged row and file (:func:`harness.results.verify.verify_run`); empty when intact."""
        from harness.results.verify import verify_run

        return verify_run(self.layout, self.jobs.values())

    def require_intact(self) -> "SavedRun":
        """This run, or one :class:`DamagedFile` naming everything damaged and the fix (``--resume`` reruns
        exactly the damaged jobs; a damaged file that names no job needs the folder restored or rerun)."""
        from harness.results.verify import damaged_jobs, describe

        if not self.damage:
            return self
        jobs = damaged_jobs(self.damage)
        whole = [d for d in self.damage if not d.job_id]
        fix = (f"rerun the damaged job(s) with: harness run --resume {self.folder} (it reruns them and keeps the "
               "rest)") if jobs and not whole else _fix_index(self.layout)
        raise DamagedFile(f"results folder {self.folder} is damaged: {describe(self.damage, self.folder)}", fix)

    def runs_text(self) -> tuple[list[str], list[dict[str, str]]]:
        """runs.csv's header and rows as the exact text cells (what the writer keeps when it rewrites)."""
        path = self.layout.runs
        if not path.is_file():
            return [], []
        return read_csv_text_rows(path)

    def resume_specs(self) -> list[JobSpec]:
        """The folder's job specs, with relative source/model paths made absolute the way the original run
        resolved them, so ``--resume`` from another folder runs the same files."""
        # folders without a recorded cwd (format 1): a finished job on the same source recorded its path
        seen = {job.spec.source: str(job.info["source"]["path"]) for job in self.jobs.values()
                if (job.info.get("source") or {}).get("path")}
        specs = []
        for job in self.jobs.values():
            changes: dict[str, Any] = {}
            for key, known in (("source", seen), ("model", {})):
                value = getattr(job.spec, key)
                if value is None or not is_path_like(value) or Path(value).expanduser().is_absolute():
                    continue
                resolved = absolute_path(value, job.cwd) if job.cwd else known.get(value, value)
                if resolved != value:
                    changes[key] = resolved
            specs.append(dataclasses.replace(job.spec, **changes) if changes else job.spec)
        return specs


def _read_table(path: Path, layout: Layout, fix: str | None = None, empty_ok: bool = False) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        if empty_ok:
            return None
        raise damaged(path, "it is empty", fix or _fix_index(layout)) from exc
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise damaged(path, f"not a CSV table ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
                      fix or _fix_index(layout)) from exc


def _fill_fallbacks(runs: Any) -> Any:
    """Folders written before the fallback columns: the same facts from the asked and measured columns
    (never from the cause's wording), so every reader can rely on ``device_fallback``/``precision_fallback``."""
    from harness.core.device import is_accelerator
    from harness.core.precision import PrecisionReport

    if "device_fallback" not in runs.columns and {"device_requested", "device_actual"} <= set(runs.columns):
        runs["device_fallback"] = [
            (is_accelerator(asked) and ran.lower().startswith("cpu")) if ran else None
            for asked, ran in zip(runs["device_requested"], runs["device_actual"])]
    if "precision_fallback" not in runs.columns and {"precision_requested", "precision"} <= set(runs.columns):
        runs["precision_fallback"] = [PrecisionReport(asked or None, ran, "").fallback if ran else None
                                      for asked, ran in zip(runs["precision_requested"], runs["precision"])]
    return runs


def _read_runs(layout: Layout) -> Any:
    """runs.csv as a DataFrame, also when a row is cut short (a copy or a disk that stopped mid-row): the
    rows are read cell by cell and the missing cells left empty, so that :mod:`harness.results.verify`
    can name the damaged job and ``--resume`` rerun it, instead of the whole folder being unreadable."""
    import io

    import pandas as pd

    try:
        return pd.read_csv(layout.runs)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as first:
        try:
            header, rows = read_csv_text_rows(layout.runs)
            if not header:
                raise ValueError("no header")
            return pd.read_csv(io.StringIO(csv_text(rows, header)))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
            raise damaged(layout.runs, f"not a CSV table ({type(first).__name__}: "
                          f"{str(first).splitlines()[0][:120]})", _fix_index(layout)) from first


def _read_jobs_json(layout: Layout) -> tuple[int, list[dict[str, Any]], str | None]:
    path = layout.jobs
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(path, str(exc).splitlines()[0][:160], _fix_index(layout)) from exc
    entries = data.get("jobs") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("spec", e), dict)
                                                for e in entries):
        raise damaged(path, "it does not hold a list of job entries", _fix_index(layout))
    version = int(data.get("schema_version", 1)) if isinstance(data, dict) else 1
    if version not in READABLE_SCHEMAS:
        raise HarnessError(f"{path} has results format version {version}; this harness reads "
                           f"{', '.join(map(str, READABLE_SCHEMAS))}",
                           "read it with the harness version that wrote it (see env.json's packages)"
                           if version > SCHEMA_VERSION else _fix_index(layout))
    return version, entries, (data.get("cwd") if isinstance(data, dict) else None)


def _job(entry: Mapping[str, Any], row: dict[str, Any] | None, layout: Layout, run_cwd: str | None,
         frames_table: Callable[[], Any]) -> SavedJob:
    raw = entry.get("spec", entry)
    try:
        spec = JobSpec.from_dict(raw)
    except (TypeError, ValueError, HarnessError) as exc:
        why = exc.problem if isinstance(exc, HarnessError) else str(exc)
        raise damaged(layout.jobs, f"job {raw.get('job_id', '?')}: {why}",
                      "it may come from a newer harness: read it with that version") from exc
    files = entry.get("files") if isinstance(entry.get("files"), dict) else None
    return SavedJob(
        spec=spec,
        entry_status=str(entry.get("status", "pending")),
        cause=str(entry.get("cause") or ""),
        info=dict(entry.get("info") or {}),
        row=row,
        files=dict(files) if files else Layout.job_files(spec.file_stem),
        folder=layout.folder,
        cwd=entry.get("cwd") or run_cwd,
        frames_table=frames_table,
    )


def require_results_folder(folder: str | Path) -> Layout:
    """The folder's layout; one clear error when it is not a results folder."""
    layout = Layout(Path(folder))
    if layout.folder.exists() and not layout.folder.is_dir():
        raise HarnessError(f"{layout.folder} is a file, not a results folder",
                           "give the folder a `harness run` wrote (e.g. results/<timestamp>), not a file in it")
    if not layout.folder.is_dir():
        raise HarnessError(f"{layout.folder} does not exist: it is not a results folder",
                           "give the folder a `harness run` wrote (e.g. results/<timestamp>)")
    if not layout.jobs.is_file():
        raise HarnessError(f"{layout.folder} is not a results folder (no jobs.json)",
                           "give the folder a `harness run` wrote (e.g. results/<timestamp>)")
    return layout


def load_run(folder: str | Path) -> SavedRun:
    """Read a results folder (jobs.json, runs.csv; the rest when asked for)."""
    import pandas as pd

    layout = require_results_folder(folder)
    version, entries, run_cwd = _read_jobs_json(layout)
    if layout.runs.is_file():
        runs = _read_runs(layout)
        if "job_id" not in runs.columns or "status" not in runs.columns:
            raise damaged(layout.runs, "it has no job_id/status columns", _fix_index(layout))
        runs = _fill_fallbacks(read_types(runs))
    else:
        runs = pd.DataFrame({"job_id": pd.Series(dtype=object), "status": pd.Series(dtype=object)})
    rows = {str(r["job_id"]): r for r in runs.to_dict("records")}
    run = SavedRun(folder=layout.folder, schema_version=version, jobs={}, runs=runs, cwd=run_cwd)
    frames_table = lambda: run.frames  # noqa: E731 - read frames.csv only if a job lacks its own file
    for entry in entries:
        job = _job(entry, None, layout, run_cwd, frames_table)
        job.row = rows.get(job.job_id)
        run.jobs[job.job_id] = job
    return run
