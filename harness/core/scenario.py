"""What a job's scenario is: how frames reach the model, and the one level it is measured at.

A sweep (``--batch 1,2,4,8``, ``--qps 10,20,40``) is one job per level, each with its own ``runs.csv`` row,
job id, files and resume state (:func:`sweep_levels` expands the settings): ``harness compare`` pairs levels
by job id, ``--resume`` reruns only the levels that are missing or changed, and the report draws a curve
from the rows of one sweep. Loading the model once per level is the price (seconds), paid so that every
level is an ordinary job.

This module imports nothing heavy: :mod:`harness.core.jobs` builds a :class:`ScenarioSpec` into every job.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterable, Mapping, Sequence

from harness.core.errors import HarnessError

SINGLE_STREAM = "single-stream"
OFFLINE = "offline"
MULTI_STREAM = "multi-stream"
REALTIME = "realtime"
SERVER = "server"
SCENARIOS = (SINGLE_STREAM, OFFLINE, MULTI_STREAM, REALTIME, SERVER)

#: the settings that may hold a list (one job per value): the levels of a sweep
SWEEP_KEYS = ("batch", "streams", "fps", "qps")
#: the settings of each scenario beyond the ones every scenario takes (min_duration_s, min_frames)
SCENARIO_KEYS: dict[str, tuple[str, ...]] = {
    SINGLE_STREAM: (),
    OFFLINE: ("batch",),
    MULTI_STREAM: ("streams", "instances", "fps"),
    REALTIME: ("fps", "queue"),
    SERVER: ("qps", "instances", "latency_bound_ms"),
}
COMMON_KEYS = ("min_duration_s", "min_frames")
#: the scenarios MLPerf LoadGen can drive (``--loadgen``: harness.execution.scenarios.loadgen); realtime and the
#: harness's camera-style multi-stream have no LoadGen form (docs/scenarios.md says why)
LOADGEN_SCENARIOS = (SINGLE_STREAM, OFFLINE, SERVER)
#: the job-setting names (suite keys, RunOverrides fields) that make a ScenarioSpec
SETTING_KEYS = ("scenario", "batch", "streams", "instances", "fps", "queue", "qps", "latency_bound_ms",
                *COMMON_KEYS, "loadgen", "seed")

_FIX = "see docs/scenarios.md for each scenario's settings"


@dataclass(frozen=True)
class ScenarioSpec:
    """One scenario at one level. ``None`` = not given (each scenario's default applies, see the properties)."""

    kind: str = SINGLE_STREAM
    batch: int | None = None  # offline: frames per inference call
    streams: int | None = None  # multi-stream: sources decoded at once
    instances: int | None = None  # multi-stream, server: model instances serving them (default 1)
    fps: float | None = None  # realtime: release rate (None: the source's); multi-stream: target per stream
    queue: int | None = None  # realtime: frames that may wait while the detector is busy (default 0: drop)
    qps: float | None = None  # server: mean arrival rate of the Poisson process
    latency_bound_ms: float | None = None  # server: the p99 end-to-end latency a QPS must stay under
    min_duration_s: float | None = None  # every scenario: loop the source until this much timed wall time
    min_frames: int | None = None  # every scenario: ... and at least this many timed frames
    loadgen: bool | None = None  # single-stream, offline, server: MLPerf LoadGen issues the queries (preloaded frames)
    seed: int | None = None  # server's arrival clock and LoadGen's seeds (default 0)

    def __post_init__(self) -> None:
        if self.kind not in SCENARIOS:
            raise HarnessError(f"unknown scenario {self.kind!r}", f"use one of: {', '.join(SCENARIOS)}")
        if self.loadgen is False:  # `loadgen = false` measures what leaving it out does (same id, same resume)
            object.__setattr__(self, "loadgen", None)
        allowed = set(SCENARIO_KEYS[self.kind]) | set(COMMON_KEYS)
        if self.loadgen and self.kind not in LOADGEN_SCENARIOS:
            raise HarnessError(f"--loadgen drives {', '.join(LOADGEN_SCENARIOS)}; the harness's {self.kind} scenario "
                               "has no LoadGen form", "drop --loadgen for this scenario (docs/scenarios.md, 'LoadGen')")
        if self.seed is not None and not (self.kind == SERVER or self.loadgen):
            raise HarnessError(f"seed is a setting of the server scenario and of --loadgen runs, not of {self.kind}",
                               "add --scenario server or --loadgen, or drop --seed")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("kind", "loadgen", "seed") or value is None:
                continue
            if f.name not in allowed:
                owners = [k for k, keys in SCENARIO_KEYS.items() if f.name in keys]
                raise HarnessError(
                    f"{f.name} is a setting of the {' and '.join(owners)} scenario, not of {self.kind}",
                    f"add --scenario {owners[0]} (suite: scenario = \"{owners[0]}\"), or drop {f.name}")
        check_rate("fps", self.fps)
        check_rate("qps", self.qps)
        if self.kind == SERVER and self.qps is None:
            raise HarnessError("the server scenario needs a target rate", "give --qps N (e.g. --qps 10,20,40)")
        if self.kind == MULTI_STREAM and self.instances not in (None, 1, self.stream_count):
            n = self.stream_count
            raise HarnessError(f"instances {self.instances} with {n} stream{'s' if n != 1 else ''}: each stream gets its own model "
                               "instance, or all share one",
                               "give instances = 1" + (f" or instances = {n}" if n > 1 else "") + "; a sweep of "
                               "streams with one instance per stream is one run per level (--streams 2 --instances "
                               "2, then --streams 4 --instances 4)")

    # each scenario's defaults, said once ----------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.batch or 1

    @property
    def stream_count(self) -> int:
        return self.streams or 1

    @property
    def instance_count(self) -> int:
        return self.instances or 1

    @property
    def queue_depth(self) -> int:
        return self.queue or 0

    @property
    def loops(self) -> bool:
        """Whether the source is looped until the minimum duration / frame count is reached."""
        return bool(self.min_duration_s) or bool(self.min_frames)

    @property
    def is_default(self) -> bool:
        return self == ScenarioSpec()

    def normalized(self) -> "ScenarioSpec":
        """This spec with each default of its own scenario written out (``batch=None`` -> ``batch=1``), so that
        a setting given at its default compares equal to one not given: ``--batch 1`` measures what
        ``--scenario offline`` alone does, and must not make ``--resume`` rerun the job. ``fps`` has no default
        to write (the source's rate) and stays as given."""
        defaults = {"batch": self.batch_size, "streams": self.stream_count, "instances": self.instance_count,
                    "queue": self.queue_depth}
        own = {k: v for k, v in defaults.items() if k in SCENARIO_KEYS[self.kind]}
        return replace(self, **own)

    def describe(self) -> str:
        """The spec as a reader says it: the scenario and each setting given (``offline batch=4 min_frames=100``)."""
        rest = " ".join(f"{k}={_g(v) if isinstance(v, float) else v}" for k, v in self.to_dict().items() if k != "kind")
        return f"{self.kind} {rest}".strip()

    def id_suffix(self) -> str:
        """What a job id gets so that the levels of a sweep never share an id (single-stream: nothing, so
        every job id of the one-scenario harness stays what it was)."""
        k = self.kind
        if self.seed is not None:  # two seeds of one level are two jobs
            return "-".join(filter(None, [replace(self, seed=None).id_suffix(), f"seed{self.seed}"]))
        if self.loadgen:  # a LoadGen row never shares an id with the harness's own run of the same level
            return "-".join(filter(None, [replace(self, loadgen=None).id_suffix() or "single", "loadgen"]))
        if k == SINGLE_STREAM:
            return ""
        if k == OFFLINE:
            return f"offline-b{self.batch_size}"
        if k == MULTI_STREAM:
            return f"multistream-s{self.stream_count}" + (f"-i{self.instance_count}" if self.instance_count > 1 else "")
        if k == REALTIME:
            rate = f"{_g(self.fps)}fps" if self.fps else "srcfps"
            return f"realtime-{rate}" + (f"-q{self.queue_depth}" if self.queue_depth else "")
        return f"server-{_g(self.qps)}qps" + (f"-i{self.instance_count}" if self.instance_count > 1 else "")

    def level(self) -> str:
        """The level this job measures, as a reader says it (runs.csv ``level``)."""
        k = self.kind
        if k == OFFLINE:
            return f"batch {self.batch_size}"
        if k == MULTI_STREAM:
            return f"{self.stream_count} stream(s)" + (f", {self.instance_count} instances" if self.instance_count > 1
                                                      else "")
        if k == REALTIME:
            rate = f"{_g(self.fps)} fps" if self.fps else "source fps"
            return f"{rate}, queue {self.queue_depth}"
        if k == SERVER:
            return f"{_g(self.qps)} qps" + (f", {self.instance_count} instances" if self.instance_count > 1 else "")
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ScenarioSpec":
        """A spec from jobs.json (``{"kind": ...}``) or from settings (``{"scenario": ...}``); other keys are
        ignored, so a merged suite entry can be passed as it is."""
        if isinstance(data, ScenarioSpec):
            return data
        data = dict(data or {})
        kind = data.get("kind", data.get("scenario")) or SINGLE_STREAM
        values: dict[str, Any] = {"kind": kind}
        for f in fields(cls):
            if f.name != "kind" and data.get(f.name) is not None:
                value = data[f.name]
                if isinstance(value, (list, tuple)):
                    raise HarnessError(f"{f.name} {value!r}: a list makes one job per value; expand it first",
                                       "internal: call harness.core.scenario.sweep_levels on the settings")
                values[f.name] = value
        return cls(**values)


def _g(value: float | None) -> str:
    """A rate as a reader writes it, also inside a job id: ``1e+308`` loses its ``+`` (the id keeps letters,
    digits, ``.``, ``_`` and ``-`` only, so ``+`` would become ``-`` and turn 1e308 into 1e-308)."""
    return "" if value is None else f"{value:g}".replace("e+", "e")


#: the slowest rate a realtime or server scenario takes: one frame or query a day (a slower one has nothing
#: left to time, and a period near 1e300 s overflows the clock's sleep)
MIN_RATE = 1.0 / 86400.0


def check_rate(name: str, value: float | None) -> None:
    """A release rate the clock can keep: finite and at least :data:`MIN_RATE`."""
    if value is None:
        return
    if not (math.isfinite(value) and value >= MIN_RATE):
        raise HarnessError(
            f"{name} {_g(value)}: one {'frame' if name == 'fps' else 'query'} every {_g(1 / value) if value > 0 else 'inf'} s "
            "is not a rate the harness can time",
            f"give {name} >= {MIN_RATE:.3g} (one a day), e.g. --{name} 10")


def _typed(value: Any) -> str:
    """A level as the user typed it (``10``, ``10.0000001``), not Python's ``10.0``."""
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def check_distinct_levels(name: str, values: Sequence[Any]) -> None:
    """A sweep whose levels repeat would run one job twice under one id: refuse it, naming the levels. Two
    rates that print alike (``10`` and ``10.0000001``: the ids and reports write 6 significant digits) are the
    same level."""
    seen: dict[str, Any] = {}
    for value in values:
        key = _g(float(value)) if isinstance(value, float) else str(value)
        if key in seen:
            first = _typed(seen[key])
            alike = "is given twice" if seen[key] == value else \
                f"and {_typed(value)} are the same level (both {key} to 6 significant digits, as job ids write them)"
            raise HarnessError(
                f"{name} {','.join(_typed(v) for v in values)}: duplicate sweep level: {first} {alike}; each "
                "level of a sweep is one job",
                f"give each {name} level once")
        seen[key] = value


def sweep_levels(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One settings dict per level: every list-valued sweep key (``batch = [1, 4]``) expanded, in order."""
    lists = {k: list(settings[k]) for k in SWEEP_KEYS if isinstance(settings.get(k), (list, tuple))}
    for key, values in lists.items():
        check_distinct_levels(key, values)
    if not lists:
        return [dict(settings)]
    out = []
    for combo in itertools.product(*lists.values()):
        level = dict(settings)
        level.update(zip(lists, combo))
        out.append(level)
    return out


# checks and spellings (harness.core.settings builds its table from these) ---------------------------------------

def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_ints(v: Any) -> bool:
    """A positive integer, or a non-empty list of them (a sweep)."""
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_int(x) and x > 0 for x in v)
    return _int(v) and v > 0


def positive_numbers(v: Any) -> bool:
    """A positive number, or a non-empty list of them (a sweep)."""
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_num(x) and x > 0 for x in v)
    return _num(v) and v > 0


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h)?\s*", re.IGNORECASE)
_UNIT_S = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str, *, default_unit: str, flag: str) -> float:
    """``"50ms"``, ``"60s"``, ``"2m"`` or a bare number in ``default_unit``, as seconds."""
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise HarnessError(f"{flag} {text!r}: not a duration", f"write e.g. {flag} 50ms, {flag} 60s or {flag} 2m")
    return float(m.group(1)) * _UNIT_S[(m.group(2) or default_unit).lower()]


def parse_list(text: str, kind: type, flag: str) -> tuple:
    """``--batch 1,2,4`` as a tuple of ints (or floats); a stray comma or a word is an error."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            out.append(kind(part))
        except ValueError:
            what = "integer" if kind is int else "number"
            raise HarnessError(f"{flag} {text!r}: {part!r} is not a{'n' if what[0] == 'i' else ''} {what}",
                               f"write {flag} as one {what} or several separated by commas, e.g. {flag} 1,2,4") from None
    check_distinct_levels(flag, out)
    return tuple(out)


def describe_levels(values: Iterable[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
