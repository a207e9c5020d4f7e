"""The report's scenario sections: one per scenario the folder ran (single-stream is the summary table itself),
each with the answer of every sweep, the scenario's own columns per level, and its plot.

Plots: offline, throughput against batch size; multi-stream, the slowest stream's FPS and the aggregate
against the number of streams, with the target rate; realtime, the share of frames dropped and the
end-to-end p99 against the release rate; server, the end-to-end p99 against the QPS with the latency bound.
One line per sweep; levels from rows marked invalid are drawn hollow (their numbers describe a busy machine).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.report.html import PlotEntry
from harness.report.load import Results
from harness.report.plots import PALETTE, _plt, save_figure
from harness.report.labels import DEFAULT_ENV, where_label
from harness.measure.sweeps import Sweep, answer, find_sweeps, sweep_precision

TITLES = {"offline": "Offline: throughput per batch size", "multi-stream": "Multi-stream: FPS per stream",
          "realtime": "Realtime: frames released at a camera's rate", "server": "Server: latency under Poisson load"}
#: each scenario's own runs.csv columns, as its section's table shows them
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "offline": [("batch", "batch"), ("frames", "frames"), ("batches", "batches"), ("p50_ms", "p50 ms / batch"),
                ("p99_ms", "p99 ms / batch"), ("model_fps", "frames/s (model)"), ("pipeline_fps", "frames/s (wall)")],
    "multi-stream": [("streams", "streams"), ("instances", "instances"), ("aggregate_fps", "FPS, all streams"),
                     ("stream_fps_min", "FPS, slowest stream"), ("stream_fps_mean", "FPS, mean stream"),
                     ("target_fps", "target FPS"), ("p99_ms", "p99 ms"), ("stream_mismatch_frames", "frames differing")],
    "realtime": [("release_fps", "release FPS"), ("queue", "queue"), ("released", "released"),
                 ("processed", "processed"), ("dropped", "dropped"), ("late", "late"), ("e2e_p50_ms", "e2e p50 ms"),
                 ("e2e_p99_ms", "e2e p99 ms"), ("release_jitter_p99_ms", "release jitter p99 ms"),
                 ("max_fps_no_drop", "max FPS w/o drops")],
    "server": [("qps", "target QPS"), ("qps_offered", "offered QPS"), ("qps_done", "done QPS"),
               ("instances", "instances"), ("queries", "queries"), ("e2e_p50_ms", "e2e p50 ms"),
               ("e2e_p99_ms", "e2e p99 ms"), ("latency_bound_ms", "bound ms"), ("bound_met", "p99 within bound")],
}


@dataclass
class Section:
    scenario: str
    title: str
    html: str
    plot: PlotEntry


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _valid(row: dict[str, Any]) -> bool:
    v = row.get("valid", True)
    return not (v is False or str(v).strip().lower() == "false")


def _label(sweep: Sweep) -> str:
    """What tells this sweep from the others of its scenario: backend and device, then only what was chosen
    (preprocessing, instances, precision, environment, machine kind), so a `--precision fp32,int8` or
    `--env a --env b` sweep does not show two lines of the same name."""
    job = sweep.jobs[0]
    spec = job.spec
    label = f"{job.backend} {spec.device}"
    if spec.model:  # another model than the backend's reference (a name or a file)
        label += f" [{Path(str(spec.model)).name[:28]}]"
    if spec.preprocess != "native":
        label += f" {spec.preprocess}"
    if spec.scenario.instance_count > 1:
        label += f" x{spec.scenario.instance_count}"
    precision = sweep_precision(sweep)
    if precision:
        label += f" {precision}"
    if spec.env_label != DEFAULT_ENV:
        label += f" @ {where_label(spec.env_label)}"
    if spec.machine:
        label += f" on {spec.machine}"
    return label


def _labels(sweeps: list[Sweep]) -> list[str]:
    """Each sweep's label, told apart where two would read the same: then with the video's name, and
    failing that with the first level's job id (never two legend entries or answers of one name)."""
    labels = [_label(sweep) for sweep in sweeps]
    for extra in (lambda sw: Path(str(sw.jobs[0].spec.source)).name, lambda sw: sw.jobs[0].job_id):
        counts = {lab: labels.count(lab) for lab in labels}
        labels = [f"{lab} {extra(sw)}" if counts[lab] > 1 else lab for lab, sw in zip(labels, sweeps)]
    return labels


def _series(ax: Any, sweep: Sweep, color: str, y: Callable[[dict[str, Any]], float], *, style: str = "-",
            label: str | None = None) -> None:
    xs = [sweep.level(j) for j in sweep.jobs]
    ys = [y(j.row or {}) for j in sweep.jobs]
    ax.plot(xs, ys, style, color=color, label=label, lw=1.6)
    for x, v, job in zip(xs, ys, sweep.jobs):
        valid = _valid(job.row or {})
        ax.plot([x], [v], "o", color=color, mfc=color if valid else "white", ms=6)


def _plain_ticks(axis: Any) -> None:
    from harness.report.plots import plain_ticks

    plain_ticks(axis)


def _figure(sweeps: list[Sweep], kind: str) -> Any:
    plt = _plt()
    two = kind in ("multi-stream", "realtime")
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(11 if two else 7.5, 4.2))
    axes = list(axes) if two else [axes]
    for i, (sweep, name) in enumerate(zip(sweeps, _labels(sweeps))):
        color = PALETTE[i % len(PALETTE)]
        if kind == "offline":
            _series(axes[0], sweep, color, lambda r: _num(r.get("model_fps")), label=name)
            axes[0].set(xlabel="batch size", ylabel="frames / s (model)", title="Throughput against batch size")
        elif kind == "multi-stream":
            _series(axes[0], sweep, color, lambda r: _num(r.get("stream_fps_min")), label=name)
            _series(axes[1], sweep, color, lambda r: _num(r.get("aggregate_fps")), label=name)
            target = _num((sweep.jobs[0].row or {}).get("target_fps"))
            if not math.isnan(target):
                axes[0].axhline(target, color=color, ls=":", lw=1)
            axes[0].set(xlabel="streams", ylabel="FPS of the slowest stream", title="Per stream (dotted: target)")
            axes[1].set(xlabel="streams", ylabel="FPS, all streams together", title="Aggregate")
        elif kind == "realtime":
            _series(axes[0], sweep, color, lambda r: 100 * _num(r.get("dropped")) / max(_num(r.get("released")), 1),
                    label=name)
            _series(axes[1], sweep, color, lambda r: _num(r.get("e2e_p99_ms")), label=name)
            axes[0].set(xlabel="release rate (FPS)", ylabel="frames dropped (%)", title="Dropped frames")
            axes[1].set(xlabel="release rate (FPS)", ylabel="end-to-end p99 (ms)", title="Release to result")
        else:
            _series(axes[0], sweep, color, lambda r: _num(r.get("e2e_p99_ms")), label=name)
            bound = _num((sweep.jobs[0].row or {}).get("latency_bound_ms"))
            if not math.isnan(bound):
                axes[0].axhline(bound, color=color, ls=":", lw=1)
                # the bound's value on its line, so a reader needs no legend to know what "under" means
                axes[0].annotate(f"bound {bound:g} ms", (0.0, bound), xycoords=("axes fraction", "data"),
                                 xytext=(4, 3), textcoords="offset points", fontsize=8, color=color)
            axes[0].set(xlabel="target QPS (Poisson arrivals)", ylabel="end-to-end p99 (ms)",
                        title="p99 against load (dotted: the latency bound)")
            axes[0].set_yscale("log")
            _plain_ticks(axes[0].yaxis)
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    levels = [sweep.level(j) for sweep in sweeps for j in sweep.jobs]
    for ax in axes:
        ax.grid(alpha=0.3)
        if kind in ("offline", "multi-stream"):
            ax.set_ylim(bottom=0)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        elif levels and min(levels) > 0 and max(levels) / min(levels) > 10:  # rates spanning decades
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
    axes[0].legend(fontsize=8, loc="best")
    fig.text(0.01, 0.01, "hollow markers: rows marked invalid (busy machine, dropped clocks or too few samples)",
             fontsize=7, color="#666")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _table(kind: str, sweeps: list[Sweep]) -> str:
    cols = COLUMNS[kind]
    head = "<th class='l'>job</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in cols) + "<th>valid</th>"
    body = []
    for sweep in sweeps:
        for job in sweep.jobs:
            row = job.row or {}
            valid = _valid(row)
            cls = "" if valid else " class='row-invalid'"
            mark = "yes" if valid else f"<span class='bad' title='{_cell(row.get('validity_notes'))}'>NO</span>"
            body.append(f"<tr{cls}><td class='l'>{html.escape(job.job_id)}</td>"
                        + "".join(f"<td>{_cell(row.get(c))}</td>" for c, _ in cols) + f"<td>{mark}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _answers(sweeps: list[Sweep]) -> str:
    items = []
    for sweep, label in zip(sweeps, _labels(sweeps)):
        text = answer(sweep)[0]
        trusted = all(_valid(j.row or {}) for j in sweep.jobs)
        warn = "" if trusted else " <span class='warn'>(rests on rows marked invalid)</span>"
        items.append(f"<li><b>{html.escape(label)}</b>: {html.escape(text)}{warn}</li>")
    return f"<ul>{''.join(items)}</ul>"


def scenario_sections(results: Results, plots_dir: Path) -> list[Section]:
    """A section per scenario present (besides single-stream), each with its plot saved under ``plots_dir``."""
    by_kind: dict[str, list[Sweep]] = {}
    for sweep in find_sweeps(results.run):
        by_kind.setdefault(sweep.scenario, []).append(sweep)
    sections = []
    for kind in TITLES:
        sweeps = by_kind.get(kind)
        if not sweeps:
            continue
        entry = PlotEntry(f"scenario-{kind}", TITLES[kind])
        try:
            entry.path = save_figure(_figure(sweeps, kind), plots_dir / f"scenario-{kind}.png")
        except Exception as exc:  # noqa: BLE001 - one plot must not cost the page
            entry.error = f"{type(exc).__name__}: {exc}"
        sections.append(Section(kind, TITLES[kind], _answers(sweeps) + _table(kind, sweeps), entry))
    return sections
