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
    harness_dir = Path(__file__).resolve().parent.parent
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
