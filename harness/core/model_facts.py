"""Model facts per job: parameters, GFLOPs per frame, file size and input size, as runs.csv columns.

Each backend counts from the graph it loaded (:meth:`harness.core.detector.Detector.model_cost`); this module
only holds the result and turns it into columns, so the columns mean the same for every backend.
Convention: one multiply-accumulate (MAC) is two FLOPs, and only the convolutions and matrix products are
counted (what dominates an SSD; activations, pooling and NMS add well under 1 %). Papers on MobileNets
quote MACs ("MAdds"): ``gflops / 2`` is that figure.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: runs.csv columns this module fills (in this order)
FACT_COLUMNS = ("params_m", "gflops", "model_mb", "input_size")


@dataclass(frozen=True)
class ModelCost:
    """What the graph holds: ``params`` weights, ``macs`` multiply-accumulates for one frame, counted by
    ``source`` (which graph and which counter, for the results)."""

    params: int
    macs: int | None  # None: the backend could not count them
    source: str

    @property
    def gflops(self) -> float | None:
        return None if self.macs is None else 2.0 * self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        gflops = self.gflops
        return {**asdict(self), "gflops": None if gflops is None else round(gflops, 4)}


def size_mb(path: Path | str | None) -> float | None:
    """A file's size, or a folder's (a SavedModel, an IR's .xml + .bin) summed, in MB (10^6 bytes)."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        total = p.stat().st_size
        if p.suffix == ".xml" and p.with_suffix(".bin").is_file():  # an OpenVINO IR is its .xml and .bin
            total += p.with_suffix(".bin").stat().st_size
        return round(total / 1e6, 3)
    if p.is_dir():
        total = sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not os.path.islink(f))
        return round(total / 1e6, 3)
    return None


def model_facts(cost: ModelCost | None, model_file: Path | str | None,
                input_size: tuple[int, int] | list[int] | None) -> dict[str, Any]:
    """The facts as jobs.json keeps them (``info.model.facts``)."""
    return {
        "cost": cost.to_dict() if cost is not None else None,
        "model_file": str(model_file) if model_file else None,
        "model_mb": size_mb(model_file),
        "input_size": list(input_size) if input_size else None,
    }


def fact_columns(facts: dict[str, Any] | None) -> dict[str, Any]:
    """The runs.csv cells of :data:`FACT_COLUMNS` (empty where not known)."""
    facts = facts or {}
    cost = facts.get("cost") or {}
    size = facts.get("input_size")
    return {
        "params_m": round(cost["params"] / 1e6, 4) if cost.get("params") is not None else None,
        "gflops": round(float(cost["gflops"]), 4) if cost.get("gflops") is not None else None,
        "model_mb": facts.get("model_mb"),
        "input_size": f"{size[0]}x{size[1]}" if size else None,
    }
