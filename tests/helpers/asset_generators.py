"""Small asset generators for the asset layer's tests (they run in the generator's child process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.errors import ModelError

GENERATOR_REVISION = 1


def upper(inputs: dict[str, Path], out: Path, meta: dict[str, Any]) -> None:
    """The input's bytes upper-cased, then the manifest's ``suffix``."""
    out.write_bytes(inputs["src"].read_bytes().upper() + str(meta.get("suffix", "")).encode())


def refuse(inputs: dict[str, Path], out: Path, meta: dict[str, Any]) -> None:
    raise ModelError("this input cannot be turned into that file", "give the file by hand")


def write_nothing(inputs: dict[str, Path], out: Path, meta: dict[str, Any]) -> None:
    pass
