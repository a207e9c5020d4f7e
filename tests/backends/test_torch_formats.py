"""torch.export programs (``.pt2``) and models given as Python (``py:MODULE:CALLABLE``) in the torch backend:
a ``.pt2`` of the reference port agrees with the eager port box for box, a family-convention program agrees
with its eager network, ``harness convert --backend torch --format pt2`` writes one (cached by content), a
``py:`` factory defined in the tests runs, every way a factory can be wrong is one ModelError with a fix, and
a pickled whole module is still refused whatever its name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.errors import HarnessError, ModelError
from harness.core.registry import create_detector
from harness.data.video import open_source
from tests.conftest import requires_torch

pytestmark = requires_torch

SCORE = 0.3
FACTORIES = "py:tests.helpers.pymodel_factories"


def _torch():
    from backends import torch_ssdlite  # torchvision before TensorFlow (see avoid_triton_after_tensorflow)

    return torch_ssdlite.torch


@pytest.fixture(scope="module")
def frames(pets_video) -> list[np.ndarray]:
    return [f.image for f in open_source(pets_video).frames(5)]


@pytest.fixture(scope="module")
def eager_port(assets_root):
    _torch()
    det = create_detector("torch", DetectorConfig(threads=1, options={"fuse_bn": "false"}))
    det.load()
    yield det
    det.close()


def _load(model: str, **options):
    det = create_detector("torch", DetectorConfig(model=model, threads=1, options=options))
    det.load()
    return det


def _same_boxes(got, want) -> None:
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)  # pixels
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    np.testing.assert_array_equal(got.class_ids, want.class_ids)


# .pt2 -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def convert_twice(eager_port, tmp_path_factory) -> list[tuple[int, str]]:
    """``harness convert --backend torch --format pt2 --model <the port's weights>`` twice into one fresh
    artifact folder: (exit status, what it printed) of each. The first call exports the program (one
    ``torch.export`` of the port for this whole module: the .pt2 tests below load the file it made)."""
    import argparse
    import io
    from contextlib import redirect_stdout

    from harness.commands import convert

    base = tmp_path_factory.mktemp("convert")
    args = argparse.Namespace(backend=["torch"], graph=None, cache_root=str(base / "artifacts"), no_generated=True,
                              precision=None, model=str(eager_port.model_path), format="pt2")
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(base / "cache"))
        for _ in range(2):
            out = io.StringIO()
            with redirect_stdout(out):
                rc = convert.run(args)
            calls.append((rc, out.getvalue()))
    return calls


@pytest.fixture(scope="module")
def port_pt2(convert_twice) -> Path:
    """The reference port as a ``.pt2`` (TorchConverter.convert_model, through `harness convert`)."""
    rc, out = convert_twice[0]
    assert rc == 0, out
    return Path(out.strip().split()[1])


def test_pt2_of_the_reference_port_agrees_with_the_eager_port_box_for_box(eager_port, port_pt2, frames) -> None:
    det = _load(str(port_pt2))
    assert det.kind == "pt2:ssdlite" and det.input_size == (300, 300)
    assert det.label_map.space == "coco" and det.label_map.names == {1: "person"}
    for frame in frames:
        _same_boxes(det.detect(frame)[0].filtered(min_score=SCORE), eager_port.detect(frame)[0].filtered(min_score=SCORE))
    batch, _ = det.detect_batch(frames[:3])  # the program's batch axis is dynamic: one call, the same boxes
    for frame, dets in zip(frames[:3], batch):
        _same_boxes(dets.filtered(min_score=SCORE), eager_port.detect(frame)[0].filtered(min_score=SCORE))


def test_pt2_is_read_by_torch_export_load_not_torch_load(port_pt2) -> None:
    torch = _torch()
    program = torch.export.load(str(port_pt2))
    assert isinstance(program, torch.export.ExportedProgram)
    from backends.torch_formats import is_export_archive

    assert is_export_archive(port_pt2)


def test_family_convention_pt2_agrees_with_its_eager_network(tmp_path, frames) -> None:
    torch = _torch()
    from backends.torch_formats import TensorModel, save_program
    from tests.helpers.pymodel_factories import make_tiny_family

    net = make_tiny_family(0)
    model = TensorModel(net, "family", (64, 48), (127.0,) * 3, (128.0,) * 3, labels=["BACKGROUND", "person", "car"],
                        settings={"iou_threshold": 0.45, "candidate_size": 200})
    path = save_program(torch, net, tmp_path / "tiny.pt2", model)
    det = _load(str(path))
    eager = _load(f"{FACTORIES}:tiny_family")
    assert det.kind == "pt2:family" and eager.kind == "py:family" and det.input_size == (64, 48)
    assert det.label_map.space == "coco" and det.label_map.apply(np.array([1, 2])).tolist() == [1, 3]
    for frame in frames[:3]:
        got, want = det.detect(frame)[0], eager.detect(frame)[0]
        _same_boxes(got, want)
        assert set(got.class_ids.tolist()) <= {1, 3}


def test_pt2_without_the_harness_facts_is_read_by_its_output_shapes(eager_port, tmp_path, frames) -> None:
    torch = _torch()
    from backends.torch_ssdlite import model_from_checkpoint

    model = model_from_checkpoint(torch.load(eager_port.model_path, weights_only=True), "test")
    program = torch.export.export(model, (torch.zeros(1, 3, 300, 300),))
    path = tmp_path / "plain.pt2"
    torch.export.save(program, str(path))
    det = _load(str(path), mean="127.5", std="127.5")
    assert det.kind == "pt2:ssdlite" and det.input_size == (300, 300)
    _same_boxes(det.detect(frames[0])[0].filtered(min_score=SCORE),
                eager_port.detect(frames[0])[0].filtered(min_score=SCORE))


def test_convert_writes_the_pt2_once_cached_by_content(convert_twice) -> None:
    (rc, first), (rc_again, second) = convert_twice
    assert rc == 0
    assert ".pt2" in first and "made" in first
    assert rc_again == 0
    assert "cached" in second
    path = Path(second.strip().split()[1])
    assert path.suffix == ".pt2" and _load(str(path)).kind == "pt2:ssdlite"


# py: factories ------------------------------------------------------------------------------------------------

def test_py_factory_runs_the_users_module_and_agrees_with_the_port(eager_port, frames) -> None:
    det = _load(f"{FACTORIES}:reference_port", weights=str(eager_port.model_path))
    assert det.kind == "py:ssdlite" and det.input_size == (300, 300)
    assert det.label_map.apply(np.array([1])).tolist() == [1]
    for frame in frames[:3]:
        _same_boxes(det.detect(frame)[0].filtered(min_score=SCORE), eager_port.detect(frame)[0].filtered(min_score=SCORE))


def test_py_factory_gets_py_dot_options_and_may_return_a_dict(frames) -> None:
    from backends.torch_ssd import TorchDetector

    TorchDetector.validate_options({"py.seed": "1", "weights": "x"})  # factory arguments are not typos
    with pytest.raises(HarnessError, match="no option 'seeed'"):
        TorchDetector.validate_options({"seeed": "1"})
    one, two = _load(f"{FACTORIES}:tiny_family", **{"py.seed": "1"}), _load(f"{FACTORIES}:tiny_family")
    assert not np.allclose(one.detect(frames[0])[0].scores[:5], two.detect(frames[0])[0].scores[:5])
    det = _load(f"{FACTORIES}:as_dict")
    assert det.kind == "py:family" and len(det.detect(frames[0])[0]) > 0


@pytest.mark.parametrize("name,problem,fix", [
    ("raises", "the factory raised FileNotFoundError: checkpoint.pth not found", "keyword arguments"),
    ("wrong_type", "returned a TinyFamilyNet, not a PythonModel", "PythonModel(module=net"),
    ("lacks_output", "returned a dict without output", "output="),
    ("lacks_input_size", "input_size is missing", "input_size=(width, height)"),
    ("not_a_module", "module is a str, not a torch.nn.Module", "module="),
    ("unknown_output", "output is 'yolo'", "family, ssdlite, torchvision"),
    ("NOT_CALLABLE", "has no callable 'NOT_CALLABLE'", "def NOT_CALLABLE"),
    ("missing_factory", "has no callable 'missing_factory'", "def missing_factory"),
])
def test_bad_factory_is_one_model_error_with_the_fix(name, problem, fix) -> None:
    _torch()
    with pytest.raises(ModelError) as info:
        _load(f"{FACTORIES}:{name}")
    assert problem in info.value.problem and fix in info.value.fix


def test_py_reference_that_cannot_import_or_parse_is_one_model_error() -> None:
    _torch()
    with pytest.raises(ModelError, match="importing no_such_pkg.models failed") as info:
        _load("py:no_such_pkg.models:build")
    assert "importable" in info.value.fix
    with pytest.raises(ModelError, match="py:MODULE:CALLABLE"):
        _load("py:just_a_module")


# everything else stays weights-only -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["whole_model.pt", "whole_model.pt2", "whole_model.pth"])
def test_pickled_whole_module_is_still_refused(tmp_path, name) -> None:
    torch = _torch()
    from tests.helpers.pymodel_factories import make_tiny_family

    path = tmp_path / name
    torch.save(make_tiny_family(0), path)  # a pickled module: only a py: factory may run code
    with pytest.raises(ModelError) as info:
        _load(str(path))
    assert "not a PyTorch weights file" in info.value.problem and "state_dict" in info.value.fix


def test_pt2_of_a_family_checkpoint_agrees_with_the_eager_family_model(assets_root, tmp_path, frames) -> None:
    from backends.torch_convert import TorchConverter

    source = assets_root / "models" / "pytorch-ssd-family" / "mb2-ssd-lite" / "mb2-ssd-lite-random-bncal-voc.pth"
    path = TorchConverter.convert_model(source, tmp_path)
    program, eager = _load(str(path)), _load(str(source))
    assert program.kind == "pt2:family" and eager.kind == "family:mb2-ssd-lite"
    assert program.input_size == eager.input_size == (300, 300)
    assert program.label_map == eager.label_map and program.label_map.space == "coco"
    for frame in frames[:2]:
        _same_boxes(program.detect(frame)[0].filtered(min_score=0.05), eager.detect(frame)[0].filtered(min_score=0.05))
