"""Every ``--help`` ends with an Examples section, nested subcommands (``harness assets fetch``) included.

A command's EPILOG lists examples for all its actions; a nested action shows the lines of its ancestors'
examples that invoke it, so examples are written once, beside the command, and no action's help is bare.
"""

from __future__ import annotations

import argparse
from typing import Iterator

HEADER = "Examples:"


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The direct subcommands of ``parser``, by name (aliases skipped)."""
    for action in parser._actions:  # argparse has no public accessor for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, sub


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                        argparse.ArgumentParser]]:
    """Every parser of the command line with its words (``("assets", "fetch")``), the root first."""
    yield path, parser
    for name, sub in subparsers(parser):
        yield from walk(sub, path + (name,))


def _example_lines(text: str | None, words: tuple[str, ...]) -> list[str]:
    """The example lines of ``text`` that run ``harness <words...>``."""
    command = " ".join(("harness",) + words)
    return [line for line in (text or "").splitlines()
            if line.strip() == command or line.strip().startswith(command + " ")]


def add_nested_examples(root: argparse.ArgumentParser) -> None:
    """Give each parser without an Examples section the examples its ancestors hold for it."""
    parents: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for path, parser in walk(root):
        parents[path] = parser
        if HEADER in (parser.epilog or "") or HEADER in (parser.description or ""):
            continue
        lines: list[str] = []
        for depth in range(len(path) - 1, -1, -1):
            ancestor = parents[path[:depth]]
            lines = _example_lines(ancestor.epilog, path) or _example_lines(ancestor.description, path)
            if lines:
                break
        if lines:
            parser.epilog = HEADER + "\n" + "\n".join(lines) + ("\n\n" + parser.epilog if parser.epilog else "")
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
