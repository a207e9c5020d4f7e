"""The test tiers: one list of the slow tier, and CI running the README's whole-suite command."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SLOW_MODULES, SLOW_TESTS

ROOT = Path(__file__).resolve().parents[2]


def _readme_command(label: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("# ") and label in line)
    return lines[at + 1].strip()


def test_ci_runs_the_readmes_whole_suite_command_verbatim() -> None:
    whole = _readme_command("the whole test suite, as CI runs it")
    assert "--whole-suite" in whole and "--durations=25" in whole
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert whole in ci, f".ci/run must run the README's whole-suite command verbatim: {whole}"
    assert "--whole-suite" not in _readme_command("the fast tier")


def test_the_slow_tier_names_only_test_modules_that_exist() -> None:
    """A renamed or moved test module would silently join the fast tier."""
    modules = {p.relative_to(ROOT / "tests").as_posix() for p in (ROOT / "tests").rglob("test_*.py")}
    assert not SLOW_MODULES - modules, f"tests/conftest.py SLOW_MODULES names no test module: {SLOW_MODULES - modules}"
    assert not {t.split("::")[0] for t in SLOW_TESTS} - modules
