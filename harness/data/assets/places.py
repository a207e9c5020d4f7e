"""Where assets live: the environment variables that point the harness at manifests, local copies and the
cache, and whether downloads are allowed. Read on every call (tests and users change them at run time)."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "HARNESS_ASSETS"
CACHE_ENV = "HARNESS_CACHE"
OFFLINE_ENV = "HARNESS_OFFLINE"
MANIFESTS_ENV = "HARNESS_MANIFESTS"


def manifest_dirs() -> list[Path]:
    """Where manifests live: ``HARNESS_MANIFESTS`` first, then the repository's ``datasets/`` folder, then
    the copy packaged with harness (a wheel install has no repository)."""
    harness_dir = Path(__file__).resolve().parents[2]
    dirs = [harness_dir.parent / "datasets", harness_dir / "manifests"]
    extra = os.environ.get(MANIFESTS_ENV)
    if extra:
        dirs = [Path(p).expanduser() for p in extra.split(os.pathsep) if p] + dirs
    return [d for d in dirs if d.is_dir()]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "detector-harness").expanduser()


def asset_roots() -> list[Path]:
    raw = os.environ.get(ASSETS_ENV, "")
    # absolute, so that paths recorded in results stay valid from any working directory (notebooks, reports)
    return [Path(p).expanduser().absolute() for p in raw.split(os.pathsep) if p.strip()]


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def check_folder(folder: Path, what: str, fix: str, write: bool = True) -> Path:
    """``folder`` (made if absent), or one :class:`~harness.core.errors.HarnessError` saying why it cannot be used.

    Why here: a cache under a file (``HARNESS_CACHE=/etc/hosts/x``) or on a read-only mount would otherwise
    surface as a ``NotADirectoryError`` or ``OSError`` traceback from deep inside a build or a conversion.
    ``write`` False only reads: an absent folder is fine (nothing is cached yet), a file on its path is not.
    """
    import errno
    import tempfile

    from harness.core.errors import HarnessError

    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise HarnessError(f"{what} {folder} cannot be used: {probe} is a file, not a folder", fix)
    if not write:
        if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
            raise HarnessError(f"{what} {folder} cannot be read (permission denied)", fix)
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EROFS:
            why = "it is on a read-only file system"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            why = "permission denied"
        raise HarnessError(f"{what} {folder} cannot be written: {why}", fix) from None
    return folder
