"""Where each file of a results folder lives: the one place that knows the folder's names.

Per-job files are named by :attr:`harness.core.jobs.JobSpec.file_stem` (a bounded, file-system-safe form of the
job id); the readable job id stays inside the files, and ``jobs.json`` records each job's file names, so a
reader never has to guess a name from an id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.results.row import INTEGER_COLUMNS, NAMES

#: the format version written into ``jobs.json`` and ``env.json``. 2: the policy nested in each spec, per-job
#: files named by file stem and listed in the job's entry (``files``), the planning folder (``cwd``) recorded.
#: Version 1 folders (flat policy keys, files named by job id) are read as well.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)

#: runs.csv's columns in the order a folder holds them, and those that hold counts (written as integers even
#: when a row leaves them empty): both from the one declaration of the row, :mod:`harness.results.row`
RUN_COLUMNS_FIRST = list(NAMES)
INTEGER_RUN_COLUMNS = INTEGER_COLUMNS
FRAME_COLUMNS = ["job_id", "frame", "decode_ms", "pre_ms", "infer_ms", "post_ms", "n_dets"]
#: frames.csv columns a scenario adds, only where they apply (docs/scenarios.md), in this order after
#: FRAME_COLUMNS: the stream a frame came from (multi-stream); its batch, that batch's size and ``timing`` =
#: ``batch`` (offline: the stage times are the whole batch call's, the same on each of its frames); the
#: release/arrival-to-result latency (realtime, server); the pass over the source (looped runs)
SCENARIO_FRAME_COLUMNS = ["stream", "batch_index", "batch_size", "timing", "e2e_ms", "loop"]


def frame_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """frames.csv's header for these rows: FRAME_COLUMNS, then each scenario column some row has (in the
    documented order), then any other key (sorted), so that a plain single-stream run's file is unchanged."""
    present: set[str] = set()
    for row in rows:
        present.update(row)
    extra = [c for c in SCENARIO_FRAME_COLUMNS if c in present]
    rest = sorted(present - set(FRAME_COLUMNS) - set(extra))
    return list(FRAME_COLUMNS) + extra + rest
#: statuses of a job that ran to an end (a failure is a result too: its cause is the finding)
FINISHED = frozenset({"ok", "fallback", "failed", "timeout", "crashed"})
#: statuses with measurements
MEASURED = ("ok", "fallback")


@dataclass(frozen=True)
class Layout:
    """The paths of one results folder."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def runs(self) -> Path:
        return self.folder / "runs.csv"

    @property
    def frames(self) -> Path:
        return self.folder / "frames.csv"

    @property
    def jobs(self) -> Path:
        return self.folder / "jobs.json"

    @property
    def env(self) -> Path:
        return self.folder / "env.json"

    @property
    def accuracy(self) -> Path:
        return self.folder / "accuracy.csv"

    @property
    def agreement(self) -> Path:
        return self.folder / "agreement.csv"

    @property
    def scenarios(self) -> Path:  # one row per scenario sweep and its answer
        return self.folder / "scenarios.csv"

    @property
    def serving(self) -> Path:  # a served job beside its in-process twin (docs/serving.md)
        return self.folder / "serving.csv"

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def video(self) -> Path:
        return self.folder / "annotated.mp4"

    @property
    def plots_dir(self) -> Path:
        return self.folder / "plots"

    @property
    def detections_dir(self) -> Path:
        return self.folder / "detections"

    @property
    def frames_dir(self) -> Path:
        return self.folder / "frames"

    @property
    def logs_dir(self) -> Path:
        return self.folder / "logs"

    def table(self, name: str) -> Path:
        """A whole-folder table by name: ``runs``, ``frames``, ``accuracy``, ``agreement``, ``scenarios`` or
        ``serving``."""
        if name not in ("runs", "frames", "accuracy", "agreement", "scenarios", "serving"):
            raise ValueError(f"unknown results table {name!r}")
        return getattr(self, name)

    @staticmethod
    def job_files(stem: str) -> dict[str, str]:
        """A job's own files, relative to the folder (what ``jobs.json`` records under ``files``)."""
        return {"detections": f"detections/{stem}.json", "frames": f"frames/{stem}.csv", "log": f"logs/{stem}.log"}

    @staticmethod
    def loadgen_files(stem: str) -> dict[str, str]:
        """A ``--loadgen`` job's LoadGen logs, kept as LoadGen wrote them (relative to the folder; LoadGen's own
        file name -> where it is kept)."""
        return {"mlperf_log_summary.txt": f"loadgen/{stem}/mlperf_log_summary.txt",
                "mlperf_log_detail.txt": f"loadgen/{stem}/mlperf_log_detail.txt"}
