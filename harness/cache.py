"""Content-keyed cache for converted model artifacts (SavedModels, ONNX files, ported weights).

A conversion is keyed by the sha256 of its source file, the converter's name and version, and its
parameters, so a changed source or converter never reuses a stale artifact, and an unchanged one is built
once. Artifacts are built in a temporary folder and renamed into place, so a crash mid-conversion never
leaves a half-built artifact that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from harness.assets import cache_dir, sha256_of
from harness.versions import distribution_versions


def artifact_key(source: Path, converter: str, params: dict[str, Any] | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(sha256_of(source).encode())
    digest.update(converter.encode())
    digest.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def cached_artifact(
    source: Path,
    converter: str,
    build: Callable[[Path], Path],
    params: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Path:
    """Return the artifact made from ``source``; ``build(tmp_dir)`` makes it inside ``tmp_dir`` and returns
    the path of the artifact (a file or folder) within it."""
    root = (root or cache_dir() / "artifacts") / converter
    key = artifact_key(source, converter, params)
    final_dir = root / key
    marker = final_dir / "artifact.json"
    if marker.is_file():
        return final_dir / json.loads(marker.read_text())["name"]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        made = build(tmp)
        rel = made.relative_to(tmp)
        (tmp / "artifact.json").write_text(
            json.dumps({"name": str(rel), "source": str(source), "converter": converter, "params": params or {}})
        )
        try:
            os.replace(tmp, final_dir)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return final_dir / json.loads(marker.read_text())["name"]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def conversion_params(backend_cls: Any) -> dict[str, Any]:
    """What besides the graph's bytes decides the artifact: the backend, its framework versions, a revision."""
    versions = distribution_versions(getattr(backend_cls, "distributions", ()))
    return {
        "backend": backend_cls.name,
        "class": f"{backend_cls.__module__}.{backend_cls.__qualname__}",
        "revision": getattr(backend_cls, "conversion_revision", 1),
        "versions": versions,
    }


def reference_graph() -> Path:
    from harness.models import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL, role="graph").path


def reference_artifact(backend_cls: Any, graph: Path | None = None, root: Path | None = None) -> Path:
    """``backend_cls``'s converted reference model, built on first use and reused while nothing changed."""
    source = Path(graph) if graph is not None else reference_graph()
    return cached_artifact(
        source,
        f"{backend_cls.name}-reference",
        lambda tmp: backend_cls.convert_reference(source, tmp),
        params=conversion_params(backend_cls),
        root=root,
    )
