"""The doctor's rules, which are data: ``harness/cuda_requirements.toml`` and the lookups over it.

Framework builds, driver minimums and library names change with every release; keeping them in one TOML
file (each table with its source) means a new release is a new row, not new code.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import tomllib

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "cuda_requirements.toml"


@lru_cache(maxsize=1)
def requirements() -> dict[str, Any]:
    """The parsed ``cuda_requirements.toml`` (framework builds, driver minimums, sonames)."""
    return tomllib.loads(REQUIREMENTS_FILE.read_text(encoding="utf-8"))


def vtuple(text: str | None) -> tuple[int, ...]:
    """``"12.5.1"`` -> ``(12, 5, 1)``; local tags and suffixes ("2.14.1+cu130") keep their numbers too."""
    return tuple(int(p) for p in re.findall(r"\d+", text or ""))


def major(text: str | None) -> int | None:
    parts = vtuple(text)
    return parts[0] if parts else None


def series(version: str | None) -> str:
    """The release series (major.minor) that the build tables are keyed on."""
    return ".".join(str(p) for p in vtuple(version)[:2])


def cuda_version_text(value: int) -> str:
    """CUDA's integer encoding (12040) as text (12.4), as NVML, cudart and libcuda report it."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def framework_rules(framework: str, reqs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    reqs = reqs or requirements()
    return dict(reqs.get("frameworks", {}).get(framework, {}))


def display_name(framework: str, reqs: Mapping[str, Any] | None = None) -> str:
    """``torch`` -> ``PyTorch``: the name a reader knows the framework by."""
    return framework_rules(framework, reqs).get("display", framework)


def display_list(frameworks: Iterable[str]) -> str:
    return " and ".join(display_name(f) for f in frameworks)


def build_requirement(framework: str, version: str | None, reqs: Mapping[str, Any] | None = None) -> dict:
    """The table row for ``version`` (matched on major.minor), or ``{}`` when the table has none."""
    rules = framework_rules(framework, reqs)
    wanted = series(version)
    for row in rules.get("builds", []):
        if wanted in row.get("series", []):
            return {"source": rules.get("source"), **row}
    return {}


def driver_cuda_from_version(driver_version: str, reqs: Mapping[str, Any] | None = None) -> str | None:
    """The newest toolkit whose shipped driver is <= ``driver_version`` (when NVML cannot say)."""
    reqs = reqs or requirements()
    table = {k: v for k, v in reqs["driver"]["toolkit"].items() if k != "source"}
    have = vtuple(driver_version)
    ok = [cuda for cuda, drv in table.items() if vtuple(drv) <= have]
    return max(ok, key=vtuple) if ok else None


def minimum_driver(cuda_major: int, reqs: Mapping[str, Any] | None = None) -> str | None:
    reqs = reqs or requirements()
    return reqs["driver"]["minimum_for_major"].get(str(cuda_major))


def sonames_for(cuda: str, cudnn: str | None, reqs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What a build for CUDA ``cuda`` / cuDNN ``cudnn`` asks the loader for, e.g. libcudart.so.11.0."""
    reqs = reqs or requirements()
    parts = vtuple(cuda) + (0, 0)
    table = reqs["sonames"].get(str(parts[0]), {})
    out = {k: v.format(minor=parts[1]) for k, v in table.items()}
    if not out:  # a major the table does not know yet: the 12+ rule
        out = {"cudart": f"libcudart.so.{parts[0]}", "cublas": f"libcublas.so.{parts[0]}"}
    if cudnn and major(cudnn) is not None:
        out["cudnn"] = reqs["sonames"]["cudnn"].format(major=major(cudnn))
    return out
