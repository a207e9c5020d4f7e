"""Where the running harness comes from, its content digest, and the wheel installed into environments.

Every environment gets the harness installed NON-editable, from a wheel built once per source digest.
Why not editable: an editable install would run whatever the checkout holds at the moment a job starts,
so an environment built for one checkout would silently run another one's code (two worktrees sharing a
cache, or an edit in the middle of a run), and a worker could speak another protocol than the one its
parent checked. A wheel is a snapshot: the digest of exactly what it holds is part of the environment's
key, so a changed checkout builds a new environment (fast: uv hardlinks from its cache) and a finished
environment never changes under a running job.

Found, in order: ``HARNESS_SOURCE`` (a checkout folder or a ``.whl``), the checkout the running
``harness`` package was imported from, the folder or wheel pip recorded when the harness was installed
(PEP 610 ``direct_url.json``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from harness.core.errors import EnvError

SOURCE_ENV = "HARNESS_SOURCE"
DISTRIBUTION = "detector-harness"
_SKIP_DIRS = {"__pycache__", "build", "dist", ".git"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class HarnessSource:
    """A checkout folder or a wheel file, with the version it declares and the digest of what it holds."""

    kind: str  # "checkout" | "wheel"
    path: Path
    version: str
    digest: str


def _project_name(pyproject: Path) -> str | None:
    try:
        return tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _is_checkout(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and _project_name(folder / "pyproject.toml") == DISTRIBUTION


def packaged_files(root: Path) -> list[Path]:
    """The files of a checkout that go into the wheel: pyproject, readme, licence, and the folders of the
    packages pyproject declares (so the digest changes exactly when the installed harness would)."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    setup = project.get("tool", {}).get("setuptools", {})
    package_dirs = setup.get("package-dir", {})
    tops = sorted({(package_dirs.get(p) or p.replace(".", "/")).split("/")[0] for p in setup.get("packages", [])}
                  or {"harness"})
    files = [root / "pyproject.toml"]
    readme = project.get("project", {}).get("readme")
    for extra in [readme if isinstance(readme, str) else "README.md", "LICENSE", "LICENSE.txt", "setup.cfg"]:
        if (root / extra).is_file() and root / extra not in files:
            files.append(root / extra)
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
            files += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith(_SKIP_SUFFIXES)]
    return files


def _digest_files(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def _checkout(root: Path) -> HarnessSource:
    version = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("version", "0")
    return HarnessSource("checkout", root, str(version), _digest_files(root, packaged_files(root)))


def _wheel(path: Path) -> HarnessSource:
    parts = path.name.split("-")
    if len(parts) < 3 or parts[0].replace("_", "-") != DISTRIBUTION:
        raise EnvError(f"{path} is not a {DISTRIBUTION} wheel", f"point {SOURCE_ENV} at a {DISTRIBUTION}-*.whl "
                       "or at a checkout")
    return HarnessSource("wheel", path, parts[1], hashlib.sha256(path.read_bytes()).hexdigest()[:20])


def _from_path(path: Path, what: str) -> HarnessSource:
    if path.is_file() and path.suffix == ".whl":
        return _wheel(path)
    if path.is_dir() and _is_checkout(path):
        return _checkout(path)
    raise EnvError(f"{what} {path} is neither a {DISTRIBUTION} checkout (a folder with its pyproject.toml) nor "
                   "a wheel", f"point {SOURCE_ENV} at a checkout or a {DISTRIBUTION}-*.whl")


def _recorded_by_pip() -> Path | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    import json

    url = urlparse(json.loads(text).get("url", ""))
    return Path(unquote(url.path)) if url.scheme == "file" else None


def harness_source() -> HarnessSource:
    """The harness to install into environments (see the module docstring for the search order)."""
    override = os.environ.get(SOURCE_ENV, "").strip()
    if override:
        return _from_path(Path(override).expanduser().resolve(), SOURCE_ENV)
    import harness

    root = Path(harness.__file__).resolve().parent.parent
    if _is_checkout(root):
        return _checkout(root)
    recorded = _recorded_by_pip()
    if recorded is not None and (recorded.is_dir() or recorded.is_file()):
        return _from_path(recorded, "the harness was installed from")
    raise EnvError(
        f"cannot find the harness's own source to install into an environment: {root} is not a checkout and "
        "pip recorded no folder or wheel it was installed from",
        f"set {SOURCE_ENV} to a {DISTRIBUTION} checkout or wheel (e.g. {SOURCE_ENV}=~/src/detector-harness)",
    )


def snapshot(source: HarnessSource, dest: Path) -> Path:
    """Copy the packaged files of a checkout into ``dest`` (so a build writes nothing into the checkout)."""
    root = source.path
    for path in packaged_files(root):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def scratch_dir(parent: Path, prefix: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
