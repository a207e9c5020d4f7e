"""What the machine was doing while a job was measured: a sampler thread in the job's own process.

A latency measured while other processes held the cores, or while the clocks were throttled, describes the
machine's state more than the detector. The monitor records, from the job's start (load and warm-up: the
``before`` sample) and then every :data:`SAMPLE_INTERVAL_S` of the timed part: the CPU time of every process
against this one's (so other processes' share is known without listing them), steal time (a hypervisor
taking the CPUs), the load average and runnable threads, CPU clocks and the governor where readable, thermal
throttle counters where the kernel exposes them, and, for a job on a GPU, NVML's SM clock, temperature,
power, clock-event (throttle) reasons and other processes on that GPU. :mod:`harness.measure.validity` turns what
it saw into ``valid`` and ``validity_notes``.

Everything it reads is optional: a file or counter this machine lacks is left out, never an error, so a
sampler problem never costs a job.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: seconds between samples of the timed part (each costs well under a millisecond of this process's time)
SAMPLE_INTERVAL_S = 0.5

#: NVML clock-event reasons (nvmlClocksEventReason*): the ones that mean the GPU was slowed against its will
GPU_SLOWDOWN_REASONS = {0x8: "hardware slowdown", 0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown",
                        0x80: "hardware power brake"}
GPU_POWER_CAP_REASON = 0x4


@dataclass
class Sample:
    """One interval of ``seconds`` ending ``t`` seconds after the monitor started (CPU use in cores)."""

    t: float
    seconds: float
    busy_cores: float  # every process's CPU time over the interval (user, system, irq...; steal and idle excluded)
    own_cores: float  # this process's (the job's) CPU time over the interval
    steal_cores: float
    load1: float | None
    runnable: int | None  # threads runnable right now (/proc/stat procs_running), this sampler's included
    cpu_mhz_min: float | None
    cpu_mhz_max: float | None
    throttle_events: int | None  # the kernel's cumulative thermal throttle count, all CPUs
    gpu: dict[str, Any] | None = None

    @property
    def other_cores(self) -> float:
        return max(0.0, self.busy_cores - self.own_cores)


@dataclass
class MachineState:
    """What the monitor saw: the machine's size, the load/warm-up interval before the timed part, and the
    samples during it."""

    cpus: int
    before: Sample | None = None
    during: list[Sample] = field(default_factory=list)
    governor: str | None = None
    gpu_name: str | None = None
    errors: list[str] = field(default_factory=list)

    def columns(self) -> dict[str, Any]:
        """The machine-state columns of runs.csv (empty cells where nothing could be read)."""
        d = self.during
        out: dict[str, Any] = {"cpus": self.cpus}
        if self.before is not None:
            out["other_cpu_before"] = round(self.before.other_cores, 3)
            out["load_avg_before"] = None if self.before.load1 is None else round(self.before.load1, 2)
        if d:
            seconds = sum(s.seconds for s in d) or 1.0
            out["other_cpu_mean"] = round(sum(s.other_cores * s.seconds for s in d) / seconds, 3)
            out["other_cpu_max"] = round(max(s.other_cores for s in d), 3)
            out["steal_pct"] = round(100.0 * sum(s.steal_cores * s.seconds for s in d) / seconds / self.cpus, 2)
            loads = [s.load1 for s in d if s.load1 is not None]
            out["load_avg_max"] = round(max(loads), 2) if loads else None
            mhz = [s.cpu_mhz_max for s in d if s.cpu_mhz_max]
            out["cpu_mhz_min"] = round(min(mhz), 1) if mhz else None
            out["cpu_mhz_max"] = round(max(mhz), 1) if mhz else None
            gpu = [s.gpu for s in d if s.gpu]
            if gpu:
                out["gpu_sm_mhz_min"] = min(g.get("sm_mhz", 0) for g in gpu)
                out["gpu_temp_c_max"] = max(g.get("temp_c", 0) for g in gpu)
                out["gpu_power_w_max"] = round(max(g.get("power_w", 0.0) for g in gpu), 1)
        out["governor"] = self.governor
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# readers: each returns None when this machine does not have the thing ------------------------------------

def _procs_running() -> int | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _governor() -> str | None:
    found = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"):
        try:
            found.add(open(path, encoding="ascii").read().strip())
        except OSError:
            continue
    return ",".join(sorted(found)) or None


def _throttle_events() -> int | None:
    total, seen = 0, False
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/*_throttle_count"):
        try:
            total += int(open(path, encoding="ascii").read().strip())
            seen = True
        except (OSError, ValueError):
            continue
    return total if seen else None


class _Gpu:
    """NVML for one GPU index; every call guarded (no driver, no GPU, an old driver: no GPU readings)."""

    def __init__(self, index: int) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(self.handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.pid = os.getpid()

    def read(self) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        out: dict[str, Any] = {}
        for key, call in (("sm_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                          ("sm_max_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
                          ("temp_c", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                          ("power_w", lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0),
                          ("reasons", lambda: _clock_reasons(n, h)),
                          ("other_processes", lambda: sum(p.pid != self.pid for p in
                                                          n.nvmlDeviceGetComputeRunningProcesses(h)))):
            try:
                out[key] = call()
            except Exception:  # noqa: BLE001 - not supported on this GPU or driver
                continue
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _clock_reasons(n: Any, h: Any) -> int:
    getter = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(getter(h))


class MachineMonitor:
    """Start it when the job starts; :meth:`begin_timed` when the timed part starts; :meth:`stop` at its end."""

    def __init__(self, *, gpu_index: int | None = None, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process()
        self.interval_s = interval_s
        self.state = MachineState(cpus=psutil.cpu_count() or os.cpu_count() or 1, governor=_governor())
        self._gpu: _Gpu | None = None
        if gpu_index is not None:
            try:
                self._gpu = _Gpu(gpu_index)
                self.state.gpu_name = self._gpu.name
            except Exception as exc:  # noqa: BLE001 - no NVML here: CPU readings only
                self.state.errors.append(f"NVML: {type(exc).__name__}: {exc}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self._last = self._counters()

    def _counters(self) -> tuple[float, float, float, float]:
        t = self._psutil.cpu_times()
        busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        own = self._proc.cpu_times()
        return time.perf_counter(), busy, own.user + own.system, getattr(t, "steal", 0.0)

    def sample(self) -> Sample:
        """The interval since the last sample."""
        now = self._counters()
        then, self._last = self._last, now
        seconds = max(now[0] - then[0], 1e-9)
        try:
            freqs = [f.current for f in self._psutil.cpu_freq(percpu=True) or [] if f.current]
        except Exception:  # noqa: BLE001 - no frequency readable here
            freqs = []
        try:
            load1: float | None = os.getloadavg()[0]
        except OSError:
            load1 = None
        return Sample(
            t=round(now[0] - self._t0, 3), seconds=round(seconds, 4),
            busy_cores=round((now[1] - then[1]) / seconds, 4), own_cores=round((now[2] - then[2]) / seconds, 4),
            steal_cores=round((now[3] - then[3]) / seconds, 4), load1=load1, runnable=_procs_running(),
            cpu_mhz_min=min(freqs) if freqs else None, cpu_mhz_max=max(freqs) if freqs else None,
            throttle_events=_throttle_events(), gpu=self._gpu.read() if self._gpu else None,
        )

    def begin_timed(self) -> None:
        """The load/warm-up interval becomes ``before``; sampling of the timed part starts."""
        self.state.before = self.sample()
        self._thread = threading.Thread(target=self._run, name="harness-machine-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.state.during.append(self.sample())
            except Exception as exc:  # noqa: BLE001 - the monitor must never cost the job
                self.state.errors.append(f"{type(exc).__name__}: {exc}")
                return

    def stop(self) -> MachineState:
        """The last (partial) interval, then what was seen. Safe to call more than once."""
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            # CPU times tick every 10 ms: a last interval much shorter than the others would be mostly rounding
            if not self.state.during or time.perf_counter() - self._last[0] >= self.interval_s / 4:
                try:
                    self.state.during.append(self.sample())
                except Exception as exc:  # noqa: BLE001
                    self.state.errors.append(f"{type(exc).__name__}: {exc}")
        self._stop.set()
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None
        return self.state
