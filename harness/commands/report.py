"""``harness report DIR``: rebuild the plots and report.html of a results folder from its CSV/JSON files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """\
Examples:
  harness report results/20261122-101500                 plots/*.png and report.html, from the saved files
  harness report results/20261122-101500 --save-video    also annotated.mp4 (needs the source video)
  harness eval results/x --min-height 50 && harness report results/x   rescore, then redraw the page

Nothing is rerun: the page comes from runs.csv, frames.csv, jobs.json, env.json, detections/ and
agreement.csv, so any machine can rebuild it. Open report.html in a browser (it is one self-contained file).
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="rebuild plots and report.html from a results folder",
        description="Redraw the plots and write report.html from the files a run left (runs.csv, frames.csv, "
        "jobs.json, env.json, detections/, agreement.csv): nothing is rerun, so it works on any machine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", type=Path, help="results folder")
    p.add_argument("--save-video", action="store_true",
                   help="also write annotated.mp4: every job's boxes and per-frame latency, tiled (needs the source)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report.build import build_report
    from harness.results import RunLock, require_results_folder

    require_results_folder(args.dir)
    # like eval: a run still writing this folder would give a page without its running jobs, and its next
    # row would land after the page was drawn
    with RunLock(args.dir):
        page = build_report(args.dir, save_video=args.save_video)
    print(page)
    return 0
