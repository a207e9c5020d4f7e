"""The family's class names -> the harness's label space: VOC (or COCO) names map to COCO category ids
(``aeroplane`` -> airplane, ``tvmonitor`` -> tv ...), so that a VOC model, or a one-class ``person`` model, is
scored against COCO-id ground truth. A name list that is not all COCO/VOC names (UltraFace's ``face``, a custom
class) keeps its own space with the model's raw class indices: a partial mapping would let an unmapped raw
index pass as an unrelated COCO id."""

from __future__ import annotations

from harness.labels import COCO_NAMES, LabelMap, coco_id_for_name

BACKGROUND_NAMES = {"background", "__background__", "???", ""}


def label_map_for(labels: list[str]) -> LabelMap:
    """The :class:`LabelMap` of a family label list (index 0 the background)."""
    named = {i: name for i, name in enumerate(labels) if i > 0 and name.strip().lower() not in BACKGROUND_NAMES}
    coco = {i: coco_id_for_name(name) for i, name in named.items()}
    if named and all(cid is not None for cid in coco.values()):
        return LabelMap("coco", {int(coco[i]): COCO_NAMES[int(coco[i])] for i in named},  # type: ignore[index]
                        remap={i: int(cid) for i, cid in coco.items() if cid != i})  # type: ignore[arg-type]
    space = next(iter(named.values())).strip().lower() if len(named) == 1 else "pytorch-ssd"
    return LabelMap(space, dict(named))
