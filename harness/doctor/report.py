"""The doctor's report: gather the machine's and every framework's facts in parallel, judge, assemble.

The report is plain JSON-able data, because it travels: ``harness doctor --json`` prints it, the runner
writes it into every results folder's ``env.json``, and the HTML report reads it back. It never raises for
what it finds on the machine: whatever fails becomes text inside it.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Mapping, Sequence

from harness.doctor.facts import (
    DriverFacts,
    FrameworkFacts,
    SystemFacts,
    safe_driver_facts,
    system_facts,
    visible_gpu_count,
)
from harness.doctor.probes import (
    PROBE_TIMEOUT_S,
    available_probes,
    framework_of,
    probe_limit,
    run_probe,
    run_static_probes,
)
from harness.doctor.rules import REQUIREMENTS_FILE
from harness.doctor.verdicts import exit_status, judge

SCHEMA = 1


def _gather(targets: Sequence[str], driver: DriverFacts, timeout: float | None, static: bool
            ) -> tuple[SystemFacts, dict[str, FrameworkFacts]]:
    """The machine's facts and each probe's, all at once: the report costs about one framework import.
    Static probes (no GPU visible) share one process; live ones get a process each."""
    with ThreadPoolExecutor(max_workers=max(1, len(targets) + 1)) as pool:
        sys_future = pool.submit(system_facts, True, driver)
        if static:
            batch = pool.submit(run_static_probes, targets, timeout)
        else:
            futures = {t: pool.submit(run_probe, t, timeout, static) for t in targets}
        try:
            system = sys_future.result()
        except Exception as exc:
            system = SystemFacts(DriverFacts(present=False), os.environ.get("CUDA_VISIBLE_DEVICES"), 0,
                                 errors=[f"system facts failed: {exc}"])
        facts: dict[str, FrameworkFacts] = {}
        for target in targets:
            try:
                facts[target] = batch.result()[target] if static else futures[target].result()
            except Exception as exc:
                facts[target] = FrameworkFacts(framework_of(target), installed=False, error=f"probe failed: {exc}")
    return system, facts


def _verdicts(names: Sequence[str], probes: Mapping[str, str], facts: Mapping[str, FrameworkFacts],
              system: SystemFacts, device: str | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            if name not in probes:
                raise LookupError(f"no probe registered for backend {name!r} (known: {', '.join(sorted(probes))})")
            out[name] = judge(name, facts[probes[name]], system, device).to_dict()
        except Exception as exc:
            out[name] = {"backend": name, "framework": None, "status": "mismatch",
                         "reason": f"the doctor could not judge it: {exc}",
                         "fix": "see the error; is the project installed (pip install -e .)?",
                         "problems": [], "facts": None}
    return out


def doctor_report(backends: Sequence[str] | None = None, device: str | None = None,
                  timeout: float | None = PROBE_TIMEOUT_S, live: bool | None = None) -> dict[str, Any]:
    """The doctor's findings as JSON-able data (for ``harness doctor --json`` and every results' env.json).

    Never raises for what it finds: whatever fails becomes an ``error`` inside the report (only a negative
    ``timeout``, a caller's bug, raises ValueError). ``backends`` None means every backend with a registered
    probe; probes run in parallel subprocesses, one per distinct probe function. ``timeout``: seconds each
    probe may take, 0 or None for no limit. ``live`` None: import the frameworks only when a GPU is visible
    (without one no framework can see a GPU, and the build facts can be read from files in a fraction of the
    time); True: always import them.
    """
    start = time.perf_counter()
    probe_limit(timeout)  # a bad limit fails here, not as one "probe failed" per backend
    report: dict[str, Any] = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device,
                              "requirements": str(REQUIREMENTS_FILE), "backends": {}, "errors": []}
    driver = safe_driver_facts()
    visible = visible_gpu_count(os.environ.get("CUDA_VISIBLE_DEVICES"), driver.gpu_count or len(driver.gpus))
    static = not live and visible == 0
    report["probes"] = "static (no GPU visible)" if static else "live (frameworks imported)"
    try:
        probes = available_probes()
    except Exception as exc:
        probes, _ = {}, report["errors"].append(f"probe registry: {exc}")
    names = list(dict.fromkeys(backends)) if backends else sorted(probes)
    system, facts = _gather(sorted({probes[n] for n in names if n in probes}), driver, timeout, static)
    report["system"] = asdict(system)
    report["backends"] = _verdicts(names, probes, facts, system, device)
    report["explicit"] = bool(backends)
    report["exit_status"] = exit_status(report)
    report["duration_s"] = round(time.perf_counter() - start, 2)
    return report
