"""What environments cost: a cold build, a warm reuse, and the start-up of a job in another environment
against the same job in the running one (target: under 1 s extra per job).

Run on purpose (``python -m pytest benchmarks/test_env_overhead.py -s``); it builds into a temporary
harness cache with uv's own cache as it is (``HARNESS_BENCH_EMPTY_UV_CACHE=1`` also times a build with an
empty uv cache, i.e. with every download). The environment compared against the running one holds the SAME
OpenCV version, so the difference is the environment (another interpreter, its own site-packages, a clean
process environment), not another framework build. Default and other environment alternate ABBA.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.envs import Ensured, EnvSpec, EnvStore, InterpreterResolver, ensure
from harness.core.jobs import JobSpec
from harness.execution.process import SubprocessExecutor, child_environment
from harness.core.versions import distribution_version

ROUNDS = int(os.environ.get("HARNESS_BENCH_ENV_ROUNDS", "6"))
TARGET_EXTRA_S = 1.0


def _online(name: str, store: EnvStore) -> Ensured:
    """Build with the registry (benchmarks run with HARNESS_OFFLINE=1 otherwise)."""
    before = os.environ.get("HARNESS_OFFLINE")
    os.environ["HARNESS_OFFLINE"] = "0"
    try:
        return ensure(name, store)
    finally:
        if before is None:
            del os.environ["HARNESS_OFFLINE"]
        else:
            os.environ["HARNESS_OFFLINE"] = before


@pytest.fixture(scope="module")
def same_opencv(tmp_path_factory: pytest.TempPathFactory) -> dict:
    version = distribution_version("opencv-python")
    if version is None:
        pytest.skip("opencv-python is not installed here: nothing to compare against")
    store = EnvStore(tmp_path_factory.mktemp("harness-cache") / "envs")
    store.define(EnvSpec.make("same-ocv", [f"opencv-python=={version}"]))
    start = time.perf_counter()
    done = _online("same-ocv", store)
    cold = time.perf_counter() - start
    return {"store": store, "cold_s": cold, "ensured": done, "version": version}


def test_cold_build_and_warm_reuse(same_opencv: dict, tmp_path: Path) -> None:
    store = same_opencv["store"]
    warm = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        assert not ensure("same-ocv", store).built
        warm.append(time.perf_counter() - start)
    record = store.record(store.folder("same-ocv", same_opencv["ensured"].key))
    line = (f"opencv-python=={same_opencv['version']} environment: cold build {same_opencv['cold_s']:.1f} s "
            f"(uv's cache as it was; build record {record.build_s:.1f} s), warm reuse median "
            f"{statistics.median(warm):.2f} s over {ROUNDS} (ensure + the interpreter's hello)")
    if os.environ.get("HARNESS_BENCH_EMPTY_UV_CACHE") == "1":
        os.environ["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
        try:
            other = EnvStore(tmp_path / "envs")
            other.define(EnvSpec.make("empty-uv", [f"opencv-python=={same_opencv['version']}"]))
            start = time.perf_counter()
            _online("empty-uv", other)
            line += f"; with an empty uv cache (everything downloaded) {time.perf_counter() - start:.1f} s"
        finally:
            del os.environ["UV_CACHE_DIR"]
    print(f"\n{line}; load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _hello_s(python: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([python, "-m", "harness.execution.worker", "--hello"], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def test_job_start_up_in_another_environment(same_opencv: dict, tmp_path: Path) -> None:
    store = same_opencv["store"]
    resolver = InterpreterResolver(store)
    start = time.perf_counter()
    interpreter = resolver.resolve("same-ocv")
    resolve_s = time.perf_counter() - start
    executor = SubprocessExecutor(log_dir=tmp_path / "logs", resolver=resolver)
    hello: dict[str, list[float]] = {"default": [], "same-ocv": []}
    job: dict[str, list[float]] = {"default": [], "same-ocv": []}
    try:
        for i in range(ROUNDS):
            for env in (("default", "same-ocv") if i % 2 == 0 else ("same-ocv", "default")):
                python, environ = ((sys.executable, child_environment()) if env == "default"
                                   else (interpreter.python, child_environment(interpreter)))
                hello[env].append(_hello_s(python, environ))
                t0 = time.perf_counter()
                result = executor.run(JobSpec("opencv", "pets09-s2l1", frames=1, warmup=1, env=env,
                                              job_id=f"bench-{env}-{i}"))
                job[env].append(time.perf_counter() - t0)
                assert result.status == "ok", result.cause
    finally:
        executor.close()
    med = {k: (statistics.median(hello[k]), statistics.median(job[k])) for k in hello}
    extra = med["same-ocv"][1] - med["default"][1]
    print(f"\nonce per run for an environment: resolve (ensure + hello + use lock) {resolve_s:.2f} s")
    print(f"{'':<10}{'hello s':>9}{'1-frame job s':>15}   (medians of {ROUNDS}, ABBA)")
    for k, (h, j) in med.items():
        print(f"{k:<10}{h:>9.2f}{j:>15.2f}")
    print(f"extra per job in another environment: {extra:+.2f} s (target < {TARGET_EXTRA_S:g} s)")
    assert extra < TARGET_EXTRA_S
