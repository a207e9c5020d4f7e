"""Writing a results folder's files so that a crash, a kill or a full disk never leaves half a file.

Every file goes to a temporary file in the same folder, is fsynced, then renamed over the target: a reader
sees the old file or the new one, never a mix. CSV tables are formatted here, cell by cell, so that a count
stays ``768`` when a later row leaves it empty (pandas would turn the column into floats: ``768.0``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from harness.core.errors import HarnessError


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


def atomic_write_csv(path: Path, frame: Any) -> None:
    """A pandas DataFrame as CSV (accuracy and agreement tables, ``harness compare --csv``)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


@contextlib.contextmanager
def writing(path: Path, fix: str) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (full disk, a file where a folder should be...) into one
    clear error; the atomic writes above guarantee the old file is still whole."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # mkdir of a parent that is a file
            why = f"{why} (a folder on its path is a file)"
        raise HarnessError(f"cannot write {path}: {why}", fix) from exc


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


# CSV cells ----------------------------------------------------------------------------------------------

def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NA or (not isinstance(value, (str, bytes)) and bool(pd.isna(value)))
    except (TypeError, ValueError, ImportError):
        return False


def csv_cell(value: Any, *, integer: bool = False) -> str:
    """One CSV cell as this folder writes it: empty for missing values, integers without a decimal point,
    floats in their shortest exact form, text (including cells read back from an earlier file) as is."""
    if isinstance(value, str):
        return value
    if _is_missing(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # numpy scalars
        value = value.item()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if integer and value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *,
             integer_columns: Iterable[str] = ()) -> str:
    """Rows as CSV text with exactly ``columns`` (missing keys are empty cells)."""
    ints = set(integer_columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c), integer=c in ints) for c in columns])
    return buf.getvalue()


def read_csv_text_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file's header and rows as the exact text cells (so rewriting it changes nothing it held)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            return [], []
        rows = [dict(zip(header, cells)) for cells in reader if cells]
    return header, rows
