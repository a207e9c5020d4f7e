"""The tools that make environments: uv (fast, hardlinks from its cache), else ``venv`` + pip.

uv is a dependency of the harness (the PyPI package ``uv`` ships the binary; ``uv.find_uv_bin()`` finds
it). Where it cannot be used (no wheel for the platform, or ``HARNESS_ENV_INSTALLER=pip``), the standard
library's ``venv`` and pip do the same steps, slower. Every command's output goes to the build log; a
failing command raises :class:`~harness.envs.failures.CommandFailed` with that output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from harness.envs.failures import CommandFailed
from harness.core.errors import EnvError

INSTALLER_ENV = "HARNESS_ENV_INSTALLER"


def run_logged(command: list[str], log: Path | None, cwd: Path | None = None) -> str:
    """Run ``command``; append it and its output to ``log``; raise CommandFailed when it fails."""
    start = time.perf_counter()
    from harness.envs.interpreter import foreign_environ

    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=cwd, env={**foreign_environ(None), "NO_COLOR": "1"}, check=False)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(command)}\n{proc.stdout}\n[exit {proc.returncode} after "
                     f"{time.perf_counter() - start:.1f} s]\n\n")
    if proc.returncode != 0:
        raise CommandFailed(command, proc.returncode, proc.stdout)
    return proc.stdout


def base_python(version: str) -> str:
    """The interpreter to base a new environment on: this one's own base when the version matches (so an
    environment gets exactly the running CPython), else ``pythonX.Y`` from PATH (uv also finds or fetches
    one by version)."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return getattr(sys, "_base_executable", None) or sys.executable
    return f"python{version}"


def env_python(folder: Path) -> Path:
    return folder / "bin" / "python"


class Installer:
    """The steps of a build, whichever tool does them."""

    name = "?"

    def version(self) -> str:
        raise NotImplementedError

    def create(self, folder: Path, python: str, log: Path | None) -> None:
        raise NotImplementedError

    def install(self, python: Path, requirements: Sequence[str], log: Path | None, no_deps: bool = False) -> None:
        raise NotImplementedError

    def build_wheel(self, source: Path, out_dir: Path, log: Path | None) -> Path:
        raise NotImplementedError

    def compile(self, requirements_file: Path, python: str, log: Path | None) -> str:
        """Resolve without installing: the pinned list, or CommandFailed with the resolver's message."""
        raise NotImplementedError


def _only_wheel(out_dir: Path) -> Path:
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise EnvError(f"building the harness wheel left {len(wheels)} wheels in {out_dir}", "see the build log")
    return wheels[0]


class UvInstaller(Installer):
    name = "uv"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def version(self) -> str:
        return run_logged([self.binary, "--version"], None).strip()

    def create(self, folder: Path, python: str, log: Path | None) -> None:
        run_logged([self.binary, "venv", "--no-project", "--no-config", "--relocatable", "--python",
                    base_python(python), str(folder)], log, cwd=folder.parent)

    def install(self, python: Path, requirements: Sequence[str], log: Path | None, no_deps: bool = False) -> None:
        extra = ["--no-deps"] if no_deps else []
        run_logged([self.binary, "pip", "install", "--no-config", "--python", str(python), *extra, *requirements],
                   log, cwd=python.parent)

    def build_wheel(self, source: Path, out_dir: Path, log: Path | None) -> Path:
        run_logged([self.binary, "build", "--no-config", "--wheel", "--out-dir", str(out_dir), str(source)], log,
                   cwd=source)
        return _only_wheel(out_dir)

    def compile(self, requirements_file: Path, python: str, log: Path | None) -> str:
        return run_logged([self.binary, "pip", "compile", "--no-config", "--no-header", "--no-annotate",
                           "--python-version", python, str(requirements_file)], log, cwd=requirements_file.parent)


class PipInstaller(Installer):
    """``python -m venv`` + pip: no extra tool, slower (no shared hardlinked cache)."""

    name = "pip"

    def version(self) -> str:
        return "pip (venv)"

    def create(self, folder: Path, python: str, log: Path | None) -> None:
        base = base_python(python)
        if os.sep not in base and shutil.which(base) is None:
            raise EnvError(f"no Python {python} on PATH to build an environment with venv + pip",
                           f"install Python {python}, or use uv (pip install uv), which can fetch one")
        run_logged([base, "-m", "venv", str(folder)], log, cwd=folder.parent)

    def install(self, python: Path, requirements: Sequence[str], log: Path | None, no_deps: bool = False) -> None:
        # --no-compile: as uv does, leave bytecode to the build's hello (the modules every worker imports) and to
        # first imports; pip's default compiles every installed module, pandas and matplotlib included, which
        # costs about as much CPU as the install itself
        extra = ["--no-compile", *(["--no-deps"] if no_deps else [])]
        run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *extra,
                    *requirements], log, cwd=python.parent)

    def build_wheel(self, source: Path, out_dir: Path, log: Path | None) -> Path:
        run_logged([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                    "--wheel-dir", str(out_dir), str(source)], log, cwd=source)
        return _only_wheel(out_dir)

    def compile(self, requirements_file: Path, python: str, log: Path | None) -> str:
        report = requirements_file.parent / "pip-report.json"
        run_logged([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--dry-run",
                    "--ignore-installed", "--python-version", python, "--only-binary=:all:", "--report", str(report),
                    "-r", str(requirements_file)], log, cwd=requirements_file.parent)
        import json

        items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
        return "\n".join(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items)


def find_installer(prefer: str | None = None) -> Installer:
    """uv when its binary is there, else venv + pip; ``prefer`` (or ``HARNESS_ENV_INSTALLER``) forces one."""
    choice = (prefer or os.environ.get(INSTALLER_ENV, "")).strip().lower() or "auto"
    if choice not in ("auto", "uv", "pip"):
        raise EnvError(f"{INSTALLER_ENV}={choice!r} is not an installer the harness knows",
                       f"set {INSTALLER_ENV} to uv or pip, or unset it")
    if choice in ("auto", "uv"):
        try:
            import uv

            return UvInstaller(uv.find_uv_bin())
        except (ImportError, FileNotFoundError) as exc:
            if choice == "uv":
                raise EnvError(f"uv is not usable here ({exc})", "pip install uv, or unset "
                               f"{INSTALLER_ENV} to build with venv + pip") from None
    return PipInstaller()
