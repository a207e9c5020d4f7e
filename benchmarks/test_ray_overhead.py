"""What the Ray executor costs against the process executor, and what a second node buys.

Run on purpose: ``python -m pytest benchmarks/test_ray_overhead.py -s`` (a real Ray cluster on 127.0.0.1,
``ray.cluster_utils``, stopped at the end). Three measurements, each printed with the load average:

* **per-job overhead**: the same 1-frame job (the numpy test backend, so the job itself costs almost
  nothing) through a :class:`SubprocessExecutor` and through a :class:`RayExecutor` on a one-node cluster,
  alternating ABBA; the difference of the medians is what the Ray executor adds per job (target < 2 s).
  Starting the cluster is once per run and reported apart;
* **measured latency**: TF1 over the same PETS frames through both executors, alternating ABBA; the
  per-frame medians must agree within :data:`LATENCY_TOLERANCE` (the executor must not change what is
  measured: the job runs in the same worker process on the node);
* **1 vs 2 nodes**: a suite of :data:`SUITE_JOBS` jobs on one node, then on two (one job per node, the
  default): the wall time of the whole suite. The jobs sleep per frame (``delay_s``), so two nodes on this
  2-core machine do not compete for cores; CPU-bound jobs on nodes that share one machine would.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from harness.execution.ray.executor import RayExecutor  # noqa: E402
from harness.core.jobs import JobSpec  # noqa: E402
from harness.execution.process import SubprocessExecutor  # noqa: E402
from tests.helpers.ray_cluster import TestCluster  # noqa: E402

ROUNDS = int(os.environ.get("HARNESS_BENCH_RAY_ROUNDS", "6"))
LATENCY_FRAMES = int(os.environ.get("HARNESS_BENCH_FRAMES", "100"))
LATENCY_ROUNDS = int(os.environ.get("HARNESS_BENCH_RAY_LATENCY_ROUNDS", "4"))
SUITE_JOBS = 8
TARGET_EXTRA_S = 2.0
LATENCY_TOLERANCE = 0.05
FS = "tests.helpers.stand_in_backends:FrameStatsDetector"


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    start = time.perf_counter()
    c = TestCluster({"bench": 1}, head_cpus=2)
    c.start_s = time.perf_counter() - start
    try:
        yield c
    finally:
        c.shutdown()


def _timed(executor, spec: JobSpec) -> tuple[float, object]:
    start = time.perf_counter()
    if isinstance(executor, RayExecutor):
        results: list = []
        executor.run_all([spec], results.append)
        result = results[0]
    else:
        result = executor.run(spec)
    assert result.status == "ok", result.cause
    return time.perf_counter() - start, result


def test_per_job_overhead_and_unchanged_latency(cluster: TestCluster, tmp_path: Path) -> None:
    local = SubprocessExecutor(log_dir=tmp_path / "process")
    start = time.perf_counter()
    on_ray = RayExecutor(log_dir=tmp_path / "ray", notice=lambda t: None)
    connect_s = time.perf_counter() - start
    walls: dict[str, list[float]] = {"process": [], "ray": []}
    latency: dict[str, list[float]] = {"process": [], "ray": []}
    rounds: dict[str, list[float]] = {"process": [], "ray": []}
    try:
        for i in range(ROUNDS):
            for name in (("process", "ray") if i % 2 == 0 else ("ray", "process")):
                ex = local if name == "process" else on_ray
                walls[name].append(_timed(ex, JobSpec(FS, "pets09-s2l1", frames=1, warmup=1,
                                                      job_id=f"one-frame-{name}-{i}"))[0])
        for i in range(LATENCY_ROUNDS):
            for name in (("process", "ray") if i % 2 == 0 else ("ray", "process")):
                ex = local if name == "process" else on_ray
                _, result = _timed(ex, JobSpec("tf1", "pets09-s2l1", frames=LATENCY_FRAMES, warmup=10,
                                               job_id=f"tf1-{name}-{i}"))
                totals = [f["pre_ms"] + f["infer_ms"] + f["post_ms"] for f in result.frames]
                latency[name] += totals
                rounds[name].append(statistics.median(totals))
    finally:
        local.close()
        on_ray.close()
    med = {k: statistics.median(v) for k, v in walls.items()}
    extra = med["ray"] - med["process"]
    p50 = {k: statistics.median(v) for k, v in latency.items()}
    ratio = p50["ray"] / p50["process"]
    print(f"\nRay cluster start (1 node) {cluster.start_s:.1f} s; RayExecutor connect {connect_s:.2f} s")
    print(f"1-frame job, medians of {ROUNDS} (ABBA): process {med['process']:.2f} s, ray {med['ray']:.2f} s: "
          f"{extra:+.2f} s per job (target < {TARGET_EXTRA_S:g} s)")
    print(f"tf1 per-frame p50 over {LATENCY_ROUNDS} x {LATENCY_FRAMES} frames each (ABBA): process "
          f"{p50['process']:.2f} ms, ray {p50['ray']:.2f} ms, ratio {ratio:.3f} (tolerance {LATENCY_TOLERANCE:.0%}); "
          f"per round: process {', '.join(f'{v:.1f}' for v in rounds['process'])}, ray "
          f"{', '.join(f'{v:.1f}' for v in rounds['ray'])} ms; load average {_load()}")
    assert extra < TARGET_EXTRA_S
    assert abs(ratio - 1) <= LATENCY_TOLERANCE


def test_suite_wall_time_on_one_and_two_nodes(cluster: TestCluster, tmp_path: Path) -> None:
    specs = [JobSpec(FS, "pets09-s2l1", frames=20, warmup=1, options={"delay_s": 0.1}, resources={"bench": 1},
                     job_id=f"suite-{i}") for i in range(SUITE_JOBS)]
    walls = []
    for nodes in (1, 2):
        if nodes == 2:
            cluster.add_node({"bench": 1})
        ex = RayExecutor(log_dir=tmp_path / f"n{nodes}", notice=lambda t: None)
        try:
            start = time.perf_counter()
            results: list = []
            ex.run_all(specs, results.append)
            walls.append(time.perf_counter() - start)
        finally:
            ex.close()
        assert [r.status for r in results] == ["ok"] * SUITE_JOBS
        assert len({r.summary["node"] for r in results}) == nodes
    print(f"\n{SUITE_JOBS} jobs of 20 frames x 0.1 s: one node {walls[0]:.1f} s, two nodes {walls[1]:.1f} s "
          f"(ratio {walls[1] / walls[0]:.2f}); load average {_load()}")
    assert walls[1] < walls[0]
