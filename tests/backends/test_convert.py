"""``harness convert``: converts the real reference graph once per backend, reuses the cached artifact, and
says which backends need nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.commands import convert
from harness.data.cache import conversion_params
from tests.conftest import requires_tf


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    convert.add_parser(parser.add_subparsers())
    return parser.parse_args(["convert", *argv])


@requires_tf
def test_convert_builds_once_then_reuses_the_cache(assets_root: Path, tmp_path: Path, capsys) -> None:
    args = parse("--backend", "tf2", "--backend", "tf1", "--cache-root", str(tmp_path))
    assert args.func(args) == 0
    first = capsys.readouterr().out
    line = next(ln for ln in first.splitlines() if ln.startswith("tf2"))
    artifact = Path(line.split()[1])
    assert artifact.is_dir() and (artifact / "saved_model.pb").is_file()
    assert artifact.is_relative_to(tmp_path / "tf2-reference")
    assert (artifact.parent / "artifact.json").is_file()  # finished marker: never a half-built artifact
    assert "tf1" in first and "nothing to convert" in first
    mtime = (artifact / "saved_model.pb").stat().st_mtime_ns

    assert args.func(args) == 0
    second = capsys.readouterr().out
    assert f"tf2          {artifact}" in second
    assert (artifact / "saved_model.pb").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert len(list((tmp_path / "tf2-reference").iterdir())) == 1


@requires_tf
def test_cache_key_follows_the_backend_and_versions(assets_root: Path) -> None:
    from backends.tf2_convert import TF2Converter

    params = conversion_params(TF2Converter)
    assert params["backend"] == "tf2" and "tensorflow" in params["versions"]
    assert params["revision"] == TF2Converter.revision


def test_missing_graph_is_one_clear_error(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError

    args = parse("--graph", str(tmp_path / "missing.pb"), "--backend", "tf2")
    with pytest.raises(HarnessError, match="graph not found"):
        args.func(args)


def test_unknown_backend_is_reported(assets_root: Path, tmp_path: Path) -> None:
    from harness.core.errors import HarnessError

    args = parse("--backend", "tf3", "--cache-root", str(tmp_path))
    with pytest.raises(HarnessError, match="unknown backend 'tf3'"):
        args.func(args)
