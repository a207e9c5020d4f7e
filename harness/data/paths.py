"""Where a job's video or model is: a path typed on the command line or in a suite, anchored once where it
enters, or an asset name or a handle with a scheme, kept as it is."""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.core.errors import HarnessError

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def anchor_path(value: str, base: Path | str) -> str:
    """A job's video or model as it should be stored: an absolute path when it is one, else unchanged.

    A relative path is taken relative to ``base`` (the current folder for flags, the suite file's folder for a
    suite) and stored absolute, so nothing resolves it against another folder later (a worker, ``--resume``
    from elsewhere). Asset names stay names, and so do handles with a scheme (``hub:...``, ``https://...``,
    ``torchvision:...``). Anything path-like (a ``/`` or a file suffix) is anchored even when it does not
    exist, so the error that follows names the place that was looked at, not a file found elsewhere.
    """
    if not value or _SCHEME.match(value) or value in _asset_names():
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base) / path
    looks_like_path = any(sep in value for sep in ("/", os.sep)) or bool(Path(value).suffix)
    if path.exists() or looks_like_path:
        return os.path.normpath(os.path.abspath(path))
    return value


def _asset_names() -> set[str]:
    from harness.data.assets import load_manifests

    try:
        return set(load_manifests())
    except HarnessError:  # a broken manifest is reported where assets are used
        return set()
