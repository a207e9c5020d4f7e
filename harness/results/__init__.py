"""The saved run: the one module that knows the files and formats of a results folder.

* :mod:`~harness.results.row`: every runs.csv column declared once (type, unit, writer, meaning);
* :mod:`~harness.results.layout`: file names (per-job files by ``JobSpec.file_stem``), format version;
* :mod:`~harness.results.files`: atomic writes and CSV cell formatting;
* :mod:`~harness.results.lock`: one writer per folder (``flock``, released by the kernel if the holder dies);
* :mod:`~harness.results.writer`: :class:`ResultsWriter` (plan, add a finished job, env.json, eval's columns);
* :mod:`~harness.results.reader`: :func:`load_run` -> :class:`SavedRun` / :class:`SavedJob` for ``--resume``,
  eval, report, compare and the notebook.

A folder holds ``runs.csv`` (one row per job), ``frames.csv`` (per-frame timings), ``jobs.json`` (specs,
status, placement, model facts, file names per job), ``env.json`` (machine, versions, command, doctor),
``detections/<stem>.json`` (COCO-style results), ``frames/<stem>.csv``, ``logs/<stem>.log``, and what eval
and the report make from them (``accuracy.csv``, ``agreement.csv``, ``plots/``, ``report.html``).
"""

from __future__ import annotations

# the module object, not a re-export: tests simulate a full disk by patching harness.results.tempfile.mkstemp
import tempfile  # noqa: F401

from harness.results.files import (
    atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text, check_writable,
    remove_stale_temporaries, writing,
)
from harness.results.layout import (
    FINISHED, FRAME_COLUMNS, INTEGER_RUN_COLUMNS, MEASURED, RUN_COLUMNS_FIRST, SCHEMA_VERSION, Layout,
)
from harness.results.lock import FolderInUse, RunLock
from harness.results.reader import (
    DamagedFile, SavedJob, SavedRun, absolute_path, is_path_like, load_run, require_results_folder,
)
from harness.results.writer import MEASURED_SETTINGS, Plan, ResultsWriter, settings_changes

__all__ = [
    "FINISHED", "FRAME_COLUMNS", "INTEGER_RUN_COLUMNS", "MEASURED", "MEASURED_SETTINGS", "RUN_COLUMNS_FIRST",
    "SCHEMA_VERSION", "DamagedFile", "FolderInUse", "Layout", "Plan", "ResultsWriter", "RunLock", "SavedJob",
    "SavedRun", "absolute_path", "atomic_write_bytes", "atomic_write_csv", "atomic_write_json",
    "atomic_write_text", "check_writable", "is_path_like", "load_run", "remove_stale_temporaries",
    "require_results_folder", "settings_changes", "writing",
]
