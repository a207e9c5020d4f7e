"""Running the per-framework probes, each in its own subprocess, and turning whatever happens into facts.

The probes themselves (``backends/probes.py``) are registered in the ``harness.probes`` entry-point group,
so a third-party backend adds its own. Each runs in a throwaway interpreter: TensorFlow's and PyTorch's CUDA
libraries share sonames, so in one process the first import would decide what the other finds; a broken
CUDA library can crash its importer; and the caller (the runner) must stay free of CUDA libraries.

A probe that does not answer is reported as what it is: a crash keeps its exit status and stderr tail, a
probe stopped by the time limit keeps the limit (``FrameworkFacts.timed_out_s``), and either way the
installed distribution is read from this environment's metadata, so any fix names the real package.
"""

from __future__ import annotations

import math
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Sequence

from harness.doctor.facts import FrameworkFacts
from harness.doctor.rules import framework_rules
from harness.doctor.worker import WorkerResult, run_worker
from harness.core.versions import first_installed

PROBE_GROUP = "harness.probes"
PROBE_TIMEOUT_S = 120.0
#: set to "1" in a probe's environment when no GPU is visible: probes then read build facts from the
#: framework's files instead of importing it (TensorFlow's import alone costs 5-15 s on a busy machine)
STATIC_ENV = "HARNESS_DOCTOR_STATIC"

_LOG_RE = re.compile(
    r"could not load|cannot dlopen|cannot open shared object|cuinit|driver|libcud|cudnn|cublas|"
    r"skipping registering gpu|gpu will not be used|cuda", re.IGNORECASE,
)
_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+\s+\S+:\d+\]\s*")


def available_probes() -> dict[str, str]:
    """Backend name -> ``module:function`` of its probe (the ``harness.probes`` entry points)."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=PROBE_GROUP)}


def installed_distribution(names: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` that is installed, with its version."""
    return first_installed(names)


def probe_limit(timeout: float | None) -> float | None:
    """Seconds a probe may take, as ``subprocess`` wants it: None (no limit) for 0 or None.

    0 means "no limit", as for ``harness run --timeout``. A negative or NaN limit is a caller's bug
    (the CLI rejects it with a usage error before it gets here).
    """
    if timeout is None or timeout == 0 or timeout == math.inf:
        return None
    if not timeout > 0:  # negative, or NaN
        raise ValueError(f"a probe timeout must be a number of seconds >= 0 (0: no limit), not {timeout!r}")
    return float(timeout)


def _log_hints(stderr: str, limit: int = 6) -> list[str]:
    out: list[str] = []
    for line in stderr.splitlines():
        line = _LOG_PREFIX.sub("", line.strip())
        if line and _LOG_RE.search(line) and line not in out:
            out.append(line[:240])
        if len(out) >= limit:
            break
    return out


def framework_of(target: str) -> str:
    """``backends.probes:probe_torch`` -> ``torch``: the framework a probe is about, by its name."""
    func = target.rpartition(":")[2]
    return func[len("probe_"):] if func.startswith("probe_") else func


def _unanswered(target: str, answer: WorkerResult, limit: float | None) -> FrameworkFacts:
    """Facts for a probe that gave no answer: what is installed, read here, and why it did not answer."""
    framework = framework_of(target)
    installed = installed_distribution(framework_rules(framework).get("distributions", [framework]))
    facts = FrameworkFacts(framework=framework, installed=installed is not None)
    if installed:
        facts.distribution, facts.version = installed
    tail = " | ".join(answer.stderr.strip().splitlines()[-2:])[:300]
    if answer.timed_out:
        facts.timed_out_s = limit
        facts.error = f"the probe process timed out after {limit:g} s" + (f": {tail}" if tail else "")
    elif answer.start_error:
        facts.error = f"the probe process could not start: {answer.start_error}"
    else:
        facts.error = f"the probe process exited with {answer.returncode}" + (f": {tail}" if tail else "")
    return facts


def run_probe(target: str, timeout: float | None = PROBE_TIMEOUT_S, static: bool = False,
              python: str | None = None) -> FrameworkFacts:
    """Run one probe (``module:function``) in its own interpreter and return its facts, whatever happens.

    ``timeout``: seconds it may take (0 or None: no limit). ``static``: no GPU is visible, so the probe
    may read build facts from files instead of importing. ``python``: the interpreter to ask (default: this
    one); it must be able to import ``harness`` and the probe's module.
    """
    limit = probe_limit(timeout)
    answer = run_worker(["probe", target], limit, {STATIC_ENV: "1"} if static else None, python or sys.executable)
    if isinstance(answer.data, dict) and "framework" in answer.data:
        facts = FrameworkFacts.from_dict(answer.data)
    else:
        facts = _unanswered(target, answer, limit)
    facts.log = list(dict.fromkeys([*facts.log, *_log_hints(answer.stderr)]))
    facts.probe_s = round(answer.seconds, 2)
    return facts


def run_static_probes(targets: Sequence[str], timeout: float | None = PROBE_TIMEOUT_S,
                      python: str | None = None) -> dict[str, FrameworkFacts]:
    """Facts of several probes in static mode (no GPU visible), all asked of one interpreter.

    Static probes read build facts from the frameworks' files and import none of them, so the reasons for a
    process per probe (sonames, crashing imports) do not arise, and one process instead of one per framework
    saves an interpreter start (and the harness import) per probe on every run's environment record. Any
    probe that gets no answer there (it raised, or the process crashed or ran out of time) is asked again
    alone with :func:`run_probe`, so its failure is reported as its own, as before. A batched probe's
    ``probe_s`` is its own time inside the shared process (the interpreter's start is no one probe's).
    """
    limit = probe_limit(timeout)
    answers: dict[str, FrameworkFacts] = {}
    if len(targets) > 1:
        batch = run_worker(["probes", *targets], limit, {STATIC_ENV: "1"}, python or sys.executable)
        hints = _log_hints(batch.stderr)
        for target, answer in (batch.data if isinstance(batch.data, dict) else {}).items():
            data = answer.get("data") if isinstance(answer, dict) else None
            if target in targets and isinstance(data, dict) and "framework" in data:
                facts = FrameworkFacts.from_dict(data)
                facts.log = list(dict.fromkeys([*facts.log, *hints]))
                facts.probe_s = round(float(answer.get("seconds", 0.0)), 2)
                answers[target] = facts
    left = [t for t in targets if t not in answers]
    if left:
        with ThreadPoolExecutor(max_workers=len(left)) as pool:
            alone = {t: pool.submit(run_probe, t, timeout, True, python) for t in left}
            answers.update({t: f.result() for t, f in alone.items()})
    return {t: answers[t] for t in targets}
