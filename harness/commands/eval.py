"""``harness eval``: recompute accuracy and agreement of a results folder from its saved detections.

No model runs: the detections every job saved (all boxes above the low record threshold) are scored again
against ground truth, e.g. with another minimum box height, region of interest or agreement threshold.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

EPILOG = """\
Examples:
  harness eval results/20261122-101500                      ground truth of each job's source asset
  harness eval results/x --gt pets09-s2l1 --min-height 50   ignore people under 50 px (GT and detections)
  harness eval results/x --gt path/to/gt.txt --roi 0,100,768,576
  harness eval results/x --gt pets09-s2l1=pets.txt,tud-campus=tud/gt/gt.txt
  harness eval results/x --score-threshold 0.5              agreement at another operating point
"""


def _roi(text: str) -> tuple[float, float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--roi wants x1,y1,x2,y2 in pixels, got {text!r}")
    return parts  # type: ignore[return-value]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="recompute accuracy (COCO AP) and agreement from a results folder's saved detections",
        description="Score the saved detections of a results folder against ground truth (pycocotools) and "
        "compare every pair of jobs on the same frames; rewrites runs.csv (ap, ap50, ap75, ar100), "
        "accuracy.csv and agreement.csv. No model is rerun.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", type=Path, help="a results folder written by `harness run`")
    p.add_argument("--gt", default=None, metavar="ASSET_OR_PATH",
                   help="ground truth: an asset name, a MOT gt.txt, a COCO json, a PETS/Milan XML, or "
                   "SOURCE=GT[,SOURCE=GT] (default: each job's source asset)")
    p.add_argument("--min-height", type=float, default=None, metavar="PX",
                   help="score only boxes at least this tall: shorter ground truth is ignored, shorter detections dropped")
    p.add_argument("--roi", type=_roi, default=None, metavar="X1,Y1,X2,Y2",
                   help="score only boxes centred inside this region (pixels)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="agreement's operating point (default: the jobs' policy); AP always uses every saved box")
    p.add_argument("--iou", type=float, default=0.5,
                   help="IoU that makes two jobs' boxes the same object, within (0, 1] (0.5)")
    p.add_argument("--accuracy-floor", type=float, default=None, metavar="SHARE",
                   help="a precision variant below SHARE x its fp32 job's AP50 is marked below-floor (0.99)")
    p.set_defaults(func=run)


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _sci(value: float) -> str:
    """Score deltas between frameworks are often 1e-5: show their size, not 0.0000."""
    return "-" if math.isnan(value) else f"{value:.2g}"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def run(args: argparse.Namespace) -> int:
    from harness.measure.metrics.evaluate import evaluate_results

    floor = {} if args.accuracy_floor is None else {"accuracy_floor": args.accuracy_floor}
    result = evaluate_results(args.results, gt=args.gt, min_height=args.min_height, roi=args.roi,
                              score_threshold=args.score_threshold, iou_threshold=args.iou, **floor)
    acc = result.accuracy
    if len(acc):
        overall = acc[acc["category"] == "all"]
        print(f"accuracy (pycocotools, {len(overall)} job(s)"
              + (f", min height {args.min_height:g} px" if args.min_height else "")
              + (f", roi {','.join(f'{v:g}' for v in args.roi)}" if args.roi else "") + ")")
        print_table(
            [[r.job_id, _cell(r.ap), _cell(r.ap50), _cell(r.ap75), _cell(r.ar100), str(r.frames), str(r.n_gt),
              str(r.n_dets)] for r in overall.itertuples()],
            ["job", "AP", "AP50", "AP75", "AR100", "frames", "gt", "dets"],
        )
    else:
        print("accuracy: no job could be scored" + (" (see the notes below)" if result.notes else
                                                    " (no ground truth found: give --gt)"))
    if result.pairs:
        print(f"\nagreement (IoU >= {args.iou:g}, score >= {result.pairs[0].score_threshold:g})")
        print_table(
            [[p.job_a, p.job_b, _cell(p.matched_share_a), _cell(p.matched_share_b), _cell(p.mean_iou, 4),
              _cell(p.min_iou, 4), _sci(p.score_delta_max), f"{p.only_a}/{p.only_b}",
              " ".join(str(w) for w in p.worst_frames[:3]) or "-"] for p in result.pairs],
            ["a", "b", "a found by b", "b found by a", "mean IoU", "min IoU", "max |dscore|", "only a/b",
             "worst frames (frame:a+b)"],
        )
    if result.floor:
        print(f"\naccuracy floor (AP50 against the fp32 job of the same model, floor {result.floor[0].accuracy_floor:g})")
        print_table(
            [[c.job_id, c.fp32_job, _cell(c.ap50_vs_fp32, 4), "BELOW-FLOOR" if c.below_floor else "ok",
              _cell(c.agree_fp32), _sci(c.score_shift), _sci(c.score_shift_max)] for c in result.floor],
            ["variant", "fp32 job", "AP50 / fp32", "floor", "fp32 boxes found", "mean |dscore|", "max |dscore|"],
        )
    for key, why in result.notes.items():
        print(f"note: {key}: {why}")
    print(f"\nwrote {args.results / 'accuracy.csv'}, {args.results / 'agreement.csv'} and the accuracy columns of "
          f"{args.results / 'runs.csv'}")
    if result.damaged:
        problems = "; ".join(exc.problem for exc in result.damaged.values())
        raise HarnessError(f"{problems} (the other jobs were scored)"
                           if len(result.damaged) == 1 else
                           f"{len(result.damaged)} jobs could not be read: {problems} (the other jobs were scored)",
                           f"rerun {'that job' if len(result.damaged) == 1 else 'them'}: "
                           f"harness run --resume {args.results}")
    if args.gt and not len(acc):
        print(f"\nerror: --gt {args.gt} scored no job", file=sys.stderr)
        return 1
    return 0
