"""Installed distribution versions: the one place that asks ``importlib.metadata``.

Results, the doctor, the conversion cache and every backend record versions; one lookup keeps their
answers identical (a distribution that is not installed is absent, never an empty string).
"""

from __future__ import annotations

from email.parser import HeaderParser
from importlib import metadata
from typing import Iterable

_HEADERS = HeaderParser()


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


def name_and_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """A distribution's ``Name`` and ``Version``, from its METADATA's header block only.

    ``Distribution.metadata`` parses the whole file, long description included; over every installed
    distribution that took 0.22 s against 0.07 s for the headers (this project's full install, 2 cores), and
    every run lists them (env.json) and the doctor scans them (which wheel brought a CUDA library)."""
    fields = _HEADERS.parsestr(dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "")
    return fields["Name"], fields["Version"]


def installed_distributions() -> dict[str, str]:
    """``{name: version}`` of every distribution installed in this interpreter's environment, by name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = name_and_version(dist)
        if name:
            found[name] = version or ""
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))
