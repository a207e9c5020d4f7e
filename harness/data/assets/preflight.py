"""Before a run starts: every file its jobs need, found, downloaded or made once, or one error naming them all.

Without this, each job resolved its own files in its own process: six jobs offline meant six identical
download failures, and a run that measured nothing. Here the needs of all jobs are collected (the source's
files, the model's files, and files only some backends need, such as OpenCV's text graph), each distinct
file is resolved once (an archive that holds several is downloaded once), and whatever cannot be had is
reported in one :class:`AssetError` before any job starts, with the jobs that need it and how to provide it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.data.assets.downloads import NetworkUnreachable, download_members, download_spec
from harness.data.assets.manifest import AssetFile, Manifest, load_manifests
from harness.data.assets.places import ASSETS_ENV, OFFLINE_ENV, asset_roots, cache_dir, offline
from harness.data.assets.resolver import locate_file, missing_fix, resolve_file
from harness.core.errors import AssetError, HarnessError

REFERENCE = ("", "reference", "ref")


@dataclass
class Need:
    """One file of a named asset and the jobs that need it."""

    manifest: Manifest
    spec: AssetFile
    jobs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.manifest.name}:{self.spec.role}"


@dataclass(frozen=True)
class Problem:
    need: Need
    problem: str
    fix: str
    missing: bool = False  # simply not there (the message's common fix applies), not corrupt or failed

    def line(self) -> str:
        jobs = self.need.jobs
        used = f"needed by {jobs[0]}" + (f" and {len(jobs) - 1} more job(s)" if len(jobs) > 1 else "")
        return f"  - {self.need.label} ({self.need.spec.path}): {self.problem} [{used}]"


def _reference_model(backend: str, precision: str | None = None) -> str | None:
    """The asset a job without --model runs: what the backend's converter names
    (``Converter.default_model_for(precision)``: tflite's hosted model, or its precision variants of the
    reference SSD); for this project's own backends the reference SSD otherwise. A third-party backend that
    names none loads what it loads. Asks the converter only: the backend's runtime module is not imported."""
    from harness.data.models import DEFAULT_MODEL
    from harness.core.registry import converter_class, is_own_backend

    try:
        converter = converter_class(backend)
    except HarnessError:
        return None  # an unknown backend fails in its own job with its own message
    default = converter.default_model_for(precision) if converter is not None else None
    if default:
        return str(default)
    return DEFAULT_MODEL if is_own_backend(backend) else None


def _calibration_need(job: Any) -> list[tuple[str, None]]:
    """The frames an int8 variant of the reference is calibrated on: a named source
    fetched before the first job like the job's own video."""
    if getattr(job, "precision", None) != "int8" or (job.model or "").lower() not in REFERENCE:
        return []
    from harness.data.calibration import DEFAULT_CALIBRATION

    return [(str((job.options or {}).get("calibration", DEFAULT_CALIBRATION)), None)]


def needs_of(jobs: Iterable[Any]) -> list[Need]:
    """The named-asset files ``jobs`` (JobSpecs) need, each once, in first-use order. Paths the user gave
    need nothing here (the job checks them)."""
    manifests = load_manifests()
    needs: dict[tuple[str, str], Need] = {}
    for job in jobs:
        model = job.model if (job.model or "").lower() not in REFERENCE else _reference_model(
            job.backend, getattr(job, "precision", None))
        for name, backend in ((job.source, None), (model, job.backend), *_calibration_need(job)):
            if not name or name not in manifests or Path(name).exists():
                continue
            manifest = manifests[name]
            for spec in manifest.files.values():
                if spec.needed_for(backend) or spec.role == manifest.primary:
                    need = needs.setdefault((manifest.name, spec.role), Need(manifest, spec))
                    need.jobs.append(job.job_id)
    return list(needs.values())


def _problem(need: Need, exc: AssetError) -> Problem:
    return Problem(need, exc.problem.removeprefix(f"{need.manifest.name}: "), exc.fix or "")


def _missing(need: Need) -> Problem:
    """A file that is nowhere, said briefly: the message's header says where the harness looked."""
    spec = need.spec
    if spec.downloadable:
        why = f"downloads are off ({OFFLINE_ENV}=1)" if offline() else "not downloaded"
        return Problem(need, f"missing, {why}; source: {spec.source_text}", f"source: {spec.source_text}", True)
    if spec.package:
        return Problem(need, f"missing: the package {spec.package} is not installed",
                       missing_fix(need.manifest, spec), True)
    return Problem(need, "missing, and it has no download source", missing_fix(need.manifest, spec), True)


def _download_missing(needs: list[Need], problems: list[Problem]) -> None:
    """Download every missing downloadable file once (archive members that share a URL together); after
    the first unreachable host, don't wait on the others."""
    groups: dict[str, list[Need]] = {}
    for need in needs:
        if need.spec.downloadable and locate_file(need.manifest, need.spec.role) is None:
            key = need.spec.url if need.spec.archive_member and not need.spec.is_folder else need.label
            groups.setdefault(str(key), []).append(need)
    if not groups:
        return
    if offline():
        problems += [_missing(n) for group in groups.values() for n in group]
        return
    unreachable: NetworkUnreachable | None = None
    for group in groups.values():
        if unreachable is not None:
            problems += [Problem(n, f"not downloaded: the network was unreachable ({n.spec.source_text})",
                                 unreachable.fix or "", True) for n in group]
            continue
        print(f"assets: downloading {', '.join(n.label for n in group)} from {group[0].spec.source_text}",
              file=sys.stderr)
        try:
            if len(group) > 1:
                download_members(str(group[0].spec.url), [n.spec for n in group])
            else:
                download_spec(group[0].spec)
        except NetworkUnreachable as exc:
            unreachable = exc
            problems += [Problem(n, exc.problem, exc.fix or "", True) for n in group]
        except AssetError as exc:
            problems += [_problem(n, exc) for n in group]


def preflight(jobs: Iterable[Any]) -> list[Problem]:
    """Resolve every file ``jobs`` need, once: verify what is there, download what is missing (unless
    offline), make generated files; return what cannot be had (empty when the run can start)."""
    needs = needs_of(jobs)
    problems: list[Problem] = []
    _download_missing(needs, problems)
    failed = {p.need.label for p in problems}
    # plain files first, generated ones after: a generator may read a file that was just downloaded, and
    # nothing is made (a minute of TensorFlow for a text graph) for a run that cannot start anyway
    for need in sorted(needs, key=lambda n: n.spec.generated):
        if need.label in failed:
            continue
        if need.spec.generated and problems:
            continue  # made on the next run, once the files above are there
        if not need.spec.downloadable and not need.spec.generated and locate_file(need.manifest, need.spec.role) is None:
            problems.append(_missing(need))
            failed.add(need.label)
            continue
        try:
            resolve_file(need.manifest, need.spec.role, allow_download=False)
        except AssetError as exc:
            problems.append(_problem(need, exc))
            failed.add(need.label)
    return problems


def require_assets(jobs: Iterable[Any]) -> None:
    """:func:`preflight`, raising one :class:`AssetError` that lists every file that cannot be had."""
    jobs = list(jobs)
    problems = preflight(jobs)
    if not problems:
        return
    fetchable = [p for p in problems if p.missing and p.need.spec.downloadable]
    names = sorted({p.need.manifest.name for p in fetchable})
    fixes = []
    if fetchable:
        fixes.append(f"set {ASSETS_ENV} to a folder that holds them (laid out like shared/assets)"
                     + (f", or unset {OFFLINE_ENV} to download them into {cache_dir()}" if offline() else "")
                     + (f", or run `harness assets fetch {' '.join(names)}` where there is network" if names else ""))
    fixes += [f"{p.need.label}: {p.fix}" for p in problems if p not in fetchable and p.fix]
    fixes.append("or leave out the jobs that need them (see --list)")
    roots = ", ".join(str(r) for r in asset_roots()) or "unset"
    raise AssetError(f"{len(problems)} file(s) this run needs cannot be had, so no job was started "
                     f"(looked in: installed packages, {ASSETS_ENV} ({roots}), the cache {cache_dir()}):\n"
                     + "\n".join(p.line() for p in problems), ";\n       ".join(fixes))


def require_backends_ready(jobs: Iterable[Any]) -> None:
    """Each backend's own check before any job (``Detector.preflight(config)``, a classmethod that does nothing
    by default: the v2 client asks its server whether the model is ready): every failure in one
    :class:`HarnessError`, so an unreachable server stops the run before its first job rather than failing
    each job in turn."""
    from harness.core.detector import DetectorConfig
    from harness.core.registry import backend_class

    failures: dict[str, list[str]] = {}  # "backend model" -> the jobs that need it
    problems: dict[str, str] = {}
    checked: set[str] = set()
    for job in jobs:
        what = f"{job.backend} {job.model}"
        if what in checked:
            if what in failures:
                failures[what].append(job.job_id)
            continue
        checked.add(what)
        try:
            cls = backend_class(job.backend)
        except HarnessError:
            continue  # an unknown backend fails in its own job with its own message
        try:
            cls.preflight(DetectorConfig(model=job.model, device=job.device, options=dict(job.options or {})))
        except HarnessError as exc:
            failures[what] = [job.job_id]
            problems[what] = exc.problem + (f" (fix: {exc.fix})" if exc.fix else "")
    if failures:
        lines = [f"  - {what}: {problems[what]} [needed by {', '.join(ids[:3])}"
                 + (f" and {len(ids) - 3} more" if len(ids) > 3 else "") + "]" for what, ids in failures.items()]
        raise HarnessError(f"{len(failures)} backend(s) cannot run, so no job was started:\n" + "\n".join(lines),
                           "start the server or fix the model named above, or leave out the jobs that need it")
