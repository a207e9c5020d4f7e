"""Whether a job's numbers can be trusted, in the spirit of MLPerf's VALID/INVALID: rules with named thresholds
turn what :mod:`harness.measure.machine_state` saw, and the sample count, into ``valid`` and ``validity_notes``.

A row is INVALID when any rule fires; each firing rule adds one note naming what it measured, so a reader
knows whether to rerun on a quiet machine, let the clocks recover, or time more frames. The thresholds are
documented in docs/scenarios.md (change them there too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from harness.measure.machine_state import GPU_POWER_CAP_REASON, GPU_SLOWDOWN_REASONS, MachineState
from harness.measure.metrics.latency import BOUND_CONFIDENCE, min_samples_for_bound, percentile_upper_bound

#: other processes' mean CPU use during the timed part, as a share of all CPUs, above which the machine was busy
OTHER_CPU_SHARE_MAX = 0.25
#: share of the CPUs the hypervisor took (steal time) above which the job shared its cores with other VMs
STEAL_SHARE_MAX = 0.05
#: the fastest CPU's clock in a sample below this share of the fastest clock seen ...
CLOCK_DROP_SHARE = 0.85
#: ... in at least this share of the samples: the clocks dropped (thermal or power limits), not a blip
CLOCK_DROP_SAMPLES_SHARE = 0.25
#: samples shorter than this share of the sampling interval are left out of maxima (CPU times tick every 10 ms)
SHORT_SAMPLE_SHARE = 0.5


#: the criteria a row is judged on, in the order a verdict lists them (LoadGen prints one line per criterion);
#: ``invalid_criteria`` in runs.csv names the ones that failed, so readers never parse the notes
CRITERIA = ("duration", "samples", "machine quiet", "clock held")


@dataclass
class Validity:
    valid: bool
    notes: list[str] = field(default_factory=list)  # why invalid (first) and what is worth knowing anyway
    bounds: dict[str, float] = field(default_factory=dict)  # early-stopping upper bounds, e.g. p99_bound_ms
    failed: list[str] = field(default_factory=list)  # the CRITERIA that made the row invalid

    def columns(self) -> dict[str, Any]:
        return {"valid": self.valid, "validity_notes": "; ".join(self.notes),
                "invalid_criteria": ",".join(dict.fromkeys(self.failed)), **self.bounds}


def _cpu_rules(state: MachineState, interval_s: float) -> tuple[list[tuple[str, str]], list[str]]:
    """(reasons the machine made the job invalid, each with its criterion; notes that don't)."""
    bad: list[tuple[str, str]] = []
    notes: list[str] = []
    during = state.during
    if not during:
        return bad, notes
    seconds = sum(s.seconds for s in during) or 1.0
    other = sum(s.other_cores * s.seconds for s in during) / seconds
    loads = [s.load1 for s in during if s.load1 is not None]
    load = f", load average up to {max(loads):.2f}" if loads else ""
    if other > OTHER_CPU_SHARE_MAX * state.cpus:
        bad.append(("machine quiet", f"machine busy: other processes used {other:.2f} of {state.cpus} CPUs "
                    f"({100 * other / state.cpus:.0f} %) on average while the job ran{load}"))
    elif loads and max(loads) > state.cpus:
        notes.append(f"load average up to {max(loads):.2f} on {state.cpus} CPUs (other processes "
                     f"{other:.2f} CPUs on average)")
    steal = sum(s.steal_cores * s.seconds for s in during) / seconds
    if steal > STEAL_SHARE_MAX * state.cpus:
        bad.append(("machine quiet",
                    f"the hypervisor took {100 * steal / state.cpus:.1f} % of the CPUs (steal time) while the job ran"))
    clocks = [s.cpu_mhz_max for s in ([state.before] if state.before else []) + during if s.cpu_mhz_max]
    timed = [s.cpu_mhz_max for s in during if s.cpu_mhz_max and s.seconds >= SHORT_SAMPLE_SHARE * interval_s]
    if clocks and timed:
        peak = max(clocks)
        low = [c for c in timed if c < CLOCK_DROP_SHARE * peak]
        if len(low) >= CLOCK_DROP_SAMPLES_SHARE * len(timed):
            bad.append(("clock held", f"CPU clocks dropped: the fastest CPU ran at {min(low):.0f} MHz against "
                        f"{peak:.0f} MHz in {len(low)} of {len(timed)} samples"))
    throttles = [s.throttle_events for s in ([state.before] if state.before else []) + during
                 if s.throttle_events is not None]
    if len(throttles) >= 2 and throttles[-1] > throttles[0]:
        bad.append(("clock held",
                    f"the CPUs were thermally throttled {throttles[-1] - throttles[0]} time(s) while the job ran"))
    if state.governor and "powersave" in state.governor:
        notes.append(f"CPU frequency governor {state.governor}")
    return bad, notes


def _gpu_rules(state: MachineState) -> tuple[list[tuple[str, str]], list[str]]:
    bad: list[tuple[str, str]] = []
    notes: list[str] = []
    readings = [s.gpu for s in state.during if s.gpu]
    if not readings:
        return bad, notes
    seen = 0
    for g in readings:
        seen |= int(g.get("reasons", 0))
    slowed = [name for bit, name in GPU_SLOWDOWN_REASONS.items() if seen & bit]
    if slowed:
        bad.append(("clock held", f"GPU clocks slowed ({', '.join(slowed)}) while the job ran"))
    elif seen & GPU_POWER_CAP_REASON:
        notes.append("GPU held at its power cap during the job (NVML clock-event reason)")
    others = max(int(g.get("other_processes", 0)) for g in readings)
    if others:
        bad.append(("machine quiet", f"{others} other process(es) ran on the job's GPU"))
    return bad, notes


#: the percentile each scenario's answer rests on, and the latency column it reads
HEADLINE_QUANTILE = {"p90": 90.0, "p99": 99.0, "e2e_p99": 99.0}


def sample_rule(headline: str, samples_ms: np.ndarray) -> tuple[list[str], dict[str, float]]:
    """Too few samples to bound the scenario's headline percentile (early-stopping style) make a row invalid;
    the bounds themselves go into runs.csv (``p90_bound_ms``, ``p99_bound_ms``, or ``e2e_p99_bound_ms``)."""
    bad: list[str] = []
    bounds: dict[str, float] = {}
    if not headline:
        return bad, bounds
    q = HEADLINE_QUANTILE[headline]
    n = int(np.asarray(samples_ms).size)
    bound = percentile_upper_bound(samples_ms, q)
    bounds[f"{headline}_bound_ms"] = round(bound, 4) if np.isfinite(bound) else float("nan")
    need = min_samples_for_bound(q)
    if n < need:
        bad.append(f"too few samples: {n} can't bound the {headline.replace('_', ' ')} latency at "
                   f"{BOUND_CONFIDENCE:.0%} confidence (needs {need}): time more with --min-duration or --min-frames")
    return bad, bounds


def judge(state: MachineState | None, headline: str, samples_ms: np.ndarray, *, interval_s: float,
          extra_notes: Mapping[str, str] | None = None, scenario_invalid: Sequence[str] = ()) -> Validity:
    """The row's validity from the machine's state, the headline latency samples and the scenario's own
    reasons (a release clock that could not hold its rate)."""
    bad: list[tuple[str, str]]
    bad, notes = ([], []) if state is None else _cpu_rules(state, interval_s)
    bad += [("clock held", reason) for reason in scenario_invalid]  # the scenario's release/arrival clock
    if state is not None:
        gpu_bad, gpu_notes = _gpu_rules(state)
        bad += gpu_bad
        notes += gpu_notes
    else:
        notes.append("the machine's state was not recorded")
    sample_bad, bounds = sample_rule(headline, samples_ms)
    bad += [("samples", reason) for reason in sample_bad]
    notes += list((extra_notes or {}).values())
    return Validity(valid=not bad, notes=[text for _, text in bad] + notes, bounds=bounds,
                    failed=[criterion for criterion, _ in bad])
