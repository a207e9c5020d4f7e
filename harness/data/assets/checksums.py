"""sha256 of files, memoized per file state, and the one check every local copy goes through."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.core.errors import AssetError


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# (resolved path, size, mtime_ns) -> sha256: a file is hashed once per process unless it changes.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, memoized per file state (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key]


def verify_sha256(path: Path, expected: str | None) -> None:
    """Raise :class:`AssetError` if ``path`` does not have the expected sha256 (memoized per file state)."""
    if not expected:
        return
    actual = file_sha256(path)
    if actual != expected.lower():
        raise AssetError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {expected}",
            "the file is corrupt, truncated or a different version: delete it and fetch it again",
        )
