"""The precisions axis: ``precisions = ["fp32", "int8"]`` in [matrix] makes each job once per precision.

An entry is a word or a table ``{ name = "int8", options = { calibration = "tud-campus" } }`` with job
settings of its own; the command line's ``--precision`` replaces the axis.
"""

from __future__ import annotations

from typing import Any

from harness.core.settings import SETTINGS, problem_with
from harness.suites.overrides import RunOverrides
from harness.suites.keys import check_settings
from harness.suites.layers import strip_entry
from harness.suites.source import SuiteSource

PRECISION_AXIS = "precisions"


def precision_layers(ctx: SuiteSource, matrix: dict[str, Any], over: RunOverrides) -> list[dict[str, Any]]:
    """The matrix's precisions as setting layers (``{"precision": "int8", ...}``); ``[{}]`` when the suite
    names none (each job then asks for no precision); the command line's ``--precision`` replaces them."""
    if over.precisions:
        return [{"precision": p} for p in over.precisions]
    raw = matrix.get(PRECISION_AXIS)
    if raw is None:
        return [{}]
    keypath: list[str | int] = ["matrix", PRECISION_AXIS]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ctx.error(keypath, f"expected a list of precisions, got {raw!r}",
                        f'write e.g. precisions = ["fp32", "int8"]: {SETTINGS["precision"].expected}')
    layers = []
    for i, item in enumerate(raw):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ctx.error(keypath + [i], f"expected a precision or a {{ name = ... }} table, got {item!r}",
                            'write e.g. "int8" or { name = "int8", options = { calibration = "tud-campus" } }')
        problem = problem_with("precision", entry["name"])
        if problem:
            raise ctx.error(keypath + [i], f"{problem}, got {entry['name']!r}", "see docs/precision.md",
                            value=entry["name"])
        check_settings(ctx, entry, keypath + [i], ["name"])
        layers.append({**strip_entry(entry), "precision": entry["name"]})
    return layers
