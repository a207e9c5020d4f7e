"""The command line's side of scenarios: ``harness run`` flags into settings, and what a finished job prints.

Kept here so that :mod:`harness.commands.run` holds one line per hook and the scenario flags have one home.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from harness.core.scenario import SCENARIOS, parse_duration, parse_list

__all__ = ["SCENARIOS", "scenario_line", "scenario_overrides", "scenario_words"]


def scenario_overrides(args: Any) -> dict[str, Any]:
    """The scenario flags as :class:`~harness.suites.overrides.RunOverrides` keywords (None = not given)."""
    def listed(flag: str, value: str | None, kind: type) -> tuple | None:
        return None if value is None else parse_list(value, kind, flag)

    bound = getattr(args, "latency_bound", None)
    duration = getattr(args, "min_duration", None)
    return {
        "scenario": getattr(args, "scenario", None),
        "batch": listed("--batch", getattr(args, "batch", None), int),
        "streams": listed("--streams", getattr(args, "streams", None), int),
        "instances": getattr(args, "instances", None),
        "fps": listed("--fps", getattr(args, "fps", None), float),
        "queue": getattr(args, "queue", None),
        "qps": listed("--qps", getattr(args, "qps", None), float),
        "latency_bound_ms": None if bound is None else parse_duration(bound, default_unit="ms",
                                                                      flag="--latency-bound") * 1000.0,
        "min_duration_s": None if duration is None else parse_duration(duration, default_unit="s",
                                                                       flag="--min-duration"),
        "min_frames": getattr(args, "min_frames", None),
        "loadgen": getattr(args, "loadgen", None),
        "seed": getattr(args, "seed", None),
    }


def scenario_words(job: Any) -> dict[str, Any]:
    """``harness run --list``'s words for a job's scenario (nothing for a plain single-stream job)."""
    sc = job.scenario
    if sc.is_default:
        return {}
    words: dict[str, Any] = {"scenario": sc.kind}
    if sc.level():
        words["level"] = f"'{sc.level()}'"
    if sc.latency_bound_ms:
        words["latency_bound"] = f"{sc.latency_bound_ms:g}ms"
    if sc.min_duration_s:
        words["min_duration"] = f"{sc.min_duration_s:g}s"
    if sc.min_frames:
        words["min_frames"] = sc.min_frames
    if sc.loadgen:
        words["loadgen"] = "yes"
    if sc.seed is not None:
        words["seed"] = sc.seed
    return words


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def scenario_line(row: Mapping[str, Any]) -> str:
    """What a finished job's line adds: the scenario's headline figures, then INVALID with the reasons."""
    kind = row.get("scenario") or "single-stream"
    text = ""
    if kind == "offline":
        text = f"; offline batch {row.get('batch')}: {_num(row.get('model_fps')):.1f} frames/s"
    elif kind == "multi-stream":
        text = (f"; {row.get('streams')} stream(s): {_num(row.get('aggregate_fps')):.1f} FPS in all, "
                f"{_num(row.get('stream_fps_min')):.1f} per stream (slowest)")
    elif kind == "realtime":
        text = (f"; realtime {_num(row.get('release_fps')):g} fps: {row.get('dropped')} of {row.get('released')} "
                f"frames dropped, {row.get('late')} late, end-to-end p99 {_num(row.get('e2e_p99_ms')):.1f} ms")
    elif kind == "server":
        bound = _num(row.get("latency_bound_ms"))
        text = f"; server {_num(row.get('qps')):g} qps: end-to-end p99 {_num(row.get('e2e_p99_ms')):.1f} ms"
        if not math.isnan(bound):
            text += f" ({'within' if row.get('bound_met') else 'OVER'} the {bound:g} ms bound)"
    if row.get("lg_result"):  # --loadgen: LoadGen's own verdict, beside the harness's validity
        text += f"; LoadGen {row.get('lg_result')}"
        if row.get("lg_result") != "VALID":
            text += f" ({row.get('lg_invalid_reason') or row.get('lg_early_stopping') or 'see its summary'})"
    if row.get("valid") is False:
        text += f"\n    INVALID: {row.get('validity_notes', '')}"
    return text
