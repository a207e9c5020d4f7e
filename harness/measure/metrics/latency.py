"""Latency statistics of one job, from per-frame nanosecond timings.

Percentiles use MLPerf LoadGen's method (:func:`loadgen_percentile`: the sorted sample at index
``int(n * p)``, no interpolation), so a harness p90 and a LoadGen p90 of the same samples are the same number;
the bootstrap intervals beside them say how far a percentile moves when the same run is resampled.
"""

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


def loadgen_percentile(values: np.ndarray | list[float], q: float, *, axis: int | None = None) -> np.ndarray | float:
    """The ``q``-th percentile as MLPerf LoadGen reports it (``results.cc``: the sorted latencies at index
    ``sample_count * percentile``, truncated): always one of the samples, never an interpolation between two.
    ``axis``: per row of a 2-D array (the bootstrap's resamples)."""
    x = np.asarray(values, dtype=np.float64)
    if axis is None:
        x = x.ravel()
        if not x.size:
            return float("nan")
        return float(np.sort(x)[min(x.size - 1, int(x.size * (q / 100.0)))])
    n = x.shape[axis]
    return np.take(np.sort(x, axis=axis), min(n - 1, int(n * (q / 100.0))), axis=axis)


def latency_stats(durations_ns: np.ndarray | list[int]) -> LatencyStats:
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        nan = float("nan")
        return LatencyStats(0, nan, nan, nan, nan, nan, nan, nan, nan)
    p50, p90, p95, p99 = (loadgen_percentile(ms, q) for q in PERCENTILES)
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


# scenarios: how far a percentile can be trusted ------------------------------------------------

#: bootstrap resamples for a percentile's confidence interval (seeded: the same samples give the same interval)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
#: the confidence of the early-stopping upper bound on a percentile (MLPerf LoadGen's early stopping uses 99 %)
BOUND_CONFIDENCE = 0.99


def bootstrap_ci(samples: np.ndarray | list[float], q: float, *, resamples: int = BOOTSTRAP_RESAMPLES,
                 level: float = CI_LEVEL, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The ``level`` percentile-bootstrap interval of the ``q``-th percentile of ``samples`` (NaNs when fewer
    than 2 samples): the spread that resampling the same run gives, so two runs whose intervals overlap did
    not measurably differ."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, 4_000_000 // x.size)  # bound the index matrix's memory for long runs
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        stats[start:start + n] = loadgen_percentile(x[rng.integers(0, x.size, (n, x.size))], q, axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def min_samples_for_bound(q: float, confidence: float = BOUND_CONFIDENCE) -> int:
    """The fewest samples for which the largest one bounds the ``q``-th percentile from above with
    ``confidence`` (1 - (q/100)^n >= confidence): 44 for p90, 459 for p99 at 99 %."""
    p = q / 100.0
    return int(np.ceil(np.log(1.0 - confidence) / np.log(p) - 1e-9))


def percentile_upper_bound(samples: np.ndarray | list[float], q: float,
                           confidence: float = BOUND_CONFIDENCE) -> float:
    """An upper bound on the true ``q``-th percentile that holds with ``confidence``, MLPerf-early-stopping
    style: the k-th smallest sample, for the smallest k with P(Binomial(n, q) < k) >= confidence. NaN when the
    samples are too few for any bound (:func:`min_samples_for_bound`)."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0 or n < min_samples_for_bound(q, confidence):
        return float("nan")
    p = q / 100.0
    k = np.arange(n + 1)
    log_pmf = (_lgamma(n + 1) - _lgamma(k + 1) - _lgamma(n - k + 1) + k * np.log(p) + (n - k) * np.log1p(-p))
    cdf = np.cumsum(np.exp(log_pmf - log_pmf.max())) / np.exp(log_pmf - log_pmf.max()).sum()
    # P(Bin < k) = cdf[k - 1]; the smallest k (1-based order statistic) with that >= confidence
    k_needed = int(np.searchsorted(cdf, confidence) + 1)
    return float(x[min(k_needed, n) - 1])


def _lgamma(values: np.ndarray | int) -> np.ndarray:
    import math

    return np.vectorize(math.lgamma, otypes=[np.float64])(values)
