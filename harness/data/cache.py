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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from harness.data.assets import cache_dir, sha256_of
from harness.core.errors import BackendUnavailable
from harness.core.versions import distribution_versions

if TYPE_CHECKING:
    from harness.core.converter import Converter
    from harness.core.detector import Detector


def artifact_key(source: Path, converter: str, params: dict[str, Any] | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(sha256_of(source).encode())
    digest.update(converter.encode())
    digest.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    """A converted artifact and whether this call had to build it (the results record both)."""

    path: Path
    converter: str
    built: bool
    seconds: float


def ensure_artifact(
    source: Path,
    converter: str,
    build: Callable[[Path], Path],
    params: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Artifact:
    """The artifact made from ``source``, built now only if the cache lacks it; ``build(tmp_dir)`` makes it
    inside ``tmp_dir`` and returns the path of the artifact (a file or folder) within it."""
    t0 = time.perf_counter()
    root = (root or cache_dir() / "artifacts") / converter
    key = artifact_key(source, converter, params)
    final_dir = root / key
    marker = final_dir / "artifact.json"
    if marker.is_file():
        path = final_dir / json.loads(marker.read_text())["name"]
        return Artifact(path, converter, False, time.perf_counter() - t0)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        made = build(tmp)
        rel = made.relative_to(tmp)
        (tmp / "artifact.json").write_text(
            json.dumps({"name": str(rel), "source": str(source), "converter": converter, "params": params or {}},
                       default=str)
        )
        try:
            os.replace(tmp, final_dir)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        path = final_dir / json.loads(marker.read_text())["name"]
        return Artifact(path, converter, True, time.perf_counter() - t0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached_artifact(
    source: Path,
    converter: str,
    build: Callable[[Path], Path],
    params: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Path:
    """The path of :func:`ensure_artifact`'s artifact."""
    return ensure_artifact(source, converter, build, params, root).path


def conversion_params(converter: type[Converter], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What besides the graph's bytes decides the artifact: the backend, its converter's versions, a revision,
    and the conversion options (``converter.conversion_options``: defaults filled in, so that ``harness
    convert`` and a run with default options agree on the key)."""
    params: dict[str, Any] = {
        "backend": converter.backend,
        "class": converter.identity(),
        "revision": converter.revision,
        "versions": distribution_versions(converter.distributions),
    }
    chosen = converter.conversion_options(options or {})
    if chosen:
        params["options"] = chosen
    return params


def reference_graph() -> Path:
    from harness.data.models import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL, role="graph").path


def reference_conversion(
    converter: type[Converter],
    graph: Path | None = None,
    root: Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> Artifact:
    """``converter``'s form of the reference model, built on first use and reused while nothing changed.

    The one entry to the conversion cache for ``harness convert`` and ``harness run`` alike: the same
    converter name, parameters and build call whoever asks.
    """
    source = Path(graph) if graph is not None else reference_graph()
    params = conversion_params(converter, options)
    chosen = dict(params.get("options", {}))
    try:
        return ensure_artifact(
            source,
            f"{converter.backend}-reference",
            lambda tmp: converter.convert_reference(source, tmp, **chosen),
            params=params,
            root=root,
        )
    except (ImportError, BackendUnavailable) as exc:
        # envs-b: an environment without the converter (torch-gpu and ort-gpu have no TensorFlow)
        # reads what another environment converted from the same graph bytes with the same options
        made = converted_elsewhere(source, f"{converter.backend}-reference", params, root)
        if made is None:
            raise BackendUnavailable(
                f"the reference model's {converter.backend} form is not converted yet, and this environment cannot "
                f"convert it ({exc})",
                "convert it once in the environment that has TensorFlow (the default one): harness convert",
            ) from None
        return made


def converted_elsewhere(source: Path, converter: str, params: Mapping[str, Any], root: Path | None = None
                        ) -> Artifact | None:
    """The newest cached artifact of ``converter`` made from ``source``'s bytes with ``params`` except the
    converter's versions (those of the environment that converted it, recorded in its artifact.json), or None.

    Why: the versions are in the key so that a new converter converts again; an environment that has no
    converter at all (the GPU layout's torch-gpu and ort-gpu) can only use what one made.
    """
    t0 = time.perf_counter()
    folder = (root or cache_dir() / "artifacts") / converter
    wanted = {k: v for k, v in params.items() if k != "versions"}
    found: list[tuple[float, Path]] = []
    for marker in folder.glob("*/artifact.json") if folder.is_dir() else []:
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        theirs = recorded.get("params") or {}
        if {k: v for k, v in theirs.items() if k != "versions"} != wanted:
            continue
        if artifact_key(source, converter, theirs) != marker.parent.name:  # another graph's bytes
            continue
        found.append((marker.stat().st_mtime, marker.parent / recorded["name"]))
    if not found:
        return None
    return Artifact(max(found)[1], converter, False, time.perf_counter() - t0)


def reference_artifact(
    converter: type[Converter],
    graph: Path | None = None,
    root: Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> Path:
    """The path of :func:`reference_conversion`'s artifact."""
    return reference_conversion(converter, graph, root, options).path


def model_conversion(
    converter: type[Converter],
    source: Path,
    fmt: str,
    root: Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> Artifact:
    """``converter.convert_model(source, tmp, fmt=fmt)``: a user's checkpoint in another format (a ``.pt2``,
    the Jetson ONNX export), built once per content of ``source``, converter versions and options, and reused
    by ``harness convert --model`` and ``harness run`` alike."""
    params = conversion_params(converter)
    params["format"] = fmt
    chosen = {k: str(v) for k, v in (options or {}).items() if v is not None}
    if chosen:
        params["model_options"] = chosen
    return ensure_artifact(
        Path(source),
        f"{converter.backend}-{fmt}",
        lambda tmp: converter.convert_model(Path(source), tmp, fmt=fmt, options=chosen),
        params=params,
        root=root,
    )


def use_reference_conversion(detector: "Detector", graph: Path | None = None,
                             options: Mapping[str, Any] | None = None,
                             converter: "type[Converter] | None" = None) -> Path:
    """The converted form of the reference graph made by ``converter`` (default: the detector's own), from
    the one conversion cache that ``harness convert`` fills too (:func:`reference_conversion`); recorded in
    the detector's ``conversions``, so the results say whether this load converted anything.

    A function here rather than a method of the detector interface: the interface (``harness.core``) knows
    nothing of the cache, and a backend that converts asks for its artifact through this one door.
    """
    from harness.core.detector import Conversion

    converter = converter or detector.converter
    if converter is None:
        raise NotImplementedError(f"backend {detector.name!r} has no converter")
    if detector.on_phase is not None:
        detector.on_phase(f"converting the reference graph for {detector.name} (cached after the first time)")
    artifact = reference_conversion(converter, graph, options=options)
    detector.conversions.append(Conversion(artifact.converter, str(artifact.path), artifact.built,
                                           round(artifact.seconds, 3)))
    return artifact.path
