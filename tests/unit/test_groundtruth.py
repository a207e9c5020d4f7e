"""Ground-truth loaders: MOTChallenge gt.txt, COCO json for image folders, Milan/PETS XML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import HarnessError, SourceError
from harness.data.groundtruth import coco_id_for_name, load_coco, load_ground_truth, load_milan_xml, load_mot


def _write_mot(folder: Path, rows: list[str], *, width: int = 768, height: int = 576, length: int = 5) -> Path:
    (folder / "gt").mkdir(parents=True)
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname=x\nseqLength={length}\nimWidth={width}\nimHeight={height}\n", encoding="utf-8")
    gt = folder / "gt" / "gt.txt"
    gt.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return gt


def test_mot_frame_k_plus_1_is_index_k_flag_0_is_ignore_and_boxes_are_clipped(tmp_path: Path) -> None:
    gt_file = _write_mot(tmp_path, [
        "1,1,10,20,30,40,1,-1,-1,-1",
        "1,2,750,500,40,100,1,-1,-1,-1",  # runs past the right and bottom edges of 768x576
        "3,3,-5,100,20,50,0,-1,-1,-1",  # an ignore region, past the left edge
    ])
    gt = load_mot(gt_file)
    assert gt.frame_size == (768, 576)  # from seqinfo.ini
    assert gt.annotated_frames == [0, 1, 2, 3, 4]  # seqLength 5: frames without rows are annotated empty
    np.testing.assert_allclose(gt.frames[0].boxes, [[10, 20, 40, 60], [750, 500, 768, 576]])
    assert gt.frames[0].ignore.tolist() == [False, False]
    assert len(gt.frames[1]) == 0 and len(gt.frames[4]) == 0
    np.testing.assert_allclose(gt.frames[2].boxes, [[0, 100, 15, 150]])
    assert gt.frames[2].ignore.tolist() == [True]
    assert gt.frames[0].class_ids.tolist() == [1, 1]
    assert gt.categories == {1: "person"}


def test_mot16_class_column_makes_person_like_classes_ignore_and_drops_vehicles(tmp_path: Path) -> None:
    gt_file = _write_mot(tmp_path, [
        "1,1,10,20,30,40,1,1,1.0",  # pedestrian
        "1,2,100,20,30,40,1,7,1.0",  # static person: ignore
        "1,3,200,20,30,40,0,3,1.0",  # car: not a person at all
    ])
    gt = load_mot(gt_file)
    assert gt.frames[0].ignore.tolist() == [False, True]
    assert len(gt.frames[0]) == 2


def test_milan_xml_frame_number_is_the_decoded_index_and_boxes_are_centre_based(tmp_path: Path) -> None:
    xml = tmp_path / "ann.xml"
    xml.write_text(
        '<?xml version="1.0"?><dataset><frame number="0"><objectlist>'
        '<object id="1"><box h="100" w="40" xc="100" yc="200"/></object></objectlist></frame>'
        '<frame number="2"><objectlist/></frame></dataset>', encoding="utf-8")
    gt = load_milan_xml(xml, frame_size=(768, 576))
    assert gt.annotated_frames == [0, 1, 2]
    np.testing.assert_allclose(gt.frames[0].boxes, [[80, 150, 120, 250]])
    assert load_ground_truth(xml, frame_size=(768, 576)).format == "milan"


def test_coco_json_frames_follow_the_sorted_file_names_of_the_image_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("b.jpg", "a.jpg", "c.jpg"):
        (images / name).write_bytes(b"")  # the order is by name; the loader never decodes them
    data = {
        "images": [{"id": 7, "file_name": "b.jpg", "width": 100, "height": 50},
                   {"id": 3, "file_name": "a.jpg", "width": 100, "height": 50},
                   {"id": 9, "file_name": "missing.jpg", "width": 10, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [10, 10, 20, 20], "iscrowd": 0, "area": 300.0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [90, 40, 30, 30], "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "tvmonitor"}, {"id": 1, "name": "person"}],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data), encoding="utf-8")
    gt = load_coco(ann, image_dir=images)
    # a.jpg -> 0, b.jpg -> 1; c.jpg has no entry (not annotated), missing.jpg is not in the folder
    assert gt.annotated_frames == [0, 1]
    assert gt.file_names == {0: "a.jpg", 1: "b.jpg"}
    assert len(gt.frames[0]) == 0
    f = gt.frames[1]
    assert f.class_ids.tolist() == [72, 1]  # VOC "tvmonitor" is COCO tv (72)
    assert f.ignore.tolist() == [False, True]
    np.testing.assert_allclose(f.boxes[1], [90, 40, 100, 50])  # clipped to the 100x50 image
    assert f.box_areas()[0] == 300.0  # COCO's own area is kept for the area ranges
    assert gt.size_of(1) == (100, 50)
    assert gt.categories == {72: "tv", 1: "person"}


def test_class_names_map_to_coco_ids() -> None:
    assert coco_id_for_name("person") == 1
    assert coco_id_for_name("Aeroplane") == 5
    assert coco_id_for_name("diningtable") == 67
    assert coco_id_for_name("unicorn") is None


def test_unreadable_ground_truth_gets_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "gt.csv"
    bad.write_text("x", encoding="utf-8")
    with pytest.raises(SourceError, match="ground-truth format"):
        load_ground_truth(bad)
    txt = tmp_path / "gt.txt"
    txt.write_text("1,2,3\n", encoding="utf-8")
    with pytest.raises(SourceError, match="at least 6"):
        load_mot(txt)
    with pytest.raises(HarnessError, match="unknown asset"):
        load_ground_truth("no-such-asset")


# the real data ------------------------------------------------------------------------------------------

def test_pets_ground_truth_from_the_asset_matches_the_readme(assets_root: Path) -> None:
    gt = load_ground_truth("pets09-s2l1")
    assert gt.format == "mot" and gt.frame_size == (768, 576)
    assert len(gt.frames) == 795 and gt.n_boxes == 4650 and gt.n_ignore == 174
    ignored = [k for k, f in gt.frames.items() if f.ignore.any()]
    assert min(ignored) == 146 and max(ignored) == 243  # gt frames 147-244
    for f in gt.frames.values():  # clipped to the frame
        assert (f.boxes[:, [0, 1]] >= 0).all() and (f.boxes[:, 2] <= 768).all() and (f.boxes[:, 3] <= 576).all()


def test_pets_milan_xml_and_mot_gt_describe_the_same_people(assets_root: Path) -> None:
    mot = load_ground_truth("pets09-s2l1")
    xml = load_ground_truth(assets_root / "videos/pets09-s2l1/annotations_milan/PETS2009-S2L1.xml")
    assert xml.frame_size == (768, 576) and len(xml.frames) == 795 and xml.n_boxes == mot.n_boxes
    for k in (0, 100, 400, 794):
        a, b = mot.frames[k].boxes, xml.frames[k].boxes
        assert len(a) == len(b)
        # MOT rounded the left/top to whole pixels: each MOT box lies within a pixel of an XML box
        dist = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2).min(axis=1)
        assert (dist < 1.0).all(), (k, dist)


def test_tud_campus_and_coco128_load_from_their_folders(assets_root: Path) -> None:
    tud = load_ground_truth(assets_root / "videos/tud-campus/TUD-Campus.mp4")  # gt/gt.txt beside the video
    assert tud.frame_size == (640, 480) and len(tud.frames) == 71 and tud.n_boxes == 359
    coco = load_ground_truth(assets_root / "images/coco128/images")  # ../annotations/*.json
    assert len(coco.frames) == 128 and coco.n_boxes == 939 and coco.n_ignore == 10
    assert len(coco.category_ids_present()) == 71
    assert coco.file_names[0] == sorted(p.name for p in (assets_root / "images/coco128/images").iterdir())[0]
