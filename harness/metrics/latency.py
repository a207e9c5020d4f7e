"""Latency statistics of one job, from per-frame nanosecond timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over the timed frames (warm-up excluded)."""

    frames: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def latency_stats(durations_ns: np.ndarray | list[int]) -> LatencyStats:
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        nan = float("nan")
        return LatencyStats(0, nan, nan, nan, nan, nan, nan, nan, nan)
    p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
    return LatencyStats(
        frames=int(ms.size),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
    )


def fps(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")
