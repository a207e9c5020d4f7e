"""A model reference: where its file is, what it is, and how its class ids map to a label space.

Backends call :func:`resolve_model` with whatever the user gave (an asset name or a path) so that every
backend reports models the same way and the label map comes from the manifest, not from guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.assets import Manifest, get_manifest, load_manifests, resolve_file, sha256_of
from harness.core.errors import ModelError
from harness.core.labels import COCO, COCO_NAMES, LabelMap, label_map_from_file

DEFAULT_MODEL = "ssdlite-pedestrian"


@dataclass(frozen=True)
class ModelRef:
    path: Path
    name: str  # asset name, or the file name for a path
    label_map: LabelMap = COCO
    input_size: tuple[int, int] | None = None
    manifest: Manifest | None = None
    extra_files: dict[str, Path] = field(default_factory=dict)

    def file(self, role: str) -> Path:
        """Another file of the same asset (an OpenCV text graph, a label file...)."""
        if role in self.extra_files:
            return self.extra_files[role]
        if self.manifest is None:
            raise ModelError(f"{self.path} is a plain file: no companion file {role!r} is known",
                             f"pass the {role} file explicitly (see --help of the backend options)")
        return resolve_file(self.manifest, role).path

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "model_path": str(self.path)}
        if self.path.is_file():
            out["model_sha256"] = sha256_of(self.path)
        if self.input_size:
            out["input_size"] = list(self.input_size)
        out["label_space"] = self.label_map.space
        return out


def manifest_label_map(manifest: Manifest) -> LabelMap:
    space = manifest.meta.get("label_space", "coco")
    labels = manifest.meta.get("labels")
    offset = int(manifest.meta.get("label_offset", 0))
    if isinstance(labels, dict):
        return LabelMap(space, {int(k): str(v) for k, v in labels.items()}, offset=offset)
    if isinstance(labels, str) and labels in manifest.files:  # a role naming a label file
        return label_map_from_file(resolve_file(manifest, labels).path, space=space, offset=offset)
    return LabelMap(space, dict(COCO_NAMES), offset=offset) if space == "coco" else COCO


def resolve_model(
    name_or_path: str,
    role: str | None = None,
    *,
    label_map: LabelMap | None = None,
    input_size: tuple[int, int] | None = None,
) -> ModelRef:
    """Resolve an asset name or a path. A path to a folder is kept (SavedModels are folders)."""
    p = Path(name_or_path).expanduser()
    manifests = load_manifests()
    if name_or_path in manifests:
        manifest = get_manifest(name_or_path)
        resolved = resolve_file(manifest, role)
        size = manifest.meta.get("input_size")
        return ModelRef(
            path=resolved.path,
            name=manifest.name,
            label_map=label_map or manifest_label_map(manifest),
            input_size=input_size or (tuple(size) if size else None),  # type: ignore[arg-type]
            manifest=manifest,
        )
    if not p.exists():
        raise ModelError(
            f"model not found: {name_or_path}",
            f"give an existing file/folder, or a model asset name ({', '.join(n for n, m in manifests.items() if m.kind == 'model')})",
        )
    return ModelRef(path=p, name=p.name, label_map=label_map or COCO, input_size=input_size)


def label_map_option(value: Any) -> LabelMap | None:
    """``--opt labels=path/to/labelmap.txt`` or ``labels=person`` for a person-only COCO model."""
    if value in (None, ""):
        return None
    if value == "person":
        return LabelMap("coco", {1: "person"})
    if value == "coco":
        return COCO
    path = Path(str(value))
    if not path.is_file():
        raise ModelError(f"label file not found: {value}", "give a one-name-per-line label file, or labels=coco|person")
    return label_map_from_file(path)
