"""Verified downloads into the cache: a file, a member of an archive, a folder of files.

Data lands in a temporary folder next to its place in the cache and is renamed into place only after its
sha256 matched, so a dropped connection (fewer bytes than Content-Length), a server error or a changed
upstream file leaves nothing cached.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Callable

from harness.data.assets.archives import extract_member
from harness.data.assets.checksums import verify_sha256
from harness.data.assets.manifest import AssetFile
from harness.data.assets.places import ASSETS_ENV, cache_dir
from harness.core.errors import AssetError

Progress = Callable[[int, "int | None"], None]
TIMEOUT_S = 60.0


class NetworkUnreachable(AssetError):
    """The host could not be reached at all (no network, DNS failure, refused, timed out), as opposed to a
    server that answered with an error: further downloads from this machine are pointless for now."""


def _network_error(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return False
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, (OSError, TimeoutError)) and not isinstance(reason, FileNotFoundError)


def fetch_url(url: str, out_path: Path, *, progress: Progress | None = None, timeout: float = TIMEOUT_S) -> None:
    """Stream ``url`` into ``out_path``; a short read (fewer bytes than Content-Length) is an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(out_path, "wb") as out:
            total = resp.headers.get("Content-Length")
            total_n = int(total) if total and total.isdigit() else None
            done = 0
            while True:
                block = resp.read(1 << 16)
                if not block:
                    break
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total_n)
        if total_n is not None and done != total_n:
            raise AssetError(f"download of {url} was interrupted ({done} of {total_n} bytes); nothing was cached",
                             "try again (the network or the server dropped the connection)")
    except AssetError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        cls = NetworkUnreachable if _network_error(exc) else AssetError
        raise cls(f"download of {url} failed: {exc}; nothing was cached",
                  f"check the network and the URL, or put the file under a folder named in {ASSETS_ENV}") from exc


def _verify_download(path: Path, sha256: str | None, url: str) -> None:
    try:
        verify_sha256(path, sha256)
    except AssetError as exc:
        raise AssetError(f"downloaded {url} but {exc.problem}; nothing was cached",
                         "the source changed or the download is corrupt: check the URL and sha256 in the "
                         f"manifest, or place a verified copy under a folder named in {ASSETS_ENV}") from exc


def _checked_install(final: Path, dest: Path, sha256: str | None, url: str) -> None:
    _verify_download(final, sha256, url)
    os.replace(final, dest)


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    archive_member: str | None = None,
    progress: Progress | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Fetch ``url`` (or one member of the archive at ``url``) to ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        raw = Path(tmp) / "download"
        fetch_url(url, raw, progress=progress, timeout=timeout)
        final = raw
        if archive_member:
            final = extract_member(raw, archive_member, Path(tmp) / "member")
        _checked_install(final, dest, sha256, url)
    return dest


def download_folder(spec: AssetFile, dest: Path, *, progress: Progress | None = None,
                    timeout: float = TIMEOUT_S) -> Path:
    """Fetch every file of a folder role into a temporary folder, verify each, then rename it to ``dest``."""
    assert spec.checksums is not None
    if not spec.downloadable:
        raise AssetError(f"folder {spec.path} has no download source", spec.note or "place it by hand")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        folder = Path(tmp) / "folder"
        folder.mkdir()
        if spec.url_template:
            for i, (name, sha) in enumerate(sorted(spec.checksums.items())):
                download(spec.url_template.format(name=name), folder / name, sha256=sha, timeout=timeout)
                if progress:
                    progress(i + 1, len(spec.checksums))
        else:
            assert spec.url is not None and spec.archive_member is not None
            raw = Path(tmp) / "archive"
            fetch_url(spec.url, raw, progress=progress, timeout=timeout)
            prefix = spec.archive_member.strip("/")
            for name, sha in sorted(spec.checksums.items()):
                member = f"{prefix}/{name}" if prefix else name
                extract_member(raw, member, folder / name)
                _verify_download(folder / name, sha, f"{spec.url} (member {member})")
        if dest.exists():  # a concurrent fetch finished first; keep theirs (verified on resolve)
            return dest
        os.replace(folder, dest)
    return dest


def download_members(url: str, specs: list[AssetFile]) -> dict[str, Path]:
    """Download an archive once and install each listed member (verified) into the cache; role -> path."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        raw = Path(tmp) / "archive"
        fetch_url(url, raw, progress=tqdm_progress(PurePosixPath(url).name))
        for spec in specs:
            assert spec.archive_member is not None
            dest = cache / spec.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            member = extract_member(raw, spec.archive_member, Path(tmp) / f"member-{spec.role}")
            _checked_install(member, dest, spec.sha256, f"{url} (member {spec.archive_member})")
            out[spec.role] = dest
    return out


def download_spec(spec: AssetFile) -> Path:
    """Download one role into its place in the cache."""
    dest = cache_dir() / spec.path
    label = PurePosixPath(spec.path).name
    if spec.is_folder:
        return download_folder(spec, dest, progress=tqdm_progress(label))
    assert spec.url is not None
    return download(spec.url, dest, sha256=spec.sha256, archive_member=spec.archive_member,
                    progress=tqdm_progress(label))


def tqdm_progress(label: str) -> Progress:
    """A progress bar on an interactive terminal; silent in logs and tests."""
    from tqdm import tqdm

    bar = tqdm(desc=f"download {label}", unit="B", unit_scale=True, leave=False, disable=None)

    def update(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update
