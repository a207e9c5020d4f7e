"""The installed (non-editable) package must hold every subpackage: pyproject lists them by hand.

An editable install finds any folder, so a subpackage missing from ``[tool.setuptools] packages`` only breaks
a wheel or a plain ``pip install .`` (and every environment `harness env` builds installs a wheel).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("harness", "backends") for init in (ROOT / top).rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
