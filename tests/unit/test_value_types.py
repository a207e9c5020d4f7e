"""Device and precision are parsed once where they enter and carried as values; placement and precision
share one "asked vs measured" shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.core.asked_vs_measured import AskedVsMeasured
from harness.core.detector import DetectorConfig, Placement
from harness.core.device import Device, is_accelerator
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.core.precision import Precision, PrecisionReport, parse_precisions
from harness.suites.overrides import RunOverrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, canonical, accelerator, cuda, index", [
    ("cpu", "cpu", False, False, 0), (" GPU:1 ", "gpu:1", True, True, 1), ("cuda", "cuda", True, True, 0),
    ("cuda_fp16", "cuda_fp16", True, True, 0), ("opencl", "opencl", True, False, 0), ("cpu:0", "cpu:0", False, False, 0),
])
def test_a_device_is_parsed_once_and_answers_its_questions(text: str, canonical: str, accelerator: bool,
                                                           cuda: bool, index: int) -> None:
    device = Device(text)
    assert device == canonical and str(device) == canonical and Device(device) is device
    assert (device.is_accelerator, device.is_cuda_gpu, device.index) == (accelerator, cuda, index)
    assert copy.deepcopy(device) == device and json.dumps(device) == f'"{canonical}"'


def test_an_unknown_device_or_precision_is_one_clear_error() -> None:
    with pytest.raises(HarnessError, match="unknown device 'tpu'") as exc:
        Device("tpu")
    assert "gpu:N" in exc.value.fix
    with pytest.raises(HarnessError, match="unknown precision 'fp8'"):
        Precision("fp8")


def test_is_accelerator_reads_text_that_may_not_be_a_device() -> None:
    assert is_accelerator("gpu") and not is_accelerator("") and not is_accelerator(None) and not is_accelerator("CPU")


def test_a_precision_is_canonical_and_knows_what_it_is() -> None:
    assert Precision("F16") == "fp16" and Precision("bfloat16") == "bf16" and Precision("default").is_auto
    assert Precision("int8").is_reduced and not Precision("fp32").is_reduced and not Precision("auto").is_reduced
    assert parse_precisions(["fp32,F16", "fp16"]) == ("fp32", "fp16")
    assert all(isinstance(p, Precision) for p in parse_precisions(["fp32,int8"]))


def test_every_entry_point_holds_the_parsed_values() -> None:
    """Flags (RunOverrides), a spec made in code, jobs.json (from_dict) and a backend's config."""
    flags = RunOverrides(devices=("GPU:1",), precisions=("F16",))
    assert all(type(d) is Device for d in flags.devices) and all(type(p) is Precision for p in flags.precisions)
    spec = JobSpec("tf1", "pets09-s2l1", device=" Cuda ", precision="half")
    assert type(spec.device) is Device and spec.device == "cuda" and type(spec.precision) is Precision
    again = JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and type(again.device) is Device and type(again.precision) is Precision
    config = DetectorConfig(device="gpu:2", precision="i8")
    assert config.device.index == 2 and config.precision == "int8" and type(config.precision) is Precision


def test_placement_and_precision_share_the_asked_vs_measured_shape() -> None:
    placement = Placement("gpu", "cpu", "providers ['CPUExecutionProvider']")
    precision = PrecisionReport("bf16", "fp32", "autocast off")
    for measured in (placement, precision):
        assert isinstance(measured, AskedVsMeasured) and measured.fallback
        d = measured.to_dict()
        assert d["fallback"] is True and d["requested"] == measured.requested and d["evidence"] == measured.evidence
    assert placement.effective == "cpu" and precision.effective == "fp32"
    assert not Placement("cpu", "cpu", "").fallback and not PrecisionReport("auto", "bf16", "").fallback


def test_no_module_asks_a_device_string_its_questions_again() -> None:
    """The predicates live on Device; a module that tests a device's prefix itself would drift from them."""
    found = []
    for path in sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("backends/*.py")]):
        if path.name == "device.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ('startswith(("gpu", "cuda"))', "def is_accelerator_request", "def wants_gpu", "def _is_accelerator",
                       "def parse_device"):
            if needle in text:
                found.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not found, "use harness.core.device.Device's methods instead:\n" + "\n".join(found)
