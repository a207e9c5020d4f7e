"""The test tiers and layout: one list of the slow tier, CI running the README's whole-suite command, test
files grouped in folders by kind, and no test module importing another (what they share is in tests/helpers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import SLOW_MODULES, SLOW_TESTS
from tests.helpers.parallel import ALONE_TESTS

ROOT = Path(__file__).resolve().parents[2]


def _readme_command(label: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("# ") and label in line)
    return lines[at + 1].strip()


def test_ci_runs_the_readmes_whole_suite_command_verbatim() -> None:
    whole = _readme_command("the whole test suite, as CI runs it")
    assert "--whole-suite" in whole and "--durations=25" in whole and "-n 2" in whole  # two workers
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert whole in ci, f".ci/run must run the README's whole-suite command verbatim: {whole}"
    assert "--whole-suite" not in _readme_command("the fast tier")


def test_the_slow_tier_names_only_test_modules_that_exist() -> None:
    """A renamed or moved test module would silently join the fast tier."""
    tests = ROOT / "tests"
    modules = {p.relative_to(tests).as_posix() for p in tests.rglob("test_*.py")}
    assert not SLOW_MODULES - modules, f"tests/conftest.py SLOW_MODULES names no test module: {SLOW_MODULES - modules}"
    lists = (("tests/conftest.py SLOW_TESTS", SLOW_TESTS), ("tests/helpers/parallel.py ALONE_TESTS", ALONE_TESTS))
    for where, listed in lists:
        for test in listed:
            module, name = test.split("::")
            assert module in modules, f"{where} names no test module: {test}"
            assert re.search(rf"^def {name}\(", (tests / module).read_text(encoding="utf-8"), re.M), f"{where}: {test}"


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_test_files_are_grouped_and_import_no_other_test_module() -> None:
    tests = ROOT / "tests"
    assert not list(tests.glob("test_*.py")), "test files live in a folder of their kind (tests/unit/, ...)"
    for folder in {p.parent for p in tests.rglob("test_*.py")}:
        assert (folder / "__init__.py").is_file(), f"{folder} needs an __init__.py (module names stay unique)"
    for path in [*tests.rglob("*.py")]:
        leaks = {m for m in _imported_modules(path) if m.startswith("tests.") and m.split(".")[-1].startswith("test_")}
        assert not leaks, f"{path.relative_to(ROOT)} imports {sorted(leaks)}: what it needs belongs in tests/helpers/"
