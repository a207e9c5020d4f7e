"""Label spaces and the mapping of a model's own class ids into them.

Comparisons and COCO evaluation need one id space. ``coco`` uses the COCO category ids 1-90 (80 used),
which is what the TF Object Detection API and torchvision's pretrained detectors emit. A model with its own
classes (a face detector, say) declares its own space; the harness never guesses a mapping. Class names are
matched to COCO ids by name, VOC's spellings included (``aeroplane`` -> airplane, ``tvmonitor`` -> tv ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COCO_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}

PERSON = 1

#: VOC class names whose COCO name differs
VOC_TO_COCO_NAMES: dict[str, str] = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "sofa": "couch",
    "tvmonitor": "tv",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "pedestrian": "person",
}
COCO_IDS_BY_NAME: dict[str, int] = {name: cid for cid, name in COCO_NAMES.items()}


def coco_id_for_name(name: str) -> int | None:
    """The COCO category id of a class name (COCO or VOC spelling, any case), or None."""
    key = name.strip().lower()
    key = VOC_TO_COCO_NAMES.get(key, key)
    return COCO_IDS_BY_NAME.get(key)


@dataclass(frozen=True)
class LabelMap:
    """How a model's raw class ids become ids of a label space.

    ``offset`` is added to raw ids first (TFLite's 0-based ids need +1); ``remap`` then maps specific ids;
    ``names`` names the ids of the target space that this model can emit.
    """

    space: str
    names: dict[int, str]
    offset: int = 0
    remap: dict[int, int] = field(default_factory=dict)

    def apply(self, raw_ids: np.ndarray) -> np.ndarray:
        ids = np.rint(np.asarray(raw_ids, dtype=np.float64)).astype(np.int64) + self.offset
        if self.remap:
            ids = np.array([self.remap.get(int(i), int(i)) for i in ids], dtype=np.int64)
        return ids

    def name(self, class_id: int) -> str:
        return self.names.get(int(class_id), str(class_id))

    @property
    def class_ids(self) -> list[int]:
        return sorted(self.names)


COCO = LabelMap("coco", COCO_NAMES)
COCO_PERSON_ONLY = LabelMap("coco", {PERSON: "person"})


def label_map_from_file(path: str | Path, *, space: str = "coco", offset: int = 0) -> LabelMap:
    """Read a one-name-per-line label file (TFLite ``labelmap.txt``, VOC ``labels.txt``).

    Line *i* names the id that a raw id becomes after ``offset`` (raw + offset == i): TFLite's
    ``labelmap.txt`` starts with a ``???`` line and its model emits 0-based ids, so raw 0 + offset 1 reads
    line 1 (``person``). Names that are COCO names map to their COCO ids when ``space == "coco"``;
    placeholder lines (``???``, ``background``) are skipped.
    """
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    names: dict[int, str] = {}
    remap: dict[int, int] = {}
    for raw, name in enumerate(lines):
        if not name or name in {"???", "background", "BACKGROUND", "__background__"}:
            continue
        target = raw  # the offset is applied to raw ids by LabelMap.apply, not to line numbers
        if space == "coco":
            coco_id = coco_id_for_name(name)  # COCO names, and VOC's spellings (aeroplane, tvmonitor ...)
            if coco_id is None:
                continue
            if coco_id != target:
                remap[target] = coco_id
            target = coco_id
        names[target] = name
    return LabelMap(space, names, offset=offset, remap=remap)
