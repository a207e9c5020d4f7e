"""``harness compare A B``: what got faster, slower or less accurate between two results folders."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

EPILOG = """\
Examples:
  harness compare results/before results/after
  harness compare results/main results/pr --fail-above 10      CI gate: exit 1 on a regression over 10 %
  harness compare A B --threshold 3 --csv changes.csv --all

Jobs are matched by job id. Latency changes are judged against each run's own spread (a bootstrap over
frames.csv): a change smaller than that spread is reported as noise and never fails the gate. A job that
was ok in A and failed or fell back to the CPU in B always fails the gate, and so does a comparison that
compared nothing (no job id in both folders, or none measured in both).
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="compare two results folders job by job (CI regression gate)",
        description="Compare run B against baseline A: ratios of p50/p90/mean latency, model/pipeline FPS and "
        "AP per matching job id, with each run's noise considered.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir_a", type=Path, help="baseline results folder")
    p.add_argument("dir_b", type=Path, help="results folder to compare against the baseline")
    p.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                   help="smallest change in %% that counts as a change (5)")
    p.add_argument("--fail-above", type=float, default=None, metavar="PCT",
                   help="exit 1 when a metric regressed by more than PCT %% (beyond noise) or a job's status got worse")
    p.add_argument("--csv", type=Path, default=None, help="also write every metric's change to this CSV")
    p.add_argument("--all", action="store_true", help="list unchanged metrics too")
    p.set_defaults(func=run)


def _check_percentage(flag: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):  # also refuses NaN
        raise HarnessError(f"{flag} must be a finite percentage >= 0, got {value:g}",
                           "a negative threshold would call equal numbers a change, an infinite one no change "
                           "at all; e.g. --threshold 5")


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_results, format_comparison

    _check_percentage("--threshold", args.threshold)
    _check_percentage("--fail-above", args.fail_above)
    cmp = compare_results(args.dir_a, args.dir_b, threshold_pct=args.threshold)
    print(format_comparison(cmp, show_same=args.all))
    if args.csv:
        from harness.results import atomic_write_csv, writing

        with writing(args.csv, "give --csv a path in a folder you can write to"):
            atomic_write_csv(args.csv, cmp.table())
    if args.fail_above is not None:
        why = cmp.gate_failures(args.fail_above)
        if why:
            kinds = list(dict.fromkeys(kind for kind, _ in why))
            words = [f"regressed beyond {args.fail_above:g} %" if k == "regressed" else k for k in kinds]
            print(f"\nFAIL: {', '.join(words)}:", file=sys.stderr)
            for _, line in why:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"\npass: nothing regressed beyond {args.fail_above:g} %", file=sys.stderr)
    return 0
