"""The files the harness makes itself, on the real reference graph and videos, against the hand-made copies
in the shared assets: the settings read from the graph, the OpenCV text graph (same outputs as the shared
one, same boxes as TF1 on 200 shared PETS frames), the pipeline.config, and seqinfo.ini byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.data.assets import get_manifest, sha256_of
from tests.helpers.agreement import agreement
from tests.conftest import requires_cv2, requires_tf

FRAMES = 200
SCORE = 0.3


@pytest.fixture(scope="module")
def graph() -> Path:
    from harness.data.cache import reference_graph

    try:
        return reference_graph()
    except Exception as exc:  # noqa: BLE001 - no graph, nothing to generate from
        pytest.skip(f"the reference graph is not installed: {exc}")


@pytest.fixture(scope="module")
def settings(graph: Path):
    pytest.importorskip("tensorflow")
    from backends._od_api_graph import read_settings

    return read_settings(graph)


@pytest.fixture(scope="module")
def text_graph(graph: Path, settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backends._opencv_text_graph import write_text_graph

    return write_text_graph(graph, tmp_path_factory.mktemp("pbtxt") / "ssdlite_person.pbtxt", settings)


def shared_file(assets_root: Path, name: str, role: str) -> Path:
    path = assets_root / get_manifest(name).files[role].path
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared assets")
    return path


@requires_tf
def test_settings_read_from_the_graph_match_the_shared_pipeline_config(settings, assets_root: Path) -> None:
    from backends._ssd_decode import decode_config_from_pipeline

    cfg = decode_config_from_pipeline(shared_file(assets_root, "ssdlite-pedestrian", "pipeline_config"))
    assert settings.input_size == (300, 300) and settings.num_classes == 1 and settings.layers == 6
    assert settings.feature_maps == ((19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))
    assert settings.anchors_per_cell == (3, 6, 6, 6, 6, 6)
    assert settings.anchor_spec == cfg.anchors  # recovered from the anchors alone, 0.3333 included
    assert settings.anchor_error < 1e-6
    assert settings.box_scales == cfg.box_scales and settings.score_converter == cfg.score_converter
    assert settings.iou_threshold == pytest.approx(cfg.iou_threshold)
    assert settings.score_threshold == pytest.approx(cfg.score_threshold)
    assert (settings.max_per_class, settings.max_total) == (cfg.max_per_class, cfg.max_total)


@requires_tf
def test_generated_pipeline_config_decodes_like_the_shared_one(settings, assets_root: Path, tmp_path: Path) -> None:
    from backends._od_api_graph import write_pipeline_config
    from backends._ssd_decode import decode_config_from_pipeline

    made = decode_config_from_pipeline(write_pipeline_config(settings, tmp_path / "pipeline.config"))
    shared = decode_config_from_pipeline(shared_file(assets_root, "ssdlite-pedestrian", "pipeline_config"))
    assert made == shared


def test_anchor_fit_refuses_anchors_that_are_no_grid() -> None:
    from backends._od_api_graph import fit_anchor_spec
    from backends._ssd_decode import SsdAnchorSpec, ssd_anchors
    from harness.core.errors import ModelError

    maps = [(3, 3), (2, 2)]
    spec = SsdAnchorSpec(num_layers=2, min_scale=0.3, max_scale=0.8, aspect_ratios=(1.0, 2.0, 0.5),
                         reduce_boxes_in_lowest_layer=False)
    anchors = ssd_anchors(spec, maps)
    fitted, error = fit_anchor_spec(anchors, maps, [4, 4])
    assert fitted == spec and error < 1e-6
    anchors[5, 2] += 0.01  # one anchor off the grid
    with pytest.raises(ModelError, match="not an ssd_anchor_generator grid"):
        fit_anchor_spec(anchors, maps, [4, 4])


@requires_tf
@requires_cv2
def test_generated_text_graph_gives_the_same_outputs_as_the_shared_one(graph: Path, text_graph: Path,
                                                                       assets_root: Path,
                                                                       pets_shared_frames: list) -> None:
    import cv2

    shared = cv2.dnn.readNetFromTensorflow(str(graph), str(shared_file(assets_root, "ssdlite-pedestrian",
                                                                      "opencv_pbtxt")))
    made = cv2.dnn.readNetFromTensorflow(str(graph), str(text_graph))
    worst, boxes = 0.0, 0
    for frame in pets_shared_frames[:FRAMES]:
        blob = cv2.dnn.blobFromImage(frame, 1.0, (300, 300), (0, 0, 0), True, False)
        shared.setInput(blob)
        made.setInput(blob)
        a, b = shared.forward(), made.forward()
        assert a.shape == b.shape == (1, 1, 100, 7)
        worst = max(worst, float(np.abs(a - b).max()))
        boxes += int((a[0, 0, :, 2] >= SCORE).sum())
    print(f"generated vs shared text graph, {FRAMES} PETS frames: max |difference| {worst}, {boxes} boxes >= {SCORE}")
    assert boxes > 500
    assert worst <= 1e-5


@requires_tf
@requires_cv2
def test_generated_text_graph_gives_opencv_the_boxes_of_tf1(text_graph: Path, pets_shared_frames: list,
                                                            tf1_on_shared_frames: list) -> None:
    from backends.opencv_dnn import OpenCVDetector
    from harness.core.detector import DetectorConfig

    det = OpenCVDetector(DetectorConfig(threads=2, options={"config": str(text_graph)}))
    det.load()
    ocv = [det.detect(f)[0].filtered(min_score=SCORE) for f in pets_shared_frames[:FRAMES]]
    tf1 = [d.filtered(min_score=SCORE) for d in tf1_on_shared_frames[:FRAMES]]
    stats = agreement(tf1, ocv, iou=0.95)
    print(f"opencv (generated text graph) vs tf1, {FRAMES} shared PETS frames, IoU 0.95, score >= {SCORE}: {stats}")
    assert stats["ref_boxes"] > 500
    assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99


@requires_cv2
@pytest.mark.parametrize("name", ["pets09-s2l1", "tud-campus"])
def test_seqinfo_made_from_the_video_is_the_motchallenge_file(name: str, assets_root: Path, tmp_path: Path) -> None:
    from harness.data.assets.seqinfo import generate

    manifest = get_manifest(name)
    out = tmp_path / "seqinfo.ini"
    generate({"video": shared_file(assets_root, name, "video")}, out, manifest.meta)
    assert out.read_text() == shared_file(assets_root, name, "seqinfo").read_text()
    assert sha256_of(out) == manifest.files["seqinfo"].sha256
