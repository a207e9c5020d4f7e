"""Safe extraction from downloaded zip and tar archives.

A downloaded archive is untrusted until its members checked out, and the checksum of a member can only be
computed after it was written. So before anything is written, every member is checked: no absolute path,
no ``..``, no link or device, and its *declared* size within a cap (and, for a whole archive, the sum of the
declared sizes and the number of members). While writing, a running count stops a member that inflates
past what it declared (a zip bomb lying in its header): the partial file is deleted and nothing is left.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from harness.core.errors import AssetError

#: the most bytes one extraction may write (a member, or all members of an archive): far above any asset
#: the harness names (the largest is ~10 MB), far below what would fill a disk
MAX_EXTRACT_BYTES = 2 << 30
#: the most members a whole-archive extraction may create
MAX_MEMBERS = 100_000
_REFUSE = "the archive is malicious or malformed: do not use it"
_CHUNK = 1 << 16


def _unsafe_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":")


@contextmanager
def _corrupt_is_refused(archive: Path) -> Iterator[None]:
    """A damaged archive (bad CRC, truncated stream, broken header) is one clear refusal, not a traceback:
    zipfile cuts a member that lies about its size at the declared size and then fails its CRC here."""
    try:
        yield
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as exc:
        raise AssetError(f"refusing {archive.name}: the archive is corrupt ({exc})", _REFUSE) from exc


def _too_big(archive: Path, what: str, size: int, cap: int) -> AssetError:
    return AssetError(f"refusing {archive.name}: {what} declares {size:,} bytes, more than the "
                      f"{cap:,}-byte extraction cap", _REFUSE)


def _copy_capped(src: IO[bytes], dest: Path, *, declared: int, budget: int, archive: Path, name: str) -> int:
    """Copy ``src`` to ``dest``; stop (and delete ``dest``) as soon as it passes what it declared or the
    budget left. Returns the bytes written."""
    limit = min(declared, budget)
    written = 0
    try:
        with open(dest, "wb") as out:
            while True:
                block = src.read(_CHUNK)  # zipfile stops at the declared size, then checks the CRC
                if not block:
                    break
                written += len(block)
                if written > limit:
                    raise AssetError(
                        f"refusing {archive.name}: member {name!r} inflates past its declared {declared:,} bytes"
                        if written > declared else
                        f"refusing {archive.name}: extracting {name!r} passes the {budget:,}-byte extraction cap",
                        _REFUSE)
                out.write(block)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return written


def _zip_info(zf: zipfile.ZipFile, archive: Path, member: str) -> zipfile.ZipInfo:
    try:
        info = zf.getinfo(member)
    except KeyError as exc:
        raise AssetError(f"{archive.name} has no member {member}",
                         "the archive layout changed: fix archive_member in the manifest") from exc
    if info.is_dir():
        raise AssetError(f"archive member {member} is a folder", "name a file in archive_member")
    return info


def _tar_info(tf: tarfile.TarFile, archive: Path, member: str) -> tarfile.TarInfo:
    try:
        info = tf.getmember(member)
    except KeyError as exc:
        raise AssetError(f"{archive.name} has no member {member}",
                         "the archive layout changed: fix archive_member in the manifest") from exc
    if not info.isfile():
        raise AssetError(f"archive member {member} is not a regular file", "the archive is malformed")
    return info


def extract_member(archive: Path, member: str, dest: Path, *, max_bytes: int = MAX_EXTRACT_BYTES) -> Path:
    """Extract one regular-file member to ``dest``, refusing unsafe paths, links and oversized members."""
    if _unsafe_name(member):
        raise AssetError(f"refusing archive member with an unsafe path: {member}", "the archive is malformed")
    with _corrupt_is_refused(archive):
        return _extract_member(archive, member, dest, max_bytes)


def _extract_member(archive: Path, member: str, dest: Path, max_bytes: int) -> Path:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            info = _zip_info(zf, archive, member)
            if info.file_size > max_bytes:
                raise _too_big(archive, f"member {member!r}", info.file_size, max_bytes)
            with zf.open(info) as src:
                _copy_capped(src, dest, declared=info.file_size, budget=max_bytes, archive=archive, name=member)
        return dest
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tinfo = _tar_info(tf, archive, member)
            if tinfo.size > max_bytes:
                raise _too_big(archive, f"member {member!r}", tinfo.size, max_bytes)
            src = tf.extractfile(tinfo)
            assert src is not None  # a regular file always has data
            with src:
                _copy_capped(src, dest, declared=tinfo.size, budget=max_bytes, archive=archive, name=member)
        return dest
    raise AssetError(f"{archive} is neither a zip nor a tar archive", "check the manifest's URL")


def _checked_target(dest: Path, archive: Path, name: str) -> Path:
    target = (dest / name).resolve()
    if _unsafe_name(name) or not target.is_relative_to(dest):
        raise AssetError(f"refusing {archive.name}: member {name!r} escapes the target folder", _REFUSE)
    return target


def _zip_plan(zf: zipfile.ZipFile, archive: Path, dest: Path) -> Iterator[tuple[Path, zipfile.ZipInfo]]:
    for info in zf.infolist():
        target = _checked_target(dest, archive, info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a unix symlink stored in the zip
            raise AssetError(f"refusing {archive.name}: member {info.filename!r} is a symbolic link", _REFUSE)
        yield target, info


def _tar_plan(tf: tarfile.TarFile, archive: Path, dest: Path) -> Iterator[tuple[Path, tarfile.TarInfo]]:
    for m in tf.getmembers():
        target = _checked_target(dest, archive, m.name)
        if not (m.isfile() or m.isdir()):
            raise AssetError(f"refusing {archive.name}: member {m.name!r} is a link or device", _REFUSE)
        yield target, m


def _check_totals(archive: Path, sizes: list[int], max_bytes: int) -> None:
    if len(sizes) > MAX_MEMBERS:
        raise AssetError(f"refusing {archive.name}: {len(sizes):,} members, more than {MAX_MEMBERS:,}", _REFUSE)
    total = sum(sizes)
    if total > max_bytes:
        raise _too_big(archive, f"its {len(sizes):,} members together", total, max_bytes)


def safe_extract_all(archive: Path, dest: Path, *, max_bytes: int = MAX_EXTRACT_BYTES) -> list[Path]:
    """Extract a whole archive into ``dest``, refusing it if any member would land outside ``dest``, is a
    link or device, or if the declared sizes pass ``max_bytes``; a running count holds the real sizes to
    the same cap. Everything is checked before the first byte is written; a member that lies about its
    size stops the extraction and everything written so far is removed."""
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    written: list[Path] = []
    try:
        with _corrupt_is_refused(archive):
            return _extract_all(archive, dest, max_bytes, written)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _extract_all(archive: Path, dest: Path, max_bytes: int, written: list[Path]) -> list[Path]:
    """Plan (check every member), then write; ``written`` collects files for the caller to remove on failure."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            plan = list(_zip_plan(zf, archive, dest))
            _check_totals(archive, [i.file_size for _, i in plan], max_bytes)
            budget = max_bytes
            for target, info in plan:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(target)
                with zf.open(info) as src:
                    budget -= _copy_capped(src, target, declared=info.file_size, budget=budget, archive=archive,
                                           name=info.filename)
            return [dest / i.filename for _, i in plan]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tplan = list(_tar_plan(tf, archive, dest))
            _check_totals(archive, [m.size for _, m in tplan if m.isfile()], max_bytes)
            budget = max_bytes
            for target, m in tplan:
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(target)
                src = tf.extractfile(m)
                assert src is not None  # a regular file always has data
                with src:
                    budget -= _copy_capped(src, target, declared=m.size, budget=budget, archive=archive, name=m.name)
            return [dest / m.name for _, m in tplan]
    raise AssetError(f"{archive} is neither a zip nor a tar archive", "check the file")
