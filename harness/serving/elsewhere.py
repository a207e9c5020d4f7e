"""``harness serve --env NAME`` / ``--python PATH``: the server runs in that environment's interpreter.

The interpreter is found exactly as ``harness run`` finds a job's (:class:`~harness.envs.resolve.
InterpreterResolver`: a named environment is built if it is not, and must answer the worker hello; a path must
exist and answer it; ``gpu-layout`` picks the backend's GPU environment when it is built), and is then asked,
before anything starts, whether it can serve: its harness has ``harness serve``, MLServer imports there (at a
version ``harness serve`` is built on, with a uvloop its workers can start under), and the backend's framework
is installed there. Any of those missing is ONE :class:`HarnessError` naming them all and the command that
fixes that environment.

Then this process **becomes** the server (``os.execve``: the same process id, so SIGINT/SIGTERM and the
exit code are the server's own, and the ``serving ...`` lines are printed by it), with the environment
variables a job in that environment gets (:func:`~harness.execution.process.child_environment`: nothing of
this environment's import path leaks into it). A named environment's use lock is kept open across the exec,
so ``harness env remove`` cannot delete it under the running server.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from typing import TYPE_CHECKING, NoReturn, Sequence

from harness.core.errors import EnvError, HarnessError

if TYPE_CHECKING:
    from harness.envs.interpreter import Interpreter
    from harness.envs.resolve import InterpreterResolver

#: what the interpreter that runs ``harness serve`` needs beyond the harness itself: the server side of the
#: ``serve`` extra in pyproject.toml (tests/test_serving_env.py checks they agree; the client's urllib3 and
#: orjson are not needed to serve, and every environment the harness builds has an OpenCV)
SERVE_REQUIREMENTS = ("mlserver>=1.7,<1.8", "uvloop<0.22")

#: run by the other interpreter: what it has of what serving needs, as one JSON line
PROBE = r"""
import json, sys
import importlib.metadata as md
import importlib.util
out = {"pip": importlib.util.find_spec("pip") is not None}
try:
    import harness.serving.server  # noqa: F401  (a harness with `harness serve`)
except Exception as exc:
    out["serve_error"] = f"{type(exc).__name__}: {exc}"
try:
    import mlserver
    out["mlserver"] = str(mlserver.__version__)
except Exception as exc:
    out["mlserver_error"] = f"{type(exc).__name__}: {exc}"
try:
    out["uvloop"] = md.version("uvloop")
except md.PackageNotFoundError:
    out["uvloop"] = None
try:
    from harness.core.registry import backend_class
    cls = backend_class(sys.argv[1])
    out["missing"] = list(cls.missing_modules())
    out["distributions"] = list(cls.distributions)
    installed = []
    for name in cls.distributions:
        try:
            installed.append(md.version(name))
        except md.PackageNotFoundError:
            pass
    # most backends declare no import names, only the distributions their framework comes in
    out["no_distribution"] = bool(cls.distributions) and not installed
except Exception as exc:
    out["backend_error"] = str(getattr(exc, "problem", None) or exc)
print(json.dumps(out))
"""


def _report(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def resolve(env: str | None, python: str | None, backend: str) -> tuple[Interpreter | None, InterpreterResolver]:
    """The interpreter that will run the server (None: this one, ``--env default``), checked as for a job."""
    from harness.suites.env_choice import EnvChoices, python_path
    from harness.envs.resolve import InterpreterResolver

    if env is not None and python is not None:
        raise HarnessError("--env and --python both given: one server runs in one interpreter",
                           "give one of them")
    resolver = InterpreterResolver(report=_report)
    if python is not None:
        return resolver.resolve(python=python_path(python, os.getcwd())), resolver
    assert env is not None
    choices = EnvChoices(report=_report)
    choices.check(env)
    return resolver.resolve(env=choices.for_backend(env, backend)), resolver


def _version_ok(version: str, spec: str) -> bool:
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) in Requirement(spec).specifier
    except InvalidVersion:
        return False


def problems(report: dict, backend: str) -> list[str]:
    """What the probe's ``report`` says is missing for serving ``backend`` (empty: it can serve)."""
    found = []
    if "serve_error" in report:
        found.append(f"its harness has no `harness serve` ({report['serve_error']})")
    if "mlserver_error" in report:
        found.append(f"MLServer does not import ({report['mlserver_error']})")
    elif not _version_ok(report.get("mlserver", ""), SERVE_REQUIREMENTS[0]):
        found.append(f"MLServer {report.get('mlserver')} is installed; harness serve is built on "
                     f"{SERVE_REQUIREMENTS[0]}")
    if report.get("uvloop") and not _version_ok(report["uvloop"], SERVE_REQUIREMENTS[1]):
        found.append(f"uvloop {report['uvloop']} is installed, on which MLServer 1.7's workers do not start "
                     f"({SERVE_REQUIREMENTS[1]} is needed)")
    if "backend_error" in report:
        found.append(f"backend {backend!r} cannot be found there ({report['backend_error']})")
    elif report.get("missing"):
        found.append(f"backend {backend!r} needs {', '.join(report['missing'])}, which is not installed there")
    elif report.get("no_distribution"):
        found.append(f"backend {backend!r} needs its framework, and none of "
                     f"{', '.join(report.get('distributions') or [])} is installed there")
    return found


def _install_fix(interp: Interpreter, resolver: InterpreterResolver, report: dict) -> str:
    """The command that gives ``interp`` what serving needs: its environment redefined with the serving
    requirements added (a built environment), or installing them into the interpreter (``--python``)."""
    wanted = list(SERVE_REQUIREMENTS)
    if report.get("missing") or report.get("no_distribution"):
        wanted += list(report.get("distributions") or [])[:1] or ["<the backend's framework>"]
    ensured = resolver.ensured.get(interp.env)
    if ensured is not None:
        from harness.envs.spec import requirement_name

        have = list(ensured.spec.requirements)
        names = {requirement_name(r) for r in have}
        added = [r for r in wanted if r.startswith("<") or requirement_name(r) not in names]
        return (f"harness env create {ensured.spec.name} {' '.join(shlex.quote(r) for r in have + added)}"
                f" --python {ensured.spec.python}")
    quoted = " ".join(shlex.quote(r) for r in wanted)
    if report.get("pip"):
        return f"{interp.python} -m pip install {quoted}"
    return f"uv pip install --python {interp.python} {quoted}"


def check_can_serve(interp: Interpreter, resolver: InterpreterResolver, backend: str) -> None:
    """Ask ``interp`` whether it can serve ``backend``; one :class:`HarnessError` naming every gap and the fix."""
    from harness.envs.interpreter import hello_timeout, run_bounded
    from harness.execution.process import child_environment

    where = f"python {interp.python}" if interp.env == interp.python else \
        f"environment {interp.env!r} ({interp.python})"
    try:
        proc = run_bounded([interp.python, "-c", PROBE, backend], hello_timeout(), child_environment(interp))
    except subprocess.TimeoutExpired:
        raise EnvError(f"{where} did not say within {hello_timeout():g} s whether it can serve (importing MLServer)",
                       "a machine under heavy load may need another try (or HARNESS_HELLO_TIMEOUT_S=300)") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise EnvError(f"{where} failed the serving check (exit {proc.returncode}): {tail}", "check that interpreter")
    report = json.loads(lines[-1])
    found = problems(report, backend)
    if found:
        fix = _install_fix(interp, resolver, report)
        if "serve_error" in report:
            fix = (f"harness env check {interp.python} --install (its harness is older than this one), then "
                   f"{fix}") if interp.env == interp.python else f"harness env create {interp.env} --force"
        raise EnvError(f"{where} cannot run `harness serve -b {backend}`: {'; '.join(found)}", fix)


def hold_across_exec(resolver: InterpreterResolver, interp: Interpreter) -> None:
    """Take the environment's use lock again on a descriptor the server inherits (``flock`` locks belong to the
    open file, so the lock lives as long as the server does and ``harness env remove`` waits for it)."""
    import fcntl

    ensured = resolver.ensured.get(interp.env)
    if ensured is None:  # --python: nothing the harness would remove
        return
    store = resolver.store
    path = store.use_lock(store.folder(ensured.spec.name, ensured.key))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    os.set_inheritable(fd, True)


def exec_serve(interp: Interpreter, resolver: InterpreterResolver, serve_args: Sequence[str]) -> NoReturn:
    """Replace this process with ``<interp> -m harness serve <serve_args>``."""
    from harness.execution.process import child_environment

    hold_across_exec(resolver, interp)
    argv = [interp.python, "-m", "harness", "serve", *serve_args]
    env = child_environment(interp)
    _report(f"harness serve: running in {interp.env if interp.env != interp.python else interp.python} "
            f"({interp.python}, Python {interp.python_version})")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(interp.python, argv, env)
    raise AssertionError("unreachable")  # execve returns only by raising OSError
