"""constraints.txt, the lock of the versions the README was measured with: complete for the project's own
dependencies, exact, used by the README's install line and by .ci/run, and (where this environment was
installed with it) matching what is installed: a framework that drifted is a failure, not a surprise."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("tensorflow", "torch", "torchvision", "opencv-python", "onnxruntime", "numpy", "tf2onnx")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;]*)", line)
        assert m, f"constraints.txt: {line!r} is not an exact pin name==version"
        assert norm(m.group(1)) not in out, f"constraints.txt pins {m.group(1)} twice"
        out[norm(m.group(1))] = m.group(2)
    return out


def project_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("detector-harness")]
    return {norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in reqs}


def test_constraints_pin_every_dependency_exactly() -> None:
    pinned = pins()
    assert "detector-harness" not in pinned  # the project itself is installed from the checkout
    missing = project_requirements() - set(pinned)
    assert not missing, f"constraints.txt does not pin {sorted(missing)}"
    # the versions the README's figures name (torch is capped at 2.14.1 on the development machine)
    assert pinned["tensorflow"] == "2.21.0" and pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
    assert pinned["opencv-python"].startswith("5.0.0")


def test_readme_and_ci_install_with_the_constraints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -c constraints.txt -e '.[all,test]'" in readme
    assert "-c constraints.txt -e '.[all,test]'" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    drift = (ROOT / ".ci" / "drift").read_text(encoding="utf-8")
    assert "-c constraints.txt" not in drift and "pip install -q --upgrade -e '.[all,test]'" in drift


def test_installed_frameworks_match_the_constraints() -> None:
    """Fails when this environment runs other framework versions than the README was measured with:
    reinstall with `pip install -c constraints.txt -e '.[all,test]'`, or re-measure and refresh the file."""
    pinned = pins()
    drifted = {}
    for name in FRAMEWORKS:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != pinned[name]:
            drifted[name] = f"{pinned[name]} pinned, {installed} installed"
    if not any(_installed(n) for n in FRAMEWORKS):
        pytest.skip("none of the frameworks is installed")
    assert not drifted, f"versions drifted from constraints.txt: {drifted}"


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
