"""Fixtures and the ratio table for the stage-attribution benchmarks (run on purpose, never by CI's tests).

``pytest benchmarks --benchmark-json out.json`` loads each installed backend once, measures the harness path
and the framework-only loop (on its own ready input) alternately on the same PETS frames, and prints one table
at the end: harness vs bare median and p90 ratios, and pipeline vs model FPS from a real ``run_job``. ``--ratio-table FILE`` also
writes that table as Markdown (what docs/performance.md quotes).

The default ``python -m pytest`` never collects this folder: pyproject's ``testpaths = ["tests"]`` limits it,
and a broad ``pytest .`` deselects it too (:func:`pytest_collection_modifyitems`): the benchmarks run only
when a path inside ``benchmarks/`` is named on the command line.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HARNESS_OFFLINE", "1")

#: frames of PETS09-S2L1 each side sees per pass (decoded and resized once)
FRAMES = int(os.environ.get("HARNESS_BENCH_FRAMES", "150"))
#: backends in the order they run (torch last: its OpenMP pool lingers in the process after it ran)
BACKENDS: list[tuple[str, str | None]] = [
    ("tf1", None),
    ("tf2", None),
    ("onnxruntime", None),
    ("opencv", None),
    ("tflite", "tflite-coco-ssd-mobilenet-v1-quant"),  # TFLite can't run the reference graph (default suite too)
    ("torch", None),
]
MEDIAN_TOLERANCE = 0.03
P90_TOLERANCE = 0.05
PIPELINE_MIN_RATIO = 0.95


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the benchmarks out of any run that did not name this folder (e.g. ``pytest .``)."""
    named = any(HERE == Path(a.split("::")[0]).resolve() or HERE in Path(a.split("::")[0]).resolve().parents
                for a in config.args)
    if named:
        return
    ours = [i for i in items if HERE in Path(str(i.path)).resolve().parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [i for i in items if i not in ours]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--ratio-table", default=None, metavar="FILE",
                     help="also write the harness-vs-bare ratio table as Markdown to FILE")


@dataclass
class OverheadRow:
    backend: str
    model: str
    frames: int
    harness_p50: float
    bare_p50: float
    harness_p90: float
    bare_p90: float

    @property
    def median_ratio(self) -> float:
        return self.harness_p50 / self.bare_p50

    @property
    def p90_ratio(self) -> float:
        return self.harness_p90 / self.bare_p90


@dataclass
class PipelineRow:
    backend: str
    frames: int
    decode_ms: float
    model_ms: float
    model_fps: float
    pipeline_fps: float

    @property
    def ratio(self) -> float:
        return self.pipeline_fps / self.model_fps


@dataclass
class ScenarioRow:
    """Scenarios: what a scenario measured against what it should reach (benchmarks/test_scenarios.py)."""

    backend: str
    scenario: str
    what: str
    measured: float
    reference: float

    @property
    def ratio(self) -> float:
        return self.measured / self.reference if self.reference else float("nan")


@dataclass
class Results:
    overhead: dict[str, OverheadRow] = field(default_factory=dict)
    pipeline: dict[str, PipelineRow] = field(default_factory=dict)
    scenarios: list[ScenarioRow] = field(default_factory=list)


_RESULTS = Results()


@pytest.fixture(scope="session")
def results() -> Results:
    return _RESULTS


@pytest.fixture(scope="session")
def pets_frames() -> list[np.ndarray]:
    """The first FRAMES frames of PETS09-S2L1, decoded once (BGR, 768x576)."""
    raw = os.environ.get("HARNESS_ASSETS", "")
    if not any(p and Path(p).is_dir() for p in raw.split(os.pathsep)):
        pytest.skip("HARNESS_ASSETS is not set to the shared assets folder (e.g. ../shared/assets)")
    from harness.data.assets import resolve
    from harness.data.video import open_source

    return [f.image for f in open_source(resolve("pets09-s2l1")).frames(limit=FRAMES)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {load}"


def frameworks_in_process() -> list[str]:
    """Frameworks this process has imported: several together share (and fight over) the cores; torch's
    OpenMP pool ran 2-5x slower here beside TensorFlow's, so for numbers to quote run one backend per
    process (``-k torch``), the way ``harness run`` isolates every job."""
    import sys

    return [m for m in ("tensorflow", "torch", "onnxruntime", "cv2") if m in sys.modules]


def ratio_table(res: Results) -> str:
    lines = [
        "| backend | model | frames | harness p50 ms | bare p50 ms | median ratio | harness p90 ms | bare p90 ms "
        "| p90 ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.overhead.values():
        lines.append(f"| {r.backend} | {r.model} | {r.frames} | {r.harness_p50:.2f} | {r.bare_p50:.2f} | "
                     f"{r.median_ratio:.3f} | {r.harness_p90:.2f} | {r.bare_p90:.2f} | {r.p90_ratio:.3f} |")
    if res.pipeline:
        lines += [
            "",
            "| backend | frames | decode ms | model ms (pre+infer+post) | model FPS | pipeline FPS | pipeline / model |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for p in res.pipeline.values():
            lines.append(f"| {p.backend} | {p.frames} | {p.decode_ms:.2f} | {p.model_ms:.2f} | {p.model_fps:.1f} | "
                         f"{p.pipeline_fps:.1f} | {p.ratio:.3f} |")
    if res.scenarios:
        lines += ["", "| backend | scenario | measured | value | reference | ratio |", "|---|---|---|---:|---:|---:|"]
        for r in res.scenarios:
            lines.append(f"| {r.backend} | {r.scenario} | {r.what} | {r.measured:.3f} | {r.reference:.3f} | "
                         f"{r.ratio:.3f} |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not (_RESULTS.overhead or _RESULTS.pipeline or _RESULTS.scenarios):
        return
    table = ratio_table(_RESULTS)
    terminalreporter.section("stage attribution: harness infer vs a framework-only loop on a ready input")
    terminalreporter.write_line(f"machine: {machine()}")
    terminalreporter.write_line(f"frameworks loaded in this process: {', '.join(frameworks_in_process())}")
    for line in table.splitlines():
        terminalreporter.write_line(line)
    out = config.getoption("--ratio-table", default=None)
    if out:
        Path(out).write_text(f"machine: {machine()}\nframeworks loaded in this process: "
                             f"{', '.join(frameworks_in_process())}\n\n{table}\n", encoding="utf-8")
        terminalreporter.write_line(f"written to {out}")
