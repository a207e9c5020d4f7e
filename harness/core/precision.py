"""Precision as a measured axis: the words a job can ask for, and what a backend reports it really ran at.

A precision flag is a request, like a device: frameworks ignore some (TFLite's fp16 weights are expanded to
fp32 on a CPU), change others (OpenVINO's CPU plugin compiles bf16 as f32 where the CPU has no bf16
instructions) and pick one nobody asked for (the same plugin infers in bf16 by default on CPUs with AMX).
So a job records the **effective** precision, read from the framework after load (DESIGN.md: "precision is
measured like placement"), and a request the framework did not honour is a fallback, shown as loudly as a
GPU request that ended on the CPU (``--strict-precision`` makes it a failure).

Vocabulary (``--precision``; aliases in :data:`ALIASES`):

* not given: the harness asks every framework for fp32 where it has a say and runs a model file as it is
  stored; the effective precision is still read and recorded, but nothing was asked, so nothing falls back;
* ``fp32``, ``fp16``, ``bf16``, ``int8``: that precision, made by the harness where it has to be (int8
  variants calibrated on frames that are never scored, see :mod:`harness.data.calibration`), asked of the
  framework otherwise; anything else that runs is a precision fallback;
* ``auto``: the framework's own default, recorded as what it picked (never a fallback).

Nothing here imports a framework: backends read their framework and hand over counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.core.asked_vs_measured import AskedVsMeasured
from harness.core.errors import HarnessError

#: precisions a job can ask for, from the widest; ``auto`` = whatever the framework picks
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
AUTO = "auto"
VALUES: tuple[str, ...] = (*PRECISIONS, AUTO)
#: what an effective precision can read besides :data:`PRECISIONS`: nothing could be read
UNKNOWN = "unknown"

ALIASES: dict[str, str] = {
    "fp32": "fp32", "f32": "fp32", "float32": "fp32", "float": "fp32",
    "fp16": "fp16", "f16": "fp16", "float16": "fp16", "half": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
    "int8": "int8", "i8": "int8", "u8": "int8", "uint8": "int8", "qint8": "int8", "quint8": "int8",
    "auto": "auto", "default": "auto",
}

#: element type names as frameworks spell them -> precision (ONNX, OpenVINO, TFLite/numpy, torch, TF)
ELEMENT_TYPES: dict[str, str] = {
    "float32": "fp32", "float": "fp32", "f32": "fp32", "dt_float": "fp32", "torch.float32": "fp32",
    "float16": "fp16", "f16": "fp16", "half": "fp16", "dt_half": "fp16", "torch.float16": "fp16",
    "bfloat16": "bf16", "bf16": "bf16", "dt_bfloat16": "bf16", "torch.bfloat16": "bf16",
    "int8": "int8", "uint8": "int8", "i8": "int8", "u8": "int8", "dt_qint8": "int8", "dt_quint8": "int8",
    "torch.qint8": "int8", "torch.quint8": "int8",
}

#: MLPerf's rule for reduced precision: at least 99 % of the fp32 model's accuracy
DEFAULT_ACCURACY_FLOOR = 0.99


class PrecisionFallback(HarnessError):
    """A precision was asked for and the framework ran another (raised only under --strict-precision)."""


class Precision(str):
    """A precision a job asks for, checked and in its canonical word (``F16`` -> ``fp16``): a ``str``, so it
    reads, compares and travels in JSON as that word. Parsed once where it enters (flags, suites, jobs.json)."""

    __slots__ = ()

    def __new__(cls, text: Any) -> "Precision":
        if isinstance(text, Precision):
            return text
        word = str(text).strip().lower()
        if word not in ALIASES:
            raise HarnessError(
                f"unknown precision {text!r}",
                f"use one of: {', '.join(VALUES)} (auto = the framework's own default, recorded as what it "
                "picked); several are given as --precision fp32,int8",
            )
        return super().__new__(cls, ALIASES[word])

    @property
    def is_auto(self) -> bool:
        """The framework's own choice: never a fallback, whatever it picks."""
        return self == AUTO

    @property
    def is_reduced(self) -> bool:
        """Below fp32 (fp16, bf16, int8): a variant held against fp32's accuracy."""
        return self in PRECISIONS and self != "fp32"


def parse_precision(text: Any) -> Precision:
    """The canonical word for a precision, or one error listing the valid ones."""
    return Precision(text)


def parse_precisions(values: Iterable[str]) -> tuple[Precision, ...]:
    """``["fp32,bf16", "int8"]`` (repeated and comma-separated flags) as distinct precisions, in order."""
    out: list[Precision] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                raise HarnessError(f"--precision {value!r}: an empty precision (a doubled or trailing comma?)",
                                   f"write e.g. --precision fp32,int8 (one of: {', '.join(VALUES)})")
            word = Precision(part)
            if word not in out:
                out.append(word)
    return tuple(out)


def is_precision(value: Any) -> bool:
    """The settings check: a known precision word (what a suite may write)."""
    return isinstance(value, Precision) or (isinstance(value, str) and value.strip().lower() in ALIASES)


def precision_of_type(name: Any) -> str | None:
    """The precision an element type name stands for (``"tensor(float16)"``, ``"<Type: 'bfloat16'>"``,
    ``torch.bfloat16``, ``numpy.int8``), None for types that are not compute types (int32 indices, bool)."""
    text = str(name).strip().lower()
    for prefix, suffix in (("tensor(", ")"), ("<type: '", "'>"), ("<class 'numpy.", "'>")):
        if text.startswith(prefix) and text.endswith(suffix):
            text = text[len(prefix):-len(suffix)]
    return ELEMENT_TYPES.get(text)


def dominant(weights: Mapping[str, float]) -> tuple[str, dict[str, float]]:
    """The precision carrying most of the compute, and each precision's share of it.

    ``weights`` maps a precision to the work done at it (MACs where the backend can count them, else the
    number of compute ops). Ties go to the narrower precision: the claim a speed-up rests on.
    """
    total = float(sum(v for v in weights.values() if v and v > 0))
    if total <= 0:
        return UNKNOWN, {}
    shares = {p: float(v) / total for p, v in weights.items() if v and v > 0}
    order = {p: i for i, p in enumerate(PRECISIONS)}
    best = max(shares, key=lambda p: (round(shares[p], 9), order.get(p, -1)))
    return best, dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def shares_text(shares: Mapping[str, float], what: str = "of the compute ops") -> str:
    """``int8 86 %, fp32 14 % of the compute ops``."""
    if not shares:
        return f"no {what.removeprefix('of the ')} found"
    return ", ".join(f"{p} {100 * s:.0f} %" for p, s in shares.items()) + f" {what}"


@dataclass
class PrecisionReport(AskedVsMeasured):
    """The precision a job ran at, read from the framework after load, with the evidence that shows it.

    ``requested`` is what the job asked (None: not asked); ``effective`` is one of :data:`PRECISIONS` or
    :data:`UNKNOWN`; ``shares`` splits the compute ops (or MACs) by precision where the backend could count.
    """

    requested: str | None
    effective: str
    evidence: str
    shares: dict[str, float] = field(default_factory=dict)
    weights_precision: str | None = None  # how the weights are stored, when it differs from the compute

    @property
    def fallback(self) -> bool:
        """A precision was asked for (not ``auto``) and the framework ran another one."""
        return (self.requested not in (None, AUTO) and self.effective != UNKNOWN
                and self.effective != self.requested)

    def cause(self) -> str:
        """The line the results carry for a fallback."""
        return (f"precision fallback: requested {self.requested}, ran {self.effective}: {self.evidence}")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["shares"] = {k: round(v, 4) for k, v in self.shares.items()}
        return d


def unknown_report(requested: str | None, backend: str) -> PrecisionReport:
    """What a backend that reads nothing reports: the precision is not known (never a fallback)."""
    return PrecisionReport(requested, UNKNOWN, f"backend {backend} reads no effective precision from its framework")


# the CPU: which reduced precisions it can run natively ------------------------------------------------

#: /proc/cpuinfo flags that decide reduced-precision speed on x86
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "avx512_fp16", "amx_fp16")


def cpu_flags(cpuinfo: Path | str = "/proc/cpuinfo") -> set[str]:
    """The precision-relevant instruction-set flags of this CPU (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return {f for f in line.split(":", 1)[1].split() if f in CPU_FLAGS}
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """Native bf16 arithmetic (AVX-512 BF16 or AMX-BF16): what makes frameworks choose or honour bf16."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_has_int8_dot(flags: set[str] | None = None) -> bool:
    """An 8-bit dot-product instruction (VNNI or AMX-INT8): where int8 convolutions usually pay off."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


# the accuracy floor -----------------------------------------------------------------------------------

def check_accuracy_floor(value: Any) -> float:
    """The floor is a share of fp32's AP50 in (0, 1]: 0.99 keeps variants within 1 % of fp32."""
    try:
        floor = float(value)
    except (TypeError, ValueError):
        floor = math.nan
    if not 0.0 < floor <= 1.0:
        raise HarnessError(f"--accuracy-floor must be within (0, 1], got {value!r}",
                           f"give a share of the fp32 job's AP50, e.g. {DEFAULT_ACCURACY_FLOOR} (MLPerf's 99 %)")
    return floor
