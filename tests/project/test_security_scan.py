"""No code path of the project unpickles or evaluates data it did not write itself.

Model files, label maps, suite files and results come from users and the internet; loading them must never
run code. The scan reads the syntax tree of every Python file in the project (and the code cells of its
notebooks), so ``model.eval()`` is not mistaken for ``eval(...)`` and a call split over lines is still found.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", "venv", ".git", "build", "dist", "results", "node_modules", "__pycache__", ".eggs"}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}

#: (path relative to the project, rule) -> why that occurrence is safe. Keep it empty where possible.
ALLOWED: dict[tuple[str, str], str] = {}


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unsafe_calls(source: str) -> list[tuple[int, str]]:
    """(line, rule) for each unsafe construct in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in PICKLE_MODULES:
            for alias in node.names:
                if alias.name in {"load", "loads", "Unpickler", "open"}:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, attr = name.rpartition(".")
        if name in {"eval", "exec", "builtins.eval", "builtins.exec"}:
            found.append((node.lineno, f"{name}("))
        elif head in PICKLE_MODULES and attr in {"load", "loads", "Unpickler", "open"}:
            found.append((node.lineno, f"{name}("))
        elif name.endswith("torch.load") and not _is_const(_kw(node, "weights_only"), True):
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif name in {"yaml.load", "yaml.load_all"}:
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or "Safe" not in _dotted(loader):
                found.append((node.lineno, f"{name} without SafeLoader"))
        elif name in {"yaml.unsafe_load", "yaml.full_load"}:
            found.append((node.lineno, f"{name}("))
        if _is_const(_kw(node, "weights_only"), False):
            found.append((node.lineno, "weights_only=False"))
        if _is_const(_kw(node, "allow_pickle"), True):
            found.append((node.lineno, "allow_pickle=True"))
    return found


def project_sources() -> list[tuple[str, str]]:
    out = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or (part.startswith(".") and part != ".") for part in rel.parts[:-1]):
            continue
        if path.suffix == ".py":
            out.append((str(rel), path.read_text(encoding="utf-8")))
        elif path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            code = "\n".join(
                "".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"
            )
            lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!"))]
            out.append((str(rel), "\n".join(lines)))
    return out


def test_the_scanner_finds_every_unsafe_form() -> None:
    bad = """
import pickle, yaml, torch, numpy as np
from pickle import loads
pickle.load(open("x", "rb"))
eval("1+1")
exec("x = 1")
torch.load("m.pth", weights_only=False)
torch.load("m.pth")
yaml.load(text)
np.load("a.npy", allow_pickle=True)
"""
    rules = sorted(rule for _, rule in unsafe_calls(bad))
    assert rules == sorted([
        "from pickle import loads", "pickle.load(", "eval(", "exec(", "weights_only=False",
        "torch.load without weights_only=True", "torch.load without weights_only=True",
        "yaml.load without SafeLoader", "allow_pickle=True",
    ])
    safe = """
model.eval()
torch.load("m.pth", map_location="cpu", weights_only=True)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
json.loads(text)
np.load("a.npy")
"""
    assert unsafe_calls(safe) == []


def test_no_unsafe_deserialization_or_eval_in_the_project() -> None:
    sources = project_sources()
    assert any(rel.startswith("harness/") for rel, _ in sources)  # the scan sees the project
    problems = []
    for rel, text in sources:
        try:
            hits = unsafe_calls(text)
        except SyntaxError as exc:
            pytest.fail(f"{rel} does not parse: {exc}")
        for line, rule in hits:
            if (rel, rule) not in ALLOWED:
                problems.append(f"{rel}:{line}: {rule}")
    assert not problems, "unsafe loading/evaluation (fix it, or add to ALLOWED with a reason):\n" + "\n".join(problems)
