"""Where environments live under the harness cache, the name -> spec registry, and what state each is in.

Layout (``HARNESS_CACHE``, default ``~/.cache/detector-harness``)::

    envs/specs/<name>.json            the registry: what each name means (requirements, Python)
    envs/<name>-<key>/                a complete environment; ``harness-env.json`` inside marks it complete
    envs/.tmp-<name>-<key>-*/         a build in progress, or what an interrupted one left (never used)
    envs/locks/<name>-<key>.build     held while one process builds it (the others wait)
    envs/locks/<name>-<key>.use       held shared by every run that uses it (removal needs it exclusively)
    envs/locks/<name>.name            held while one process creates, redefines, rebuilds or removes <name>
    envs/logs/<name>-<key>.log        the installer's full output of its build
    envs/wheels/<digest>/*.whl        the harness wheel, built once per source digest

An environment counts as built only when its marker is there: the marker is written last, inside the
temporary folder, and the folder is renamed into place after it, so a build killed at any moment leaves
no folder a later run would trust. A redefinition is a transaction under the name's lock: the new build is
made beside the registered one, the registry entry is swapped (one rename) only once it is complete, and
only then are the superseded builds that no run is using removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.data.assets import cache_dir
from harness.envs.locks import locked
from harness.core.env_names import DEFAULT_ENV
from harness.envs.spec import EnvSpec, check_name
from harness.core.errors import EnvError, did_you_mean

MARKER = "harness-env.json"
STATES = ("ready", "stale", "not built", "damaged")


@dataclass
class BuildRecord:
    """What a complete environment holds; written into its folder as the marker, last."""

    name: str
    key: str
    requirements: list[str]
    python_version: str  # the full X.Y.Z of its interpreter
    harness_version: str
    harness_digest: str
    installer: str
    protocol: int
    packages: dict[str, str] = field(default_factory=dict)
    built_at: str = ""
    build_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildRecord":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class EnvState:
    """A registered environment as ``harness env list`` shows it."""

    spec: EnvSpec
    state: str  # one of STATES
    folder: Path | None  # the folder for the current key, or the newest stale/damaged one
    record: BuildRecord | None
    detail: str = ""


def _is_key(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class EnvStore:
    """The environments under one cache folder (``root`` default: ``<HARNESS_CACHE>/envs``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "envs"

    # the registry -----------------------------------------------------------------------------------
    def _spec_path(self, name: str) -> Path:
        return self.root / "specs" / f"{check_name(name)}.json"

    def define(self, spec: EnvSpec) -> EnvSpec | None:
        """Register (or redefine) ``spec.name``; returns the spec it replaced, if any."""
        path = self._spec_path(spec.name)
        previous = self.spec(spec.name) if path.is_file() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, spec.to_dict())
        return previous

    def check_usable(self, write: bool = True) -> None:
        """One clear error when the cache cannot hold (``write``) or even be read for environments."""
        from harness.data.assets.places import CACHE_ENV, check_folder

        check_folder(self.root, "the environments folder", f"set {CACHE_ENV} to a folder you can write, e.g. "
                     f"export {CACHE_ENV}=~/.cache/detector-harness (it is {os.environ.get(CACHE_ENV) or 'unset'})",
                     write=write)

    def names(self) -> list[str]:
        self.check_usable(write=False)
        folder = self.root / "specs"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def defined(self, name: str) -> EnvSpec | None:
        """What ``name`` means now, None when it is not registered."""
        path = self._spec_path(name)
        if not path.is_file():
            return None
        return self.spec(name)

    def is_defined_as(self, spec: EnvSpec) -> bool:
        return self.defined(spec.name) == spec

    def spec(self, name: str) -> EnvSpec:
        if name == DEFAULT_ENV:
            raise EnvError(f"{DEFAULT_ENV!r} is the running environment, it has no spec",
                           "run the job without env (or env = 'default')")
        path = self._spec_path(name)
        if not path.is_file():
            known = self.names()
            raise EnvError(
                f"no environment named {name!r}.{did_you_mean(name, known)} Known: {', '.join(known) or '(none)'}"
                f" (in {self.root})",
                f"create it: harness env create {name} REQUIREMENT... (e.g. 'opencv-python==4.14.*')",
            )
        return EnvSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def undefine(self, name: str) -> None:
        self._spec_path(name).unlink(missing_ok=True)

    # folders ----------------------------------------------------------------------------------------
    def folder(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}"

    def name_lock(self, name: str) -> Path:
        """Held (exclusively) while one process changes what ``name`` means or which build it has."""
        return self.root / "locks" / f"{check_name(name)}.name"

    def build_lock(self, folder: Path) -> Path:
        return self.root / "locks" / f"{folder.name}.build"

    def use_lock(self, folder: Path) -> Path:
        return self.root / "locks" / f"{folder.name}.use"

    def log_path(self, folder: Path) -> Path:
        return self.root / "logs" / f"{folder.name}.log"

    def wheel_dir(self, digest: str) -> Path:
        return self.root / "wheels" / digest

    def folders_of(self, name: str) -> list[Path]:
        """Every environment folder (complete or not) built for ``name``, newest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir()
                 if p.is_dir() and p.name.startswith(f"{name}-") and _is_key(p.name[len(name) + 1:])]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def leftovers(self, folder: Path) -> list[Path]:
        """Temporary folders of interrupted builds of ``folder``."""
        return sorted(self.root.glob(f".tmp-{folder.name}-*")) if self.root.is_dir() else []

    @staticmethod
    def record(folder: Path) -> BuildRecord | None:
        """The build record of a complete environment whose interpreter is still there, else None."""
        marker = folder / MARKER
        if not marker.is_file():
            return None
        try:
            record = BuildRecord.from_dict(json.loads(marker.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            return None
        return record if os.path.exists(folder / "bin" / "python") else None

    @staticmethod
    def mark_complete(folder: Path, record: BuildRecord) -> None:
        _write_json(folder / MARKER, record.to_dict())

    @staticmethod
    def mark_damaged(folder: Path) -> None:
        """Take the marker away: the next use rebuilds instead of trusting a broken environment."""
        (folder / MARKER).unlink(missing_ok=True)

    def remove_folder(self, folder: Path, wait: bool = False) -> bool:
        """Delete an environment folder unless a run is using it; True when it is gone."""
        with locked(self.use_lock(folder), shared=False, wait=wait) as got:
            if not got:
                return False
            with locked(self.build_lock(folder), wait=wait) as building:
                if not building:
                    return False
                if folder.exists():
                    doomed = folder.with_name(f".tmp-{folder.name}-removing-{os.getpid()}-{time.time_ns()}")
                    os.replace(folder, doomed)  # gone from view at once; deleting 2 GB takes a while
                    shutil.rmtree(doomed, ignore_errors=True)
                self.log_path(folder).unlink(missing_ok=True)
        return True

    # state ------------------------------------------------------------------------------------------
    def state(self, name: str, current_key: str | None) -> EnvState:
        """``ready`` (built for the current key), ``stale`` (built, but the spec or the harness changed:
        rebuilt on next use), ``damaged`` (its folder lost its interpreter or marker), ``not built``."""
        spec = self.spec(name)
        if current_key is not None:
            folder = self.folder(name, current_key)
            record = self.record(folder)
            if record is not None:
                return EnvState(spec, "ready", folder, record)
        others = self.folders_of(name)
        for folder in others:
            record = self.record(folder)
            if record is not None:
                return EnvState(spec, "stale", folder, record,
                                "built for another spec or harness source: rebuilt on next use")
        if others:
            return EnvState(spec, "damaged", others[0], None,
                            "no complete build marker or no interpreter: rebuilt on next use")
        return EnvState(spec, "not built", None, None)


def folder_size(folder: Path) -> int:
    """Bytes on disk under ``folder``, each inode once (uv hardlinks files from its cache, so most of
    these bytes are shared with the cache and other environments)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident not in seen:
                seen.add(ident)
                total += st.st_blocks * 512
    return total
