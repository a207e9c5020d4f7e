"""The package's layers, checked from the code's own imports: each layer imports only layers below it.

A module's imports are read with ``ast`` (the runtime ones, function-level included; names imported only for
type hints under ``if TYPE_CHECKING:`` are no dependency), so the rule holds for whatever a caller happens to
import first. The layers, bottom up, are the ones the package's folders name (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import harness

ROOT = Path(harness.__file__).resolve().parent

#: bottom up; a package may import its own layer and any below it
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),                       # the value types and interfaces everything shares
    frozenset({"data"}),                       # what jobs read: frames, ground truth, models, assets, cache
    frozenset({"results"}),                    # the results folder's declared row, writer and reader
    frozenset({"measure"}),                    # machine state, validity, metrics, sweep answers
    frozenset({"envs"}),                       # Python environments per job
    frozenset({"doctor"}),                     # the facts about GPUs, libraries and environments, the machine record
    frozenset({"execution"}),                  # executors, worker, runner, scenarios, Ray
    frozenset({"suites", "report", "serving"}),  # what to run, what it means, how it is served
    frozenset({"commands", "cli", "help", "__main__"}),  # the command line
)
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _package(module: str) -> str | None:
    """The top-level part of ``harness`` a dotted name belongs to (None for ``harness`` itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "harness" and len(parts) > 1 else None


def _runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _upward_imports() -> list[str]:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        here = rel.parts[0].removesuffix(".py")
        if here == "__init__":
            continue
        for line, target in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            there = _package(target)
            if there is None or there == here or there not in LEVEL:
                continue
            if LEVEL[there] > LEVEL[here]:
                wrong.append(f"harness/{rel}:{line} imports {target} ({here} is below {there})")
    return sorted(set(wrong))


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {p.name.removesuffix(".py") for p in ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert parts - set(LEVEL) == set(), "a new top-level part of harness/ needs its layer in LAYERS"
    assert set(LEVEL) - parts == set(), "LAYERS names a part that no longer exists"


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert _upward_imports() == []


def test_the_core_imports_nothing_from_execution_data_report_or_commands() -> None:
    """The issue's own wording of the rule, kept apart so that loosening LAYERS cannot loosen it."""
    offending = [w for w in _upward_imports() if w.startswith("harness/core/")]
    assert offending == []
    for path in (ROOT / "core").rglob("*.py"):
        for _, target in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            there = _package(target)
            assert there not in LEVEL or there == "core", f"{path.name} imports {target}"


def test_the_checker_sees_an_upward_import() -> None:
    """The check can fail: a core-level source importing the runner is reported."""
    tree = ast.parse("def f():\n    from harness.execution.runner import run_job\n")
    targets = [t for _, t in _runtime_imports(tree)]
    assert "harness.execution.runner" in targets and LEVEL[_package(targets[0])] > LEVEL["core"]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.data.cache import Artifact\n")
    assert [t for _, t in _runtime_imports(tree) if t.startswith("harness")] == []


def test_no_source_names_the_issue_it_came_from() -> None:
    """History lives in git and the CHANGELOG; a comment says why, not which issue asked."""
    import re

    repo = ROOT.parent
    pattern = re.compile(r"\(issue \d+\)|\bissue \d+\b", re.IGNORECASE)
    files = [p for folder in ("harness", "backends", "tests", "scripts", "benchmarks")
             for p in sorted((repo / folder).rglob("*")) if p.suffix in {".py", ".toml", ".sh"}]
    files += [repo / "pyproject.toml", repo / "constraints.txt"]
    found = [f"{p.relative_to(repo)}:{n}" for p in files if p.name != "test_layers.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == []
