"""COCO accuracy through pycocotools: pinned on hand-built cases, and equal to pycocotools on a real run."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.data.groundtruth import FrameTruth, GroundTruth
from harness.core.labels import COCO, COCO_PERSON_ONLY
from harness.measure.metrics.accuracy import AccuracyOptions, evaluate_detections
from tests.conftest import requires_tf

SIZE = (768, 576)  # non-square, like PETS


def _gt(boxes_per_frame: dict[int, list[list[float]]], ignore: dict[int, list[bool]] | None = None,
        classes: dict[int, list[int]] | None = None, categories: dict[int, str] | None = None) -> GroundTruth:
    frames = {}
    for k, boxes in boxes_per_frame.items():
        n = len(boxes)
        frames[k] = FrameTruth(np.array(boxes, dtype=np.float64).reshape(-1, 4),
                               (classes or {}).get(k, [1] * n), (ignore or {}).get(k, [False] * n))
    return GroundTruth(frames, categories or {1: "person"}, SIZE)


def _det(frame: int, xyxy: list[float], score: float, cid: int = 1) -> dict:
    x1, y1, x2, y2 = xyxy
    return {"frame": frame, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score, "category_id": cid}


A = [100.0, 100.0, 150.0, 200.0]  # 50 x 100
B = [300.0, 100.0, 350.0, 200.0]


def test_perfect_detections_score_one_everywhere() -> None:
    gt = _gt({k: [A, B] for k in range(4)})
    dets = [_det(k, box, 0.9) for k in range(4) for box in (A, B)]
    r = evaluate_detections(gt, dets)
    assert (r.ap, r.ap50, r.ap75, r.ar100) == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert r.n_gt == 8 and r.n_dets == 8 and r.frames == 4
    assert r.per_class[0].ap == pytest.approx(1.0) and r.per_class[0].name == "person"


def test_half_missed_gives_recall_half_and_cocos_101_point_ap() -> None:
    gt = _gt({k: [A, B] for k in range(4)})
    dets = [_det(k, A, 0.9) for k in range(4)]
    r = evaluate_detections(gt, dets)
    assert r.ar100 == pytest.approx(0.5)
    # precision 1 up to recall 0.5: 51 of COCO's 101 recall points (0, 0.01, ..., 0.5)
    assert r.ap == pytest.approx(51 / 101) and r.ap50 == pytest.approx(51 / 101)


def test_a_false_positive_ranked_first_halves_precision() -> None:
    gt = _gt({0: [A]})
    dets = [_det(0, A, 0.5), _det(0, B, 0.9)]  # the wrong box has the higher score
    r = evaluate_detections(gt, dets)
    assert r.ap50 == pytest.approx(0.5) and r.ar100 == 1.0


@pytest.mark.parametrize(
    "dy, ap, ap50, ap75",
    [
        (20.0, 0.4, 1.0, 0.0),  # IoU 80/120 = 0.667: matches at .50 .55 .60 .65 only
        (10.0, 0.7, 1.0, 1.0),  # IoU 90/110 = 0.818: matches at .50 ... .80
        (40.0, 0.0, 0.0, 0.0),  # IoU 60/140 = 0.43: a miss and a false positive everywhere
    ],
)
def test_a_shifted_box_counts_only_at_the_iou_thresholds_it_clears(dy: float, ap: float, ap50: float,
                                                                   ap75: float) -> None:
    gt = _gt({k: [A] for k in range(3)})
    dets = [_det(k, [A[0], A[1] + dy, A[2], A[3] + dy], 0.9) for k in range(3)]
    r = evaluate_detections(gt, dets)
    assert r.ap == pytest.approx(ap) and r.ap50 == pytest.approx(ap50) and r.ap75 == pytest.approx(ap75)


def test_ignore_regions_are_neither_misses_nor_false_positives() -> None:
    # frame 0: a person to find (A) and an ignore region (B) that a detection covers with the HIGHEST score
    # frame 1: an ignore region nobody detects
    gt = _gt({0: [A, B], 1: [B]}, ignore={0: [False, True], 1: [True]})
    dets = [_det(0, A, 0.5), _det(0, B, 0.95), _det(0, [B[0] + 2, B[1] + 3, B[2], B[3]], 0.9)]
    r = evaluate_detections(gt, dets)
    assert (r.ap, r.ar100) == pytest.approx((1.0, 1.0))  # both detections on B dropped, B in frame 1 not a miss
    assert r.n_gt == 1 and r.n_ignore == 2
    # the same boxes without the ignore flag: B becomes a real person and the near-duplicate a false positive
    plain = evaluate_detections(_gt({0: [A, B], 1: [B]}), dets)
    assert plain.ar100 == pytest.approx(2 / 3) and plain.ap < 1.0
    # a false positive elsewhere still counts
    worse = evaluate_detections(gt, [*dets, _det(0, [600, 300, 650, 400], 0.99)])
    assert worse.ap50 == pytest.approx(0.5)


def test_min_height_ignores_short_ground_truth_and_drops_short_detections() -> None:
    small_gt = [400.0, 100.0, 420.0, 140.0]  # 40 px tall
    small_fp = [500.0, 300.0, 515.0, 330.0]  # 30 px tall, nothing there
    gt = _gt({0: [A, small_gt]})
    dets = [_det(0, A, 0.8), _det(0, small_fp, 0.9)]
    loose = evaluate_detections(gt, dets)
    assert loose.ar100 == pytest.approx(0.5) and loose.ap50 < 0.5
    strict = evaluate_detections(gt, dets, options=AccuracyOptions(min_height=50))
    assert (strict.ap, strict.ar100) == pytest.approx((1.0, 1.0))
    assert strict.n_gt == 1 and strict.n_ignore == 1 and strict.n_dets == 1


def test_region_of_interest_keeps_boxes_centred_inside() -> None:
    gt = _gt({0: [A, B]})
    dets = [_det(0, A, 0.9), _det(0, [700, 400, 750, 500], 0.95)]  # the false positive is outside the ROI
    roi = AccuracyOptions(roi=(0, 0, 200, 576))  # B (centre x 325) and the FP are outside
    r = evaluate_detections(gt, dets, options=roi)
    assert (r.ap, r.ar100, r.n_gt, r.n_dets) == pytest.approx((1.0, 1.0, 1, 1))
    with pytest.raises(HarnessError, match="region of interest"):
        AccuracyOptions(roi=(10, 10, 5, 20))


def test_frames_without_detections_still_count_and_unrun_frames_do_not() -> None:
    gt = _gt({0: [A], 1: [A], 2: [A]})
    dets = [_det(0, A, 0.9), _det(1, A, 0.9)]
    assert evaluate_detections(gt, dets).ar100 == pytest.approx(2 / 3)
    assert evaluate_detections(gt, dets, frames=[0, 1]).ar100 == 1.0  # the job decoded only frames 0 and 1


def test_a_person_only_model_is_scored_on_person_only() -> None:
    cats = {1: "person", 18: "dog"}
    gt = _gt({0: [A, B]}, classes={0: [1, 18]}, categories=cats)
    dets = [_det(0, A, 0.9, 1)]
    person_only = evaluate_detections(gt, dets, model_classes=COCO_PERSON_ONLY)
    assert person_only.categories == (1,) and person_only.ap == pytest.approx(1.0)
    full = evaluate_detections(gt, dets, model_classes=COCO)  # a COCO model that missed the dog
    assert full.categories == (1, 18) and full.ap == pytest.approx(0.5)
    assert {pc.name: pc.ap for pc in full.per_class} == pytest.approx({"person": 1.0, "dog": 0.0})
    with pytest.raises(HarnessError, match="share no category"):
        evaluate_detections(gt, dets, model_classes=[90])


# the real model -------------------------------------------------------------------------------------------

def _direct_pycocotools(gt_file: Path, records: list[dict], n_frames: int) -> np.ndarray:
    """pycocotools on its own: ground truth built here from gt.txt, independently of harness.data.groundtruth."""
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    rows = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    anns = []
    for frame, _id, x, y, w, h, flag, *_ in rows:
        k = int(frame) - 1
        if k >= n_frames:
            continue
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + w, 768.0), min(y + h, 576.0)
        anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": int(flag == 0)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = CocoApi()
        coco_gt.dataset = {"images": [{"id": k, "width": 768, "height": 576} for k in range(n_frames)],
                           "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([{"image_id": r["frame"], "bbox": r["bbox"], "score": r["score"],
                                    "category_id": r["category_id"]} for r in records])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


@pytest.fixture(scope="module")
def tf1_pets_records(pets_video: Path) -> list[dict]:
    """The reference SSD through the TF1 backend on the first 100 PETS frames, as results-json rows."""
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector
    from harness.core.policy import PostprocessPolicy
    from harness.data.video import open_source

    policy = PostprocessPolicy()
    det = create_detector("tf1", DetectorConfig())
    det.load()
    records: list[dict] = []
    try:
        for frame in open_source(pets_video).frames(100):
            dets, _ = det.detect(frame.image)
            records.extend(policy.record(dets).to_coco_records(frame.index))
    finally:
        det.close()
    return records


@requires_tf
def test_harness_ap_on_a_real_tf1_run_equals_pycocotools_called_directly(tf1_pets_records, pets_gt,
                                                                        tmp_path: Path) -> None:
    saved = tmp_path / "tf1.json"
    saved.write_text(json.dumps(tf1_pets_records))  # the results-folder format, read back like evaluate does
    records = json.loads(saved.read_text())
    from harness.data.groundtruth import load_ground_truth

    ours = evaluate_detections(load_ground_truth(pets_gt), records, frames=range(100),
                               model_classes=COCO_PERSON_ONLY)
    direct = _direct_pycocotools(pets_gt, records, 100)
    mine = np.array([ours.ap, ours.ap50, ours.ap75, ours.ap_small, ours.ap_medium, ours.ap_large,
                     ours.ar1, ours.ar10, ours.ar100, ours.ar_small, ours.ar_medium, ours.ar_large])
    direct = np.where(direct < 0, np.nan, direct)
    np.testing.assert_allclose(mine, direct, rtol=0, atol=1e-12, equal_nan=True)
    print(f"tf1 on PETS frames 0-99: AP {ours.ap:.3f} AP50 {ours.ap50:.3f} AR100 {ours.ar100:.3f}")
    assert 0.3 < ours.ap50 <= 1.0  # a working person detector, not an empty or shifted output


def _write_results_folder(folder: Path, jobs: dict[str, list[dict]], source: str, n_frames: int) -> None:
    """A results folder laid out as harness.results writes it (jobs.json, runs.csv, frames/, detections/)."""
    import pandas as pd

    (folder / "detections").mkdir(parents=True)
    (folder / "frames").mkdir()
    entries, runs = [], []
    for jid, records in jobs.items():
        (folder / "detections" / f"{jid}.json").write_text(json.dumps(records))
        pd.DataFrame({"job_id": jid, "frame": range(n_frames), "infer_ms": 1.0}).to_csv(
            folder / "frames" / f"{jid}.csv", index=False)
        spec = {"job_id": jid, "backend": "tf1", "source": source, "record_threshold": 0.01,
                "score_threshold": 0.3, "top_k": 100, "classes": None}
        info = {"frame_size": [768, 576], "model": {"model": "ssdlite-pedestrian", "label_space": "coco"},
                "policy": {k: spec[k] for k in ("record_threshold", "score_threshold", "top_k", "classes")}}
        entries.append({"spec": spec, "status": "ok", "cause": "", "info": info})
        runs.append({"job_id": jid, "backend": "tf1", "status": "ok", "frames": n_frames, "mean_ms": 1.0})
    (folder / "jobs.json").write_text(json.dumps({"schema_version": 1, "jobs": entries}))
    pd.DataFrame(runs).to_csv(folder / "runs.csv", index=False)


@requires_tf
def test_results_folder_evaluation_and_the_eval_command(tf1_pets_records, pets_gt, tmp_path: Path,
                                                        capsys) -> None:
    import pandas as pd

    from harness.cli import main
    from harness.data.groundtruth import load_ground_truth
    from harness.measure.metrics.evaluate import evaluate_results

    twin = [dict(r) for r in tf1_pets_records]
    _write_results_folder(tmp_path, {"tf1_a": tf1_pets_records, "tf1_b": twin}, "pets09-s2l1", 100)
    result = evaluate_results(tmp_path)  # the runner's call: ground truth from the source asset
    direct = _direct_pycocotools(pets_gt, tf1_pets_records, 100)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns[:5]) == ["job_id", "backend", "status", "frames", "mean_ms"]  # kept as they were
    np.testing.assert_allclose(runs[["ap", "ap50", "ap75", "ar100"]].to_numpy(),
                               np.round([direct[[0, 1, 2, 8]]] * 2, 6), atol=1e-9)
    acc = pd.read_csv(tmp_path / "accuracy.csv")
    assert set(acc["category"]) == {"all", "person"} and len(acc) == 4
    agree = pd.read_csv(tmp_path / "agreement.csv")
    assert len(agree) == 1 and agree.loc[0, "matched_share_a"] == 1.0 and agree.loc[0, "mean_iou"] == 1.0
    assert agree.loc[0, "only_a"] == 0 and agree.loc[0, "frames"] == 100
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    assert result.per_job["tf1_a"].categories == (1,)  # the person-only model from its manifest

    # harness eval with a min height: AP changes, the saved detections do not
    rc = main(["eval", str(tmp_path), "--gt", str(pets_gt), "--min-height", "50"])
    out = capsys.readouterr().out
    assert rc == 0 and "tf1_a" in out and "AP50" in out and "agreement" in out
    runs50 = pd.read_csv(tmp_path / "runs.csv")
    direct50 = evaluate_detections(load_ground_truth(pets_gt), tf1_pets_records, frames=range(100),
                                   model_classes=COCO_PERSON_ONLY, options=AccuracyOptions(min_height=50))
    assert runs50.loc[0, "ap50"] == pytest.approx(direct50.ap50, abs=1e-6)
    assert runs50.loc[0, "ap50"] != runs.loc[0, "ap50"]
    assert pd.read_csv(tmp_path / "accuracy.csv").loc[0, "min_height"] == 50

    # a ground truth of another video size is refused per job, with the reason
    tud = Path(str(pets_gt).replace("pets09-s2l1", "tud-campus"))
    result = evaluate_results(tmp_path, gt=str(tud), write=False)
    assert not result.per_job and "640x480" in result.notes["tf1_a"]
