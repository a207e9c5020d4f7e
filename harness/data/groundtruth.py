"""Ground truth of a video or an image set, loaded from the formats datasets ship, in one shape.

Accuracy needs, for every frame the harness decoded, the boxes a detector should find, in the same frame
indexing and the same label space as the detections. Three formats are read and all become a
:class:`GroundTruth` (frame index -> xyxy pixel boxes, COCO class ids, ignore flags):

* MOTChallenge ``gt.txt`` (``frame,id,left,top,w,h,flag,...``): ground-truth frame k+1 is decoded frame k;
  ``flag == 0`` rows are regions to ignore (neither a miss nor a false positive); boxes are clipped to the
  frame. MOT15 files (10 columns; columns 8-10 are world coordinates) are all "person"; MOT16/17 files (9
  columns: ``...,flag,class,visibility``) keep pedestrians (class 1), turn the person-like classes (2 person
  on vehicle, 7 static person, 8 distractor, 12 reflection) into ignore regions and drop vehicles/occluders,
  as the MOT16 benchmark does.
* COCO ``instances_*.json`` for an image folder: frame k is the k-th image of the folder in sorted file-name
  order (the order of :class:`harness.data.video.ImageFolderSource`); ``iscrowd`` boxes are ignore regions.
* Anton Milan's tracking XML (``<dataset><frame number=..><objectlist><object id=..><box xc yc w h>``), the
  format of the PETS 2009 annotations the MOT ground truth was made from; ``frame number`` n is decoded
  frame n (checked against MOT15's ``gt.txt``: the same boxes one frame number apart).

Class names are mapped to COCO ids (VOC spellings too: ``aeroplane`` -> airplane, ``tvmonitor`` -> tv ...)
so that detections in the COCO label space can be scored against any of them.
"""

from __future__ import annotations

import configparser
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError, SourceError
from harness.core.labels import COCO_IDS_BY_NAME, COCO_NAMES, PERSON, VOC_TO_COCO_NAMES, coco_id_for_name  # noqa: F401

#: MOT16/17 ``class`` column: 1 is scored; these are person-like and become ignore regions
MOT16_PEDESTRIAN = 1
MOT16_IGNORE_CLASSES = frozenset({2, 7, 8, 12})

GT_FORMATS = ("mot", "coco", "milan")
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv"}


@dataclass(frozen=True)
class FrameTruth:
    """The annotated boxes of one frame: xyxy pixels, COCO class ids, ignore flags, COCO areas."""

    boxes: np.ndarray  # float64[N, 4]
    class_ids: np.ndarray  # int64[N]
    ignore: np.ndarray  # bool[N]
    areas: np.ndarray | None = None  # float64[N]: COCO's own areas (segmentation); None = box area

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4))
        object.__setattr__(self, "class_ids", np.asarray(self.class_ids, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "ignore", np.asarray(self.ignore, dtype=bool).reshape(-1))
        if self.areas is not None:
            object.__setattr__(self, "areas", np.asarray(self.areas, dtype=np.float64).reshape(-1))
        n = len(self.boxes)
        if len(self.class_ids) != n or len(self.ignore) != n or (self.areas is not None and len(self.areas) != n):
            raise ValueError("boxes, class_ids, ignore (and areas) must have the same length")

    @classmethod
    def empty(cls) -> "FrameTruth":
        return cls(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.boxes)

    def box_areas(self) -> np.ndarray:
        if self.areas is not None:
            return self.areas
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])


@dataclass
class GroundTruth:
    """Per-frame ground truth in decoded-frame indexing.

    ``frames`` holds every annotated frame, including frames annotated as holding nothing (they still
    count: a detection there is a false positive). Frames absent from ``frames`` are not annotated and are
    left out of accuracy. ``frame_size`` is the (width, height) shared by all frames of a video;
    ``frame_sizes`` gives it per frame for image sets.
    """

    frames: dict[int, FrameTruth]
    categories: dict[int, str]
    frame_size: tuple[int, int] | None = None
    frame_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    file_names: dict[int, str] = field(default_factory=dict)
    source: str = ""
    format: str = ""

    @property
    def annotated_frames(self) -> list[int]:
        return sorted(self.frames)

    def size_of(self, frame: int) -> tuple[int, int] | None:
        return self.frame_sizes.get(frame, self.frame_size)

    @property
    def n_boxes(self) -> int:
        return sum(len(f) for f in self.frames.values())

    @property
    def n_ignore(self) -> int:
        return sum(int(f.ignore.sum()) for f in self.frames.values())

    def category_ids_present(self) -> list[int]:
        ids: set[int] = set()
        for f in self.frames.values():
            ids.update(int(c) for c in f.class_ids)
        return sorted(ids)


# helpers ----------------------------------------------------------------------------------------------

def _clip(boxes: np.ndarray, frame_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Clip xyxy boxes to the frame; returns the boxes and a mask of the ones that keep an area."""
    if frame_size is None or len(boxes) == 0:
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) if len(boxes) else np.zeros(0, bool)
        return boxes, keep
    width, height = frame_size
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out, keep


def read_seqinfo(folder: Path) -> dict[str, str]:
    """MOTChallenge ``seqinfo.ini`` ([Sequence] imWidth, imHeight, seqLength...) if the folder has one."""
    path = folder / "seqinfo.ini"
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep key case
    parser.read(path, encoding="utf-8")
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


def _seq_facts(path: Path) -> tuple[tuple[int, int] | None, int | None]:
    """Frame size and length from a ``seqinfo.ini`` beside ``gt/`` (MOT layout) or beside the file."""
    for folder in (path.parent.parent, path.parent):
        info = read_seqinfo(folder)
        if info:
            size = None
            if "imWidth" in info and "imHeight" in info:
                size = (int(info["imWidth"]), int(info["imHeight"]))
            length = int(info["seqLength"]) if "seqLength" in info else None
            return size, length
    return None, None


def _assemble(
    per_frame: dict[int, list[tuple[list[float], int, bool]]],
    frame_size: tuple[int, int] | None,
    n_frames: int,
) -> dict[int, FrameTruth]:
    frames: dict[int, FrameTruth] = {}
    for k in range(n_frames):
        rows = per_frame.get(k, [])
        if not rows:
            frames[k] = FrameTruth.empty()
            continue
        boxes = np.array([r[0] for r in rows], dtype=np.float64)
        classes = np.array([r[1] for r in rows], dtype=np.int64)
        ignore = np.array([r[2] for r in rows], dtype=bool)
        boxes, keep = _clip(boxes, frame_size)
        frames[k] = FrameTruth(boxes[keep], classes[keep], ignore[keep])
    return frames


# MOTChallenge -----------------------------------------------------------------------------------------

def load_mot(
    path: str | Path,
    *,
    frame_size: tuple[int, int] | None = None,
    num_frames: int | None = None,
) -> GroundTruth:
    """Read a MOTChallenge ``gt.txt``; ``frame_size``/``num_frames`` default to ``seqinfo.ini`` values.

    Frames 0..num_frames-1 are all annotated (frames without rows hold nobody); without a length, the
    last frame with a row ends the sequence.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"ground-truth file not found: {path}", "give the MOTChallenge gt/gt.txt of the video")
    seq_size, seq_len = _seq_facts(path)
    frame_size = frame_size or seq_size
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise SourceError(f"{path} is not a MOTChallenge gt.txt (comma-separated numbers): {exc}",
                          "expected rows frame,id,left,top,width,height,flag,...") from exc
    if rows.size and rows.shape[1] < 6:
        raise SourceError(f"{path}: rows have {rows.shape[1]} columns, a MOT gt.txt has at least 6",
                          "expected rows frame,id,left,top,width,height,flag,...")
    mot16 = rows.size > 0 and rows.shape[1] == 9
    per_frame: dict[int, list[tuple[list[float], int, bool]]] = {}
    for row in rows:
        k = int(round(row[0])) - 1
        if k < 0:
            raise SourceError(f"{path}: frame number {int(row[0])} (MOT frames count from 1)", "check the file")
        left, top, w, h = (float(v) for v in row[2:6])
        ignore = rows.shape[1] > 6 and row[6] == 0
        if mot16:
            cls = int(round(row[7]))
            if cls in MOT16_IGNORE_CLASSES:
                ignore = True
            elif cls != MOT16_PEDESTRIAN:
                continue  # vehicles, occluders: not people, neither scored nor ignored
        per_frame.setdefault(k, []).append(([left, top, left + w, top + h], PERSON, bool(ignore)))
    n = num_frames or seq_len or (max(per_frame) + 1 if per_frame else 0)
    return GroundTruth(_assemble(per_frame, frame_size, n), {PERSON: "person"}, frame_size, source=str(path),
                       format="mot")


# Anton Milan's XML (PETS 2009 annotations) ----------------------------------------------------------------

def load_milan_xml(
    path: str | Path,
    *,
    frame_size: tuple[int, int] | None = None,
    num_frames: int | None = None,
) -> GroundTruth:
    """Read ``<dataset><frame number=n><objectlist><object><box xc yc w h/>``; frame n is decoded frame n."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SourceError(f"cannot read the annotation XML {path}: {exc}", "check the file") from exc
    if root.tag != "dataset":
        raise SourceError(f"{path}: root element <{root.tag}>, expected <dataset> (Milan tracking XML)",
                          "give a PETS/Milan annotation XML, a MOT gt.txt or a COCO json")
    seq_size, seq_len = _seq_facts(path)
    frame_size = frame_size or seq_size
    per_frame: dict[int, list[tuple[list[float], int, bool]]] = {}
    last = -1
    for frame in root.iter("frame"):
        k = int(frame.get("number", "-1"))
        last = max(last, k)
        for box in frame.iter("box"):
            xc, yc, w, h = (float(box.get(a, "nan")) for a in ("xc", "yc", "w", "h"))
            per_frame.setdefault(k, []).append(([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], PERSON, False))
    n = num_frames or seq_len or last + 1
    return GroundTruth(_assemble(per_frame, frame_size, n), {PERSON: "person"}, frame_size, source=str(path),
                       format="milan")


# COCO instances json ------------------------------------------------------------------------------------

def _image_folder_files(image_dir: Path) -> list[str]:
    from harness.data.video import ImageFolderSource

    return ImageFolderSource(image_dir).files


def load_coco(path: str | Path, *, image_dir: str | Path | None = None) -> GroundTruth:
    """Read a COCO instances json; frame k is the k-th file of ``image_dir`` in sorted order.

    Without ``image_dir`` the json's own file names, sorted, give the order. Images of the folder that the
    json does not list are not annotated (left out of accuracy); images the json lists that the folder
    lacks are ignored. Category names are mapped to COCO ids where they are COCO or VOC names.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read the COCO json {path}: {exc}", "check the file") from exc
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise SourceError(f"{path} is not a COCO instances json (no 'images'/'annotations')",
                          "give an instances_*.json with images, annotations and categories")
    cat_map: dict[int, int] = {}
    categories: dict[int, str] = {}
    for cat in data.get("categories", []):
        cid = coco_id_for_name(str(cat["name"]))
        target = cid if cid is not None else int(cat["id"])
        cat_map[int(cat["id"])] = target
        categories[target] = COCO_NAMES.get(target, str(cat["name"])) if cid is not None else str(cat["name"])
    images = {int(im["id"]): im for im in data["images"]}
    by_name = {Path(im["file_name"]).name: iid for iid, im in images.items()}
    order = _image_folder_files(Path(image_dir)) if image_dir is not None else sorted(by_name)
    frame_of: dict[int, int] = {}
    file_names: dict[int, str] = {}
    for k, name in enumerate(order):
        if name in by_name:
            frame_of[by_name[name]] = k
            file_names[k] = name
    if not frame_of:
        raise SourceError(f"none of the images in {path} is in {image_dir}",
                          "point --gt at the annotations of this image folder")
    rows: dict[int, list[tuple[list[float], int, bool, float]]] = {k: [] for k in frame_of.values()}
    for ann in data["annotations"]:
        k = frame_of.get(int(ann["image_id"]))
        if k is None:
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        cid = cat_map.get(int(ann["category_id"]), int(ann["category_id"]))
        area = float(ann.get("area", w * h))
        rows[k].append(([x, y, x + w, y + h], cid, bool(ann.get("iscrowd", 0)), area))
    frames: dict[int, FrameTruth] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for iid, k in frame_of.items():
        im = images[iid]
        size = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None
        if size:
            sizes[k] = size
        r = rows[k]
        if not r:
            frames[k] = FrameTruth.empty()
            continue
        boxes, keep = _clip(np.array([x[0] for x in r], dtype=np.float64), size)
        frames[k] = FrameTruth(
            boxes[keep],
            np.array([x[1] for x in r], dtype=np.int64)[keep],
            np.array([x[2] for x in r], dtype=bool)[keep],
            np.array([x[3] for x in r], dtype=np.float64)[keep],
        )
    return GroundTruth(frames, categories, None, sizes, file_names, source=str(path), format="coco")


# dispatch -----------------------------------------------------------------------------------------------

def detect_format(path: Path) -> str:
    """Which loader reads ``path``: by suffix, and for XML by its root element."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "mot"
    if suffix == ".json":
        return "coco"
    if suffix == ".xml":
        try:
            for _, elem in ET.iterparse(path, events=("start",)):
                return "milan" if elem.tag == "dataset" else f"xml <{elem.tag}>"
        except ET.ParseError as exc:
            raise SourceError(f"{path} is not valid XML: {exc}", "check the file") from exc
    return f"unknown ({suffix or 'no suffix'})"


def load_ground_truth(
    spec: str | Path,
    *,
    frame_size: tuple[int, int] | None = None,
    num_frames: int | None = None,
    image_dir: str | Path | None = None,
    fmt: str | None = None,
) -> GroundTruth:
    """Load ground truth from a path (gt.txt, COCO json, Milan XML, or a MOT sequence folder) or an asset name.

    For an asset name the manifest's ``ground_truth`` file and ``ground_truth_format`` are used; an image
    set's images folder (role ``images`` or the primary file's folder) gives the frame order.
    """
    path = Path(spec).expanduser()
    if not path.exists() and not any(s in str(spec) for s in ("/", "\\")):
        from harness.data.assets import get_manifest, resolve_file

        manifest = get_manifest(str(spec))
        if "ground_truth" not in manifest.files:
            raise HarnessError(f"asset {manifest.name!r} has no ground truth",
                               "give --gt with a gt.txt / COCO json / XML path, or an asset with annotations")
        path = resolve_file(manifest, "ground_truth").path
        fmt = fmt or manifest.meta.get("ground_truth_format")
        if (fmt or detect_format(path)) == "coco" and image_dir is None:
            role = "images" if "images" in manifest.files else manifest.primary
            resolved = resolve_file(manifest, role).path
            image_dir = resolved if resolved.is_dir() else resolved.parent
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        # a video file: MOTChallenge keeps gt/gt.txt beside it
        beside = path.parent / "gt" / "gt.txt"
        if not beside.is_file():
            raise SourceError(f"{path} is a video with no gt/gt.txt beside it", "give its ground truth with --gt")
        path = beside
    if path.is_dir() and image_dir is None and (path.parent / "annotations").is_dir() and not (path / "gt").is_dir():
        # an image folder: a COCO json in ../annotations, frames in this folder's order
        image_dir, path = path, path.parent
    if path.is_dir():
        for candidate in (path / "gt" / "gt.txt", path / "gt.txt"):
            if candidate.is_file():
                path = candidate
                break
        else:
            jsons = sorted((path / "annotations").glob("*.json")) if (path / "annotations").is_dir() else []
            if len(jsons) != 1:
                raise SourceError(f"{path} is a folder with no gt/gt.txt and not exactly one annotations/*.json",
                                  "point --gt at the annotation file itself")
            if image_dir is None and (path / "images").is_dir():
                image_dir = path / "images"
            path = jsons[0]
    if not path.is_file():
        raise SourceError(f"ground truth not found: {spec}", "give a gt.txt / COCO json / XML path or an asset name")
    fmt = fmt or detect_format(path)
    if fmt == "mot":
        return load_mot(path, frame_size=frame_size, num_frames=num_frames)
    if fmt == "milan":
        return load_milan_xml(path, frame_size=frame_size, num_frames=num_frames)
    if fmt == "coco":
        return load_coco(path, image_dir=image_dir)
    raise SourceError(f"{path}: cannot tell its ground-truth format ({fmt})",
                      f"supported: MOTChallenge gt.txt, COCO instances .json, Milan/PETS .xml ({', '.join(GT_FORMATS)})")
