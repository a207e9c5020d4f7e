"""Each backend's converter apart from its runtime: the registry finds it by the backend's name, ``harness
convert`` and the assets preflight ask it without importing the runtime's module (or any framework), the
runtime classes carry no conversion hook, and every optional hook is declared on a base class."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.converter import Converter
from harness.core.detector import Detector
from harness.core.errors import HarnessError
from harness.core.registry import CONVERTERS, converter_class

ROOT = Path(__file__).resolve().parents[2]
#: every runtime class of this project, by module:Class (openvino and v2 too where an older editable install's
#: entry points do not list them)
RUNTIMES = {
    "tf1": "backends.tf1:TF1Detector", "tf2": "backends.tf2:TF2Detector", "opencv": "backends.opencv_dnn:OpenCVDetector",
    "torch": "backends.torch_ssd:TorchDetector", "onnxruntime": "backends.onnxruntime_ort:ONNXRuntimeDetector",
    "openvino": "backends.openvino_ov:OpenVINODetector", "tflite": "backends.tflite:TFLiteDetector",
    "v2": "backends.v2_client:V2Detector",
}
#: the backends whose runtime loads a form of the reference it converts itself
CONVERTING = ("tf2", "torch", "onnxruntime", "openvino", "tflite")
#: the names runtime classes had for what their converter now declares
MOVED = {"conversion_precisions", "conversion_distributions", "conversion_revision", "convert_reference",
         "convert_model", "conversion_options", "model_formats", "converts_reference_model", "default_model",
         "default_model_for"}
#: what a runtime class may not define: the converter's hooks (``distributions`` is both's: a runtime's are the
#: versions its results report, a converter's those that decide its artifacts), and their old runtime names
CONVERSION_HOOKS = {n for n in vars(Converter) if not n.startswith("_")} - set(vars(Detector)) | MOVED
FRAMEWORKS = ("tensorflow", "torch", "cv2", "onnxruntime", "tf2onnx", "openvino", "nncf", "onnx")


def _runtime(name: str) -> type[Detector]:
    from harness.core.registry import backend_class

    return backend_class(RUNTIMES[name])


@pytest.mark.parametrize("name", CONVERTING)
def test_every_converting_backend_has_a_registered_converter_its_runtime_names(name: str) -> None:
    converter = converter_class(name)
    assert converter is not None and issubclass(converter, Converter)
    assert converter.backend == name and converter.distributions
    assert _runtime(name).converter is converter  # the runtime loads through the converter the registry lists
    assert converter.makes_reference()


def test_the_registry_lists_no_converter_without_a_runtime_that_uses_it() -> None:
    for name in CONVERTERS:
        assert name in RUNTIMES and _runtime(name).converter is converter_class(name), name
    for name in set(RUNTIMES) - set(CONVERTERS):
        assert _runtime(name).converter is None, name
        assert converter_class(name) is None, name  # a known backend that converts nothing


def test_an_unknown_backend_has_no_converter_but_one_clear_error() -> None:
    with pytest.raises(HarnessError, match="unknown backend 'tf3'"):
        converter_class("tf3")


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_runtime_classes_carry_no_conversion_hook(name: str) -> None:
    cls = _runtime(name)
    own = {attr for klass in cls.__mro__ if klass is not Detector and issubclass(klass, Detector) for attr in vars(klass)}
    assert not own & CONVERSION_HOOKS, f"{cls.__name__} defines {sorted(own & CONVERSION_HOOKS)}: a converter's"
    assert not MOVED & set(vars(Detector))


@pytest.mark.parametrize("name", CONVERTING)
def test_cache_keys_are_the_ones_made_before_the_converters_were_split_out(name: str) -> None:
    """Artifacts are keyed by the runtime class's dotted name, as they were when the runtime converted: the
    caches already filled (and those other environments read, cache.converted_elsewhere) stay valid."""
    from harness.data.cache import conversion_params

    runtime = _runtime(name)
    params = conversion_params(converter_class(name))  # type: ignore[arg-type]
    assert params["backend"] == name and params["class"] == f"{runtime.__module__}.{runtime.__qualname__}"


NO_RUNTIME_SCRIPT = r"""
import sys
from harness.data.assets.preflight import _reference_model
from harness.commands import convert
from harness.data.models import DEFAULT_MODEL
from harness.core.registry import CONVERTERS, converter_class

graph, root = sys.argv[1], sys.argv[2]
listing = {n: (converter_class(n).model_formats, converter_class(n).precisions) for n in CONVERTERS}
assert listing["torch"][0] == ("pt2",) and listing["onnxruntime"] == (("onnx",), ("int8",)), listing
assert listing["tflite"][1] == ("fp32", "fp16", "int8"), listing
assert _reference_model("tflite") == "tflite-coco-ssd-mobilenet-v1-quant"
assert _reference_model("tflite", "int8") == DEFAULT_MODEL
assert _reference_model("onnxruntime", "int8") == DEFAULT_MODEL and _reference_model("tf1") == DEFAULT_MODEL

def cli(*argv):
    import argparse
    parser = argparse.ArgumentParser()
    convert.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", "--graph", graph, "--cache-root", root, *argv])
    return args.func(args)

# formats: onnxruntime makes its onnx files from a checkpoint only; tflite and tf1 write no other format
assert cli("--backend", "onnxruntime", "--backend", "tflite", "--backend", "tf1", "--format", "onnx") == 1
# the reference: tf1 and opencv convert nothing, and make no precision variant
assert cli("--backend", "tf1", "--backend", "opencv", "--precision", "int8", "--no-generated") == 0
loaded = sorted(m for m in sys.modules if m in RUNTIME or m.split(".")[0] in FRAMEWORKS)
print("LOADED", ",".join(loaded))
"""


def test_convert_listing_and_preflight_default_model_import_no_runtime_module(tmp_path: Path) -> None:
    graph = tmp_path / "frozen_inference_graph.pb"
    graph.write_bytes(b"not read: nothing here converts")
    runtime = sorted(target.partition(":")[0] for target in RUNTIMES.values())
    code = f"RUNTIME = {runtime!r}\nFRAMEWORKS = {FRAMEWORKS!r}\n" + NO_RUNTIME_SCRIPT
    out = subprocess.run([sys.executable, "-c", code, str(graph), str(tmp_path / "artifacts")], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "onnxruntime  FAILED: its onnx files are made from a checkpoint" in out.stdout, out.stdout
    assert "tflite       nothing to convert" in out.stdout and "tf1          nothing to convert" in out.stdout
    assert "tf1 int8          no variant made" in out.stdout and "opencv       nothing to convert" in out.stdout
    loaded = out.stdout.split("LOADED", 1)[1].strip()
    assert loaded == "", f"harness convert / the preflight imported {loaded}"
    assert not list((tmp_path / "artifacts").rglob("artifact.json"))  # nothing was converted


#: a declared attribute's name that is also an ordinary method of other objects (a file's close)
GENERIC = {"close"}


def test_no_optional_hook_is_probed_with_getattr() -> None:
    """Every hook of a runtime or a converter is declared on its base class with a default, so no caller asks
    ``getattr(cls, "hook", None)`` (a misspelt hook would be silently skipped that way)."""
    hooks = {n for n in set(dir(Detector)) | set(dir(Converter)) if not n.startswith("_")} - GENERIC
    probes = []
    for folder in ("harness", "backends"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                        and isinstance(node.args[1], ast.Constant) and node.args[1].value in hooks):
                    probes.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert probes == []
