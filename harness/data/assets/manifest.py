"""Asset manifests (``datasets/*.toml``): what files a named model or data set has, their checksums, and where
each comes from: a URL, an installed package, a generator that makes it from other files, or nowhere (a
note says why and where the original is). The format is documented in ``datasets/README.md``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from harness.data.assets.places import manifest_dirs
from harness.core.errors import AssetError, did_you_mean


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
    generator: str | None = None  # ``module:function`` that makes the file from the roles in generated_from
    generated_from: tuple[str, ...] = ()  # the roles (of the same asset) the generator reads
    needed_by: tuple[str, ...] | None = None  # backends whose jobs need it; None = every job, () = none
    note: str = ""  # why a source is missing, how a file was made, where the original is

    @property
    def is_folder(self) -> bool:
        return self.checksums is not None

    @property
    def downloadable(self) -> bool:
        if self.is_folder:
            return bool(self.url_template or (self.url and self.archive_member is not None))
        return bool(self.url)

    @property
    def generated(self) -> bool:
        return self.generator is not None

    @property
    def obtainable(self) -> bool:
        """Whether the harness can get this file by itself (download, package, generator)."""
        return self.downloadable or self.generated or bool(self.package)

    @property
    def source_text(self) -> str:
        """Where the file comes from, in words, for messages."""
        if self.url_template:
            return self.url_template
        if self.url:
            return f"{self.url} (member {self.archive_member})" if self.archive_member else self.url
        if self.package:
            return f"the Python package {self.package}"
        if self.generator:
            return f"generated from {', '.join(self.generated_from)} by {self.generator}"
        return self.note or "no download source"

    def needed_for(self, backend: str | None) -> bool:
        """Whether a job of ``backend`` (None: a job whose backend doesn't matter, e.g. a video) needs it."""
        if self.needed_by is None:
            return True
        return backend is not None and backend in self.needed_by


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


def _bad(path: Path, role: str, what: str, fix: str) -> AssetError:
    return AssetError(f"manifest {path}: [files.{role}] {what}", fix)


def _parse_file_spec(path: Path, role: str, spec: Any) -> AssetFile:
    if not isinstance(spec, dict):
        raise AssetError(f"manifest {path}: [files.{role}] must be a table", "see datasets/README.md for the format")
    unknown = set(spec) - _FILE_KEYS
    if unknown:
        raise _bad(path, role, f"has unknown key(s) {', '.join(sorted(unknown))}."
                   f"{did_you_mean(sorted(unknown)[0], _FILE_KEYS)}",
                   f"allowed keys: {', '.join(sorted(_FILE_KEYS))} (see datasets/README.md)")
    if "path" not in spec:
        raise _bad(path, role, "has no path", "add path = \"relative/path\"")
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
    spec = dict(spec)
    for key in ("generated_from", "needed_by"):
        if key in spec:
            if not isinstance(spec[key], list) or not all(isinstance(v, str) for v in spec[key]):
                raise _bad(path, role, f"{key} must be a list of names", f"e.g. {key} = [\"graph\"]")
            spec[key] = tuple(spec[key])
    generator = spec.get("generator")
    if generator is not None:
        module, _, func = str(generator).partition(":")
        if not module or not func:
            raise _bad(path, role, f"generator {generator!r} is not module:function",
                       "e.g. generator = \"backends._opencv_text_graph:generate\"")
        if checksums is not None:
            raise _bad(path, role, "is a folder with a generator", "generators make single files")
    elif spec.get("generated_from"):
        raise _bad(path, role, "has generated_from but no generator", "name the generator (module:function)")
    return AssetFile(role=role, **spec)


def _check_generators(path: Path, files: dict[str, AssetFile]) -> None:
    """Every generator input is a role of the asset, and no file is (indirectly) made from itself."""
    for spec in files.values():
        for src in spec.generated_from:
            if src not in files:
                raise _bad(path, spec.role, f"is generated from {src!r}, which is not one of its files",
                           f"use one of {', '.join(files)}")

    def visit(role: str, chain: tuple[str, ...]) -> None:
        if role in chain:
            raise _bad(path, role, f"is generated from itself ({' <- '.join(chain + (role,))})",
                       "break the cycle in generated_from")
        for src in files[role].generated_from:
            visit(src, chain + (role,))

    for role in files:
        visit(role, ())


def parse_manifest(path: Path) -> Manifest:
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
    _check_generators(path, files)
    return manifest


def load_manifests() -> dict[str, Manifest]:
    """Every manifest by name; an earlier folder (``HARNESS_MANIFESTS``) wins over a later one."""
    manifests: dict[str, Manifest] = {}
    for folder in manifest_dirs():
        for path in sorted(folder.glob("*.toml")):
            m = parse_manifest(path)
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
