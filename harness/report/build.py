"""Build plots and report.html (and optionally the annotated video) from a results folder's files.

Everything here reads only what the run wrote (CSV/JSON), so ``harness report DIR`` can rebuild the page on
any machine later, and a failing plot never costs the others or the measured numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.core.errors import HarnessError
from harness.report.html import PlotEntry, render_html
from harness.report.load import Results, load_results
from harness.report.plots import PLOTS, save_figure
from harness.results import Layout, atomic_write_text, writing


def build_plots(out_dir: Path | str, names: list[str] | None = None, results: Results | None = None) -> list[PlotEntry]:
    """Draw every plot there is data for into ``out_dir/plots/<name>.png``."""
    results = results if results is not None else load_results(out_dir)
    plots_dir = Layout(Path(out_dir)).plots_dir
    entries = []
    for name, (fn, caption) in PLOTS.items():
        if names is not None and name not in names:
            continue
        entry = PlotEntry(name, caption)
        try:
            fig = fn(results)
            if fig is not None:
                entry.path = save_figure(fig, plots_dir / f"{name}.png", dpi=80 if name == "frames" else 110)
        except Exception as exc:  # noqa: BLE001 - one plot must not cost the page
            entry.error = f"{type(exc).__name__}: {exc}"
        entries.append(entry)
    return entries


def build_report(out_dir: Path | str, save_video: bool = False) -> Path:
    """Write plots/*.png and report.html into ``out_dir`` (and annotated.mp4 with ``save_video``)."""
    out = Path(out_dir)
    layout = Layout(out)
    results = load_results(out)
    plots = build_plots(out, results=results)
    from harness.report.scenarios import scenario_sections

    sections = scenario_sections(results, layout.plots_dir)
    from harness.report.scenarios import Section
    from harness.report.serving import serving_html

    served = serving_html(results)
    if served:  # a served job beside its in-process twin (docs/serving.md)
        sections.append(Section("serving", "Served vs in-process: what serving costs", served,
                                PlotEntry("serving", "")))
    notes: list[str] = []
    video = None
    if save_video:
        from harness.report.video import write_tiled_video

        try:
            video = write_tiled_video(results, layout.video)
        except Exception as exc:  # noqa: BLE001 - the page and the plots are still worth writing
            why = exc.problem if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
            notes.append(f"The annotated video could not be written: {why}")
            print(f"warning: the annotated video could not be written: {why}", file=sys.stderr)
    elif layout.video.is_file():
        video = layout.video
    failed = [p for p in plots if p.error]
    for p in failed:
        print(f"warning: plot {p.name} failed: {p.error}", file=sys.stderr)
    page = layout.report
    with writing(page, "free disk space or fix the folder's permissions, then run: harness report " + str(out)):
        atomic_write_text(page, render_html(results, plots, video=video, notes=notes, sections=sections))
    return page
