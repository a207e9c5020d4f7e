"""COCO-style accuracy of one job's detections, computed by pycocotools (not a home-made AP).

Each decoded frame is one COCO image (image id = frame index); the ground truth comes from
:mod:`harness.data.groundtruth`, the detections from a results json (``frame, bbox xywh, score, category_id``,
everything above the low record threshold: COCO's AP integrates over all scores).

What is evaluated:

* Categories: those the dataset has AND the model can emit (its :class:`~harness.core.labels.LabelMap`) AND the
  policy's class filter allows. A person-only model on COCO images is scored on "person" alone, not
  punished for the 79 classes it never claimed.
* Ignore regions: ground truth flagged ignore (MOT flag 0, COCO ``iscrowd``, and boxes the options below
  exclude) is passed to pycocotools as ``iscrowd=1``. pycocotools never counts a crowd box as a miss, and a
  detection that matches no ordinary box but covers a crowd box (intersection over the *detection's* area
  >= the IoU threshold) is dropped instead of being a false positive; one crowd box may absorb several
  detections. That is exactly the "neither miss nor false positive" meaning of MOT's flag-0 rows.
* ``min_height``: ground truth shorter than it becomes ignore; detections shorter than it are dropped
  (the Caltech-pedestrian way: a detection of a just-too-small person then lands on an ignore region).
* ``roi`` (x1, y1, x2, y2): ground truth whose box centre is outside becomes ignore; detections whose
  centre is outside are dropped.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness.core.errors import HarnessError
from harness.data.groundtruth import GroundTruth
from harness.core.labels import LabelMap


@dataclass(frozen=True)
class AccuracyOptions:
    """Which boxes count: a minimum box height in pixels and a region of interest (x1, y1, x2, y2)."""

    min_height: float | None = None
    roi: tuple[float, float, float, float] | None = None
    max_dets: int = 100

    def __post_init__(self) -> None:
        if self.roi is not None:
            roi = tuple(float(v) for v in self.roi)
            if len(roi) != 4 or roi[2] <= roi[0] or roi[3] <= roi[1]:
                raise HarnessError(f"region of interest {self.roi} is not x1,y1,x2,y2 with x2>x1 and y2>y1",
                                   "give e.g. --roi 0,100,768,576")
            object.__setattr__(self, "roi", roi)
        if self.min_height is not None and float(self.min_height) < 0:
            raise HarnessError(f"min_height {self.min_height} is negative", "give a height in pixels, e.g. 50")

    def to_dict(self) -> dict[str, Any]:
        return {"min_height": self.min_height, "roi": list(self.roi) if self.roi else None, "max_dets": self.max_dets}

    def excluded(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Mask of boxes these options leave out (too short, or centred outside the region of interest)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        out = np.zeros(len(boxes), dtype=bool)
        if self.min_height is not None:
            out |= (boxes[:, 3] - boxes[:, 1]) < float(self.min_height)
        if self.roi is not None:
            x1, y1, x2, y2 = self.roi
            cx = (boxes[:, 0] + boxes[:, 2]) / 2
            cy = (boxes[:, 1] + boxes[:, 3]) / 2
            out |= (cx < x1) | (cx > x2) | (cy < y1) | (cy > y2)
        return out


@dataclass(frozen=True)
class ClassAccuracy:
    category_id: int
    name: str
    ap: float
    ap50: float
    ap75: float
    ar100: float
    n_gt: int  # ground truth that counts (not ignored)
    n_ignore: int
    n_dets: int


@dataclass(frozen=True)
class AccuracyResult:
    """pycocotools' 12 summary numbers (NaN where COCO says -1: nothing to score) and per-class rows."""

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    frames: int
    categories: tuple[int, ...]
    n_gt: int
    n_ignore: int
    n_dets: int
    per_class: tuple[ClassAccuracy, ...] = field(default=())
    options: AccuracyOptions = field(default_factory=AccuracyOptions)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("per_class")
        d["categories"] = list(self.categories)
        d["options"] = self.options.to_dict()
        return d


def _nan(value: float) -> float:
    return float("nan") if value is None or value < 0 else float(value)


def evaluation_categories(
    gt: GroundTruth,
    model_classes: LabelMap | Iterable[int] | None = None,
    policy_classes: Iterable[int] | None = None,
) -> list[int]:
    """Categories to score: the dataset's, narrowed to what the model emits and the policy keeps."""
    cats = set(gt.categories)
    if model_classes is not None:
        emitted = set(model_classes.class_ids if isinstance(model_classes, LabelMap) else model_classes)
        cats &= {int(c) for c in emitted}
    if policy_classes is not None:
        cats &= {int(c) for c in policy_classes}
    if not cats:
        raise HarnessError(
            f"the model and the ground truth share no category (dataset: {sorted(gt.categories)[:10]}, "
            f"model: {sorted(model_classes.class_ids if isinstance(model_classes, LabelMap) else (model_classes or []))[:10]})",
            "give ground truth for what this model detects, or the model's label map (labels=...)",
        )
    return sorted(cats)


def coco_inputs(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    frames: Iterable[int],
    categories: Sequence[int],
    options: AccuracyOptions = AccuracyOptions(),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ground-truth dict and results list pycocotools gets (options applied, frames restricted)."""
    cat_set = set(int(c) for c in categories)
    frame_list = sorted(set(int(f) for f in frames) & set(gt.frames))
    images, annotations = [], []
    for k in frame_list:
        size = gt.size_of(k)
        image: dict[str, Any] = {"id": k}
        if size:
            image.update(width=size[0], height=size[1])
        if k in gt.file_names:
            image["file_name"] = gt.file_names[k]
        images.append(image)
        truth = gt.frames[k]
        keep = np.isin(truth.class_ids, list(cat_set))
        ignore = truth.ignore | options.excluded(truth.boxes)
        areas = truth.box_areas()
        for i in np.flatnonzero(keep):
            x1, y1, x2, y2 = (float(v) for v in truth.boxes[i])
            annotations.append({
                "id": len(annotations) + 1,  # pycocotools treats id 0 as "unmatched": start at 1
                "image_id": k,
                "category_id": int(truth.class_ids[i]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(areas[i]),
                "iscrowd": int(bool(ignore[i])),
            })
    gt_dict = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": gt.categories.get(c, str(c))} for c in sorted(cat_set)],
    }
    frame_set = set(frame_list)
    results: list[dict[str, Any]] = []
    boxes: list[list[float]] = []
    for rec in detections:
        k = int(rec["frame"] if "frame" in rec else rec["image_id"])
        if k not in frame_set or int(rec["category_id"]) not in cat_set:
            continue
        x, y, w, h = (float(v) for v in rec["bbox"])
        results.append({"image_id": k, "category_id": int(rec["category_id"]), "bbox": [x, y, w, h],
                        "score": float(rec["score"])})
        boxes.append([x, y, x + w, y + h])
    if results and (options.min_height is not None or options.roi is not None):
        drop = options.excluded(np.array(boxes))
        results = [r for r, d in zip(results, drop) if not d]
    return gt_dict, results


def run_cocoeval(gt_dict: dict[str, Any], results: list[dict[str, Any]], *, max_dets: int = 100) -> Any:
    """Evaluate with pycocotools (its printing silenced); returns the COCOeval after summarize()."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds fields in place: copies
        else:  # loadRes cannot take an empty list; an empty result set is still a valid (zero) answer
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt_dict["images"]), "annotations": [],
                               "categories": list(gt_dict["categories"])}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = sorted(coco_gt.getImgIds())
        ev.params.catIds = sorted(coco_gt.getCatIds())
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _per_class(ev: Any, gt_dict: dict[str, Any], results: list[dict[str, Any]]) -> tuple[ClassAccuracy, ...]:
    """Per-category AP/AP50/AP75/AR@max from pycocotools' accumulated precision/recall arrays."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    recall = ev.eval["recall"]  # [T, K, A, M]
    iou_thrs = ev.params.iouThrs
    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))

    def mean_valid(arr: np.ndarray) -> float:
        valid = arr[arr > -1]
        return float(valid.mean()) if valid.size else float("nan")

    names = {c["id"]: c["name"] for c in gt_dict["categories"]}
    rows = []
    for k, cid in enumerate(ev.params.catIds):
        anns = [a for a in gt_dict["annotations"] if a["category_id"] == cid]
        rows.append(ClassAccuracy(
            category_id=int(cid),
            name=str(names.get(cid, cid)),
            ap=mean_valid(precision[:, :, k, 0, -1]),
            ap50=mean_valid(precision[t50, :, k, 0, -1]),
            ap75=mean_valid(precision[t75, :, k, 0, -1]),
            ar100=mean_valid(recall[:, k, 0, -1]),
            n_gt=sum(1 for a in anns if not a["iscrowd"]),
            n_ignore=sum(1 for a in anns if a["iscrowd"]),
            n_dets=sum(1 for r in results if r["category_id"] == cid),
        ))
    return tuple(rows)


def evaluate_detections(
    gt: GroundTruth,
    detections: Sequence[Mapping[str, Any]],
    *,
    frames: Iterable[int] | None = None,
    model_classes: LabelMap | Iterable[int] | None = None,
    policy_classes: Iterable[int] | None = None,
    options: AccuracyOptions = AccuracyOptions(),
) -> AccuracyResult:
    """COCO AP of results-json rows against ``gt`` on ``frames`` (default: every annotated frame).

    ``frames`` should be the frames the job decoded: a frame without any detection is still scored (its
    ground truth are misses), a frame the job never reached is not.
    """
    categories = evaluation_categories(gt, model_classes, policy_classes)
    frame_ids = gt.annotated_frames if frames is None else frames
    gt_dict, results = coco_inputs(gt, detections, frame_ids, categories, options)
    if not gt_dict["images"]:
        raise HarnessError("no frame of the detections has ground truth (frame indices do not overlap)",
                           "check that --gt belongs to the video the job ran on")
    ev = run_cocoeval(gt_dict, results, max_dets=options.max_dets)
    s = [_nan(v) for v in ev.stats]
    n_ignore = sum(1 for a in gt_dict["annotations"] if a["iscrowd"])
    return AccuracyResult(
        ap=s[0], ap50=s[1], ap75=s[2], ap_small=s[3], ap_medium=s[4], ap_large=s[5],
        ar1=s[6], ar10=s[7], ar100=s[8], ar_small=s[9], ar_medium=s[10], ar_large=s[11],
        frames=len(gt_dict["images"]),
        categories=tuple(int(c) for c in categories),
        n_gt=len(gt_dict["annotations"]) - n_ignore,
        n_ignore=n_ignore,
        n_dets=len(results),
        per_class=_per_class(ev, gt_dict, results),
        options=options,
    )
