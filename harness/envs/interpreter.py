"""Another Python interpreter that runs jobs: how its processes are started, and the check it passes first.

A worker in another environment must see that environment's packages and nothing of the parent's: the
parent's ``sys.path`` (which the default worker inherits through ``PYTHONPATH``) would put this
environment's TensorFlow or PyTorch, and their CUDA libraries, in front of the other one's. So a foreign
interpreter gets no ``PYTHONPATH`` and no ``PYTHONHOME``, and ``PYTHONSAFEPATH=1`` keeps the working folder
(a checkout, say) off its ``sys.path``; a virtual environment's ``bin`` goes first on ``PATH`` as its
activation would do. Before any job is sent to it, ``python -m harness.execution.worker --hello``
must answer with this harness's protocol version (:mod:`harness.core.worker_protocol`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.core.errors import EnvError
from harness.core.worker_protocol import check_hello

#: seconds an interpreter may take to answer the hello (it imports numpy; a loaded machine is slow);
#: ``HARNESS_HELLO_TIMEOUT_S`` changes it
HELLO_TIMEOUT_S = 120.0
HELLO_TIMEOUT_ENV = "HARNESS_HELLO_TIMEOUT_S"


def hello_timeout() -> float:
    """The hello's timeout: ``HARNESS_HELLO_TIMEOUT_S`` when it is a number > 0, else 120 s."""
    try:
        value = float(os.environ.get(HELLO_TIMEOUT_ENV, ""))
    except ValueError:
        return HELLO_TIMEOUT_S
    return value if value > 0 and value == value and value != float("inf") else HELLO_TIMEOUT_S
_DROPPED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")


def venv_of(python: str | Path) -> Path | None:
    """The virtual environment folder ``python`` belongs to (``pyvenv.cfg`` one level above bin), if any."""
    folder = Path(python).parent.parent
    return folder if (folder / "pyvenv.cfg").is_file() else None


def foreign_environ(python: str | Path | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables of a process run by ``python`` from another environment (None: a tool
    like uv or pip): ours without the ones that would make it import our packages."""
    env = {k: v for k, v in (base if base is not None else os.environ).items() if k not in _DROPPED}
    env.pop("VIRTUAL_ENV", None)
    # `python -m` would put the working folder first on sys.path: run from a checkout, the checkout's
    # harness would shadow the one installed in the environment (Python >= 3.11 honours this)
    env["PYTHONSAFEPATH"] = "1"
    venv = venv_of(python) if python is not None else None
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
    return env


@dataclass(frozen=True)
class Interpreter:
    """A checked interpreter in another environment: where it is and what harness it runs."""

    python: str
    env: str  # the environment's name, or the interpreter path for `python = ...`
    harness_version: str
    protocol: int
    python_version: str
    prefix: str
    harness_path: str = ""  # the harness package it imports (the environment's own, not a checkout's)

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        return foreign_environ(self.python, base)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "python": self.python, "python_version": self.python_version,
                "harness": self.harness_version, "protocol": self.protocol, "prefix": self.prefix,
                "harness_path": self.harness_path}


def run_bounded(command: list[str], timeout: float, env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """``subprocess.run`` whose timeout ends the whole process group, not just the interpreter.

    Why: an interpreter that hangs (a ``sitecustomize`` that forks, a child that waits on the network) would
    otherwise leave its children running after ``subprocess.run`` killed the parent alone. The command runs
    in a session of its own, and on the timeout every process in it is killed.
    """
    import signal

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def python_fix(python: str) -> str:
    return (f"use an environment the harness builds (harness env create NAME REQUIREMENT...), or install the "
            f"harness there: harness env check {python} --install")


def hello(python: str | Path, env: str, fix: str, timeout: float | None = None,
          write_bytecode: bool = False) -> Interpreter:
    """Ask ``python`` for its worker hello; one clear :class:`EnvError` for each way that fails.

    ``write_bytecode``: let this one call write ``.pyc`` files even under ``PYTHONDONTWRITEBYTECODE``, so
    that a new environment's workers find the modules every job imports at start compiled (uv installs
    without compiling; compiling everything at build would cost far more than it saves).
    """
    exe = str(python)
    timeout = hello_timeout() if timeout is None else timeout
    environ = foreign_environ(exe)
    if write_bytecode:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        proc = run_bounded([exe, "-m", "harness.execution.worker", "--hello"], timeout, environ)
    except FileNotFoundError:
        raise EnvError(f"python {exe} does not exist", fix) from None
    except PermissionError:
        raise EnvError(f"python {exe} is not executable", fix) from None
    except OSError as exc:
        raise EnvError(f"python {exe} cannot be started: {exc}", fix) from None
    except subprocess.TimeoutExpired:
        raise EnvError(f"python {exe} did not answer within {timeout:g} s (python -m harness.execution.worker --hello)",
                       f"check that interpreter by hand; a machine under heavy load may need another try (or a "
                       f"longer wait: {HELLO_TIMEOUT_ENV}=300)") from None
    err = " | ".join(proc.stderr.strip().splitlines()[-3:])
    if proc.returncode != 0:
        if re.search(r"No module named '?harness'?($|[^.\w])", proc.stderr, re.MULTILINE):
            raise EnvError(f"python {exe} cannot import harness", fix)
        # a harness whose worker takes no --hello, or one from before the worker lived in harness.execution
        if ("unrecognized arguments" in proc.stderr or "--fd" in proc.stderr
                or re.search(r"No module named '?harness\.execution", proc.stderr)):
            check_hello(None, f"environment {env!r} ({exe})", fix)
        raise EnvError(f"python {exe} failed the harness check (python -m harness.execution.worker --hello exited with "
                       f"{proc.returncode}): {err}", fix)
    message = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    check_hello(message, f"environment {env!r} ({exe})", fix)
    assert message is not None
    return Interpreter(python=exe, env=env, harness_version=str(message.get("harness")),
                       protocol=int(message["protocol"]), python_version=str(message.get("python")),
                       prefix=str(message.get("prefix")), harness_path=str(message.get("harness_path")))


def check_python(path: str) -> Interpreter:
    """An existing interpreter named by ``python = PATH``: it must exist and run this protocol's worker."""
    fix = python_fix(path)
    p = Path(path).expanduser()
    if not p.is_absolute():
        raise EnvError(f"python {path!r} is not an absolute path", "give the full path, e.g. /opt/venv/bin/python")
    if not p.exists():
        raise EnvError(f"python {path} does not exist", fix)
    if p.is_dir():
        raise EnvError(f"python {path} is a folder, not an interpreter", f"give {p / 'bin' / 'python'}")
    return hello(str(p), str(p), fix)


def list_packages(python: str | Path, timeout: float | None = None) -> dict[str, str]:
    """``{distribution: version}`` of everything installed in ``python``'s environment, asked from inside
    it (what ``pip freeze`` would list, also where there is no pip, as in uv's environments)."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")
    try:
        proc = run_bounded([str(python), "-c", code], hello_timeout() if timeout is None else timeout,
                           foreign_environ(python))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvError(f"cannot list the packages of {python}: {exc}", "check that interpreter") from None
    if proc.returncode != 0:
        raise EnvError(f"cannot list the packages of {python}: {proc.stderr.strip()[-300:]}", "check that interpreter")
    return dict(sorted(json.loads(proc.stdout.strip().splitlines()[-1]).items(), key=lambda kv: kv[0].lower()))

