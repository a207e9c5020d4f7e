"""The ``harness`` command line: one subcommand per module in :mod:`harness.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from harness.core.errors import HarnessError

# Each module exposes add_parser(subparsers) and run(args) -> int.
COMMANDS: tuple[str, ...] = ("run", "convert", "eval", "assets", "doctor", "env", "report", "compare", "serve")

DESCRIPTION = """\
Compare one object detector across frameworks (TF1 frozen graph, TF2 SavedModel, OpenCV DNN, PyTorch, ...)
on the same video frames: where each really ran, latency percentiles, FPS, memory, accuracy, agreement.

Examples:
  harness run                          the default suite: the reference SSD in every installed backend
  harness run --backend tf1 --video pets09-s2l1 --frames 200
  harness doctor                       GPU readiness per backend, CUDA/cuDNN/driver mismatches explained
  harness env create ocv4 'opencv-python==4.14.*'   a named Python environment for jobs
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"harness.commands.{name}").add_parser(sub)
    from harness.help import add_nested_examples

    add_nested_examples(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from harness.core.telemetry import apply_opt_outs

    apply_opt_outs()  # this process and all it starts send no framework telemetry (docs/reliability.md)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command is None:
            args = parser.parse_args(["run", *(argv or sys.argv[1:])])
        else:
            parser.print_help()
            return 2
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `harness ... | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
