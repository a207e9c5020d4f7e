"""Installed distribution versions: the one place that asks ``importlib.metadata``.

Results, the doctor, the conversion cache and every backend record versions; one lookup keeps their
answers identical (a distribution that is not installed is absent, never an empty string).
"""

from __future__ import annotations

from importlib import metadata
from typing import Iterable


def distribution_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (pip's name, e.g. ``opencv-python``), or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def distribution_versions(names: Iterable[str]) -> dict[str, str]:
    """``{name: version}`` for the installed ones among ``names``, in the order given."""
    out: dict[str, str] = {}
    for name in names:
        version = distribution_version(name)
        if version is not None:
            out[name] = version
    return out


def first_installed(names: Iterable[str]) -> tuple[str, str] | None:
    """The first of ``names`` that is installed, with its version (a framework shipped under several names)."""
    for name in names:
        version = distribution_version(name)
        if version is not None:
            return name, version
    return None
