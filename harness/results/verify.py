"""A results folder checks itself when it is read: every damaged row or file named, none silently used.

Why: a folder copied half-way, a disk that filled, a hand edit or a tool that rewrote runs.csv can leave a
row cut in the middle, ``p50_ms=abc``, ``frames=-7`` or ``inf``, or a detections file that is gone. Read
as it is, such a folder gave a report without the job, a ``compare`` that printed ``+inf%`` and passed,
and a ``--resume`` that kept the half row as finished and wrote it back with its cells blank (the loss
made permanent). So ``report``, ``compare`` and ``eval`` refuse a damaged folder with what is damaged
and the fix, and ``--resume`` reruns each damaged job instead of keeping it.

What is checked: runs.csv rows are complete (as many cells as the header, the file ends with its last
line's newline), name a job and a finished status, and hold typed cells (counts are whole numbers >= 0,
measurements are finite numbers; times, rates and sizes are >= 0); frames.csv and each job's frames file
the same; a finished job's detections file exists and parses, and a measured job's frames are somewhere.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from harness.results.layout import FINISHED, FRAME_COLUMNS, MEASURED, Layout
from harness.results.row import BY_NAME


class JobFiles(Protocol):
    """What the check needs of one saved job (the reader's ``SavedJob``): its row and the files it names.
    A protocol, so that the reader may call this module without the two importing each other."""

    job_id: str
    status: str
    row: Mapping[str, Any] | None
    detections_path: Path

    def check_detections(self) -> str | None: ...

    def path(self, kind: str) -> Path: ...

#: runs.csv cells that are text (or flags) whatever their content
_TEXT_SUFFIXES = ("_id", "_notes", "_label")
#: measured columns that cannot be negative: times, rates, sizes
_NON_NEGATIVE_SUFFIXES = ("_ms", "_s", "_fps", "_mb")
#: declared units of measurements that cannot be negative
_NON_NEGATIVE_UNITS = ("ms", "s", "frames/s", "queries/s", "MB", "M", "GFLOPs", "boxes", "CPUs", "MHz", "W", "%")


@dataclass(frozen=True)
class Damage:
    """One damaged thing of a results folder: the file, the job it belongs to (None: the whole file)."""

    path: Path
    job_id: str | None
    why: str

    def describe(self, folder: Path) -> str:
        try:
            name = str(self.path.relative_to(folder))
        except ValueError:
            name = str(self.path)
        return f"{name}" + (f" ({self.job_id})" if self.job_id else "") + f": {self.why}"


def run_column_kind(column: str) -> str:
    """How a runs.csv column is typed: ``count`` (whole number >= 0), ``measure`` (a finite number,
    >= 0 for times, rates and sizes), ``number`` (finite, any sign), or ``text`` (anything).

    From the row's declaration (:mod:`harness.results.row`); a column it does not declare (a newer harness's)
    by its name's suffix."""
    declared = BY_NAME.get(column)
    if declared is not None:
        if declared.type == "int":
            return "count"
        if declared.type == "float":
            return "measure" if declared.unit in _NON_NEGATIVE_UNITS else "number"
        return "text"  # text, and flags (True/False)
    if column.endswith(_TEXT_SUFFIXES):
        return "text"
    return "measure" if column.endswith(_NON_NEGATIVE_SUFFIXES) else "text"


def cell_problem(column: str, text: str, kind: str) -> str | None:
    """Why one non-empty cell does not hold what its column holds (None when it does)."""
    if kind == "text" or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return f"{column}={text!r} is not a number"
    if not math.isfinite(value):
        return f"{column}={text} is not a finite number"
    if kind == "count" and (value < 0 or not value.is_integer()):
        return f"{column}={text} is not a count (a whole number >= 0)"
    if kind == "measure" and value < 0:
        return f"{column}={text} is negative"
    return None


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], bool]:
    """(header, [(line number, cells)], whether the file ends with a newline) of a CSV file."""
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None) or []
    rows = [(reader.line_num, cells) for cells in reader if cells]
    return header, rows, raw.endswith(b"\n")


def check_runs_csv(path: Path) -> list[Damage]:
    """Every damaged row of runs.csv (its job id when the row still names one)."""
    if not path.is_file():
        return []
    try:
        header, rows, ends = _rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [Damage(path, None, f"it cannot be read as CSV ({exc})")]
    if not header:
        return [Damage(path, None, "it is empty (no header)")]
    if "job_id" not in header or "status" not in header:
        return [Damage(path, None, "it has no job_id/status columns")]
    kinds = {c: run_column_kind(c) for c in header}
    found: list[Damage] = []
    for index, (line, cells) in enumerate(rows):
        row = dict(zip(header, cells))
        jid = row.get("job_id") or None
        problems: list[str] = []
        if len(cells) != len(header) or (index == len(rows) - 1 and not ends):
            problems.append(f"line {line} is cut short ({len(cells)} of {len(header)} cells"
                            + ("" if ends or len(cells) != len(header) else ", no final newline") + ")")
        if not jid:
            problems.append(f"line {line} has no job_id")
        status = row.get("status", "")
        if len(cells) == len(header) and status not in FINISHED:
            problems.append(f"status {status!r} is not one of {', '.join(sorted(FINISHED))}")
        for column, text in row.items():
            why = cell_problem(column, text, kinds[column])
            if why:
                problems.append(why)
        if status in MEASURED and len(cells) == len(header):
            empty = [c for c in ("frames", "p50_ms", "mean_ms") if c in row and row[c] == ""]
            if empty:
                problems.append(f"a measured job with no {', '.join(empty)}")
        if problems:
            found.append(Damage(path, jid, "; ".join(problems)))
    return found


def check_frames_csv(path: Path, owner: str | None = None) -> tuple[list[Damage], set[str]]:
    """Damaged rows of a frames table (frames.csv, or one job's frames file when ``owner`` names the job),
    and the job ids that have at least one row."""
    if not path.is_file():
        return [], set()
    try:
        header, rows, ends = _rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [Damage(path, owner, f"it cannot be read as CSV ({exc})")], set()
    if not header and not rows:
        return [], set()  # a job with no frames writes an empty table
    if "frame" not in header or (owner is None and "job_id" not in header):
        return [Damage(path, owner, "it has no job_id/frame columns")], set()
    numeric = [c for c in header if c in FRAME_COLUMNS and c != "job_id"]
    found: dict[str | None, list[str]] = {}
    seen: set[str] = set()
    for index, (line, cells) in enumerate(rows):
        row = dict(zip(header, cells))
        jid = owner or row.get("job_id") or None
        problems: list[str] = []
        if len(cells) != len(header) or (index == len(rows) - 1 and not ends):
            problems.append(f"line {line} is cut short")
        for column in numeric:
            why = cell_problem(column, row.get(column, ""), "count" if column in ("frame", "n_dets") else "measure")
            if why:
                problems.append(f"line {line}: {why}")
        if problems:
            found.setdefault(jid, []).extend(problems)
        elif jid:
            seen.add(jid)
    damages = [Damage(path, jid, "; ".join(p[:3]) + (f" (and {len(p) - 3} more)" if len(p) > 3 else ""))
               for jid, p in found.items()]
    return damages, seen


def verify_run(layout: Layout, jobs: Iterable[JobFiles]) -> list[Damage]:
    """Everything damaged in a loaded folder (jobs.json already parsed: :func:`load_run` refuses a bad one)."""
    found = check_runs_csv(layout.runs)
    frames_damage, in_frames_csv = check_frames_csv(layout.frames)
    found += frames_damage
    damaged_rows = {d.job_id for d in found if d.path == layout.runs}
    for job in jobs:
        if job.row is None or job.job_id in damaged_rows or job.status not in FINISHED:
            continue
        detections = job.detections_path
        if not detections.is_file():
            found.append(Damage(detections, job.job_id, "the detections file its runs.csv row names is missing"))
        else:
            why = job.check_detections()
            if why:
                found.append(Damage(detections, job.job_id, why.split(": ", 1)[-1] if " is damaged: " in why else why))
        if job.status not in MEASURED:
            continue
        own = job.path("frames")
        own_damage, own_seen = check_frames_csv(own, job.job_id)
        found += own_damage
        if not own.is_file() and job.job_id not in in_frames_csv and _frames_count(job.row) > 0:
            found.append(Damage(own, job.job_id, "its frames file is missing and frames.csv has no rows of it"))
    return found


def _frames_count(row: object) -> float:
    try:
        value = float(row.get("frames"))  # type: ignore[union-attr]
    except (TypeError, ValueError, AttributeError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def damaged_jobs(damages: Iterable[Damage]) -> set[str]:
    return {d.job_id for d in damages if d.job_id}


def describe(damages: list[Damage], folder: Path, limit: int = 8) -> str:
    shown = [d.describe(folder) for d in damages[:limit]]
    more = f"; and {len(damages) - limit} more" if len(damages) > limit else ""
    return "; ".join(shown) + more
