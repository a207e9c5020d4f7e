"""Where a suite came from: the TOML read once, and errors that name the file, the line and the key.

A mistake in a suite is reported before anything runs, with the file and line, because a typo found after an
hour of benchmarking costs an hour. tomllib keeps no positions, so the line is found by scanning the text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.suites.env_choice import EnvChoices
from harness.core.errors import HarnessError


class SuiteError(HarnessError):
    """A suite file that can't be used as written."""


@dataclass
class SuiteSource:
    """Where a suite came from, so that every error can name the file and line, and relative paths have a
    folder to be relative to (the suite file's own)."""

    path: str
    text: str
    base: Path
    lines: list[str] = field(init=False)
    choices: EnvChoices = field(default_factory=EnvChoices)  # the environment names jobs may run in

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def line_of(self, keypath: list[str | int], value: str | None = None) -> int | None:
        """The 1-based line where the last named key of ``keypath`` is set (best effort, by scanning text);
        with ``value``, the first line from there that holds that string (an entry of a multi-line list).

        tomllib keeps no positions, so the table header is found first (``[matrix]``, the n-th ``[[job]]``),
        then the key after it.
        """
        start = 0
        names = [k for k in keypath if isinstance(k, str)]
        if not names:
            return None
        head = names[0]
        if head == "envs" and len(names) >= 2:  # [envs.NAME] headers
            header = next((i for i, ln in enumerate(self.lines)
                           if re.match(rf"\s*\[\s*envs\s*\.\s*[\"']?{re.escape(names[1])}[\"']?\s*\]", ln)), None)
            if header is not None:
                if len(names) == 2:
                    return header + 1
                start, names = header, names[1:]
        if head in ("job", "exclude"):
            index = next((k for k in keypath[1:2] if isinstance(k, int)), 0)
            headers = [i for i, ln in enumerate(self.lines) if re.match(rf"\s*\[\[\s*{head}\s*\]\]", ln)]
            if index < len(headers):
                start = headers[index]
                if len(names) == 1:
                    return start + 1
        else:
            for i, ln in enumerate(self.lines):
                if re.match(rf"\s*\[\s*{re.escape(head)}\s*\]", ln):
                    start = i
                    if len(names) == 1:
                        return i + 1
                    break
        key = names[-1]
        pattern = re.compile(rf"(^|[{{,\s])\"?{re.escape(key)}\"?\s*=")
        for i in range(start, len(self.lines)):
            if pattern.search(self.lines[i].split("#", 1)[0]):
                if value is not None:
                    quoted = re.compile(rf"[\"']{re.escape(value)}[\"']")
                    return next((j + 1 for j in range(i, len(self.lines))
                                 if quoted.search(self.lines[j].split("#", 1)[0])), i + 1)
                return i + 1
        return start + 1 if start else None

    def error(self, keypath: list[str | int], problem: str, fix: str | None, value: str | None = None) -> SuiteError:
        where = self.path
        line = self.line_of(keypath, value)
        if line:
            where += f":{line}"
        return SuiteError(f"{where}: {format_keypath(keypath)}: {problem}", fix)


def format_keypath(keypath: list[str | int]) -> str:
    """``["job", 2, "frames"]`` as the reader wrote it: ``job[2].frames``."""
    out = ""
    for k in keypath:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def read_suite(path: Path | str, text: str | None = None) -> tuple[SuiteSource, dict[str, Any]]:
    """The suite's source and its parsed TOML (``text`` given: the file is not read, as for the embedded
    default suite); a missing, unreadable or invalid file is one SuiteError."""
    base = Path(path).expanduser().absolute().parent
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SuiteError(f"suite file {path} does not exist", "give the path of a .toml suite file "
                             "(see docs/suites-and-reports.md), or omit it for the default suite") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SuiteError(f"cannot read suite file {path}: {exc}", "check the file's permissions and encoding")
    ctx = SuiteSource(path, text, base)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # the message ends with "(at line L, column C)"
        raise SuiteError(f"{path}: not valid TOML: {exc}", "fix the syntax at that line (strings need quotes, "
                         "lists need [ ], tables need [name] headers)") from None
    return ctx, data

