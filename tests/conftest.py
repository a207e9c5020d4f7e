"""Shared fixtures: where the real assets are, and skips that say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.helpers")  # imported here, before pytest_plugins would register them
from tests.helpers.parallel import assign, is_worker  # noqa: E402

# Session fixtures that several test modules use are registered here, once: imported into each module
# instead, pytest makes a session fixture once per importing module (a results folder run three times, an
# environment built twice).
pytest_plugins = ("tests.helpers.envs", "tests.helpers.results_folders", "tests.helpers.served",
                  "tests.helpers.default_suite_run", "tests.helpers.parallel")

# Tests never reach the network: downloads are tested against local servers only.
os.environ.setdefault("HARNESS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The README and CI give HARNESS_ASSETS relative to the checkout; tests start harness processes in other
# folders and link assets into temporary ones, so anchor it here once.
if os.environ.get("HARNESS_ASSETS"):
    os.environ["HARNESS_ASSETS"] = os.pathsep.join(
        str(Path(p).resolve()) if p else p for p in os.environ["HARNESS_ASSETS"].split(os.pathsep))


def _assets_root() -> Path | None:
    raw = os.environ.get("HARNESS_ASSETS", "")
    for part in raw.split(os.pathsep):
        if part and Path(part).is_dir():
            return Path(part)
    return None


@pytest.fixture(scope="session")
def assets_root() -> Path:
    root = _assets_root()
    if root is None:
        pytest.skip("HARNESS_ASSETS is not set to the shared assets folder (e.g. ../shared/assets); see README")
    return root


@pytest.fixture(scope="session")
def pets_video(assets_root: Path) -> Path:
    from harness.data.assets import resolve

    return resolve("pets09-s2l1")


@pytest.fixture(scope="session")
def pets_gt(assets_root: Path) -> Path:
    from harness.data.assets import resolve

    return resolve("pets09-s2l1", "ground_truth")


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


requires_tf = pytest.mark.skipif(not has_module("tensorflow"), reason="TensorFlow is not installed")
requires_torch = pytest.mark.skipif(not has_module("torch"), reason="PyTorch is not installed")
requires_cv2 = pytest.mark.skipif(not has_module("cv2"), reason="OpenCV is not installed")


SHARED_FRAMES = 200


@pytest.fixture(scope="session")
def pets_shared_frames(pets_video: Path) -> list:
    """The first 200 PETS frames resized once by the harness to 300x300, as in `shared` preprocessing."""
    from harness.data.preprocess import shared_resize
    from harness.data.video import open_source

    return [shared_resize(f.image, (300, 300)) for f in open_source(pets_video).frames(SHARED_FRAMES)]


@pytest.fixture(scope="session")
def tf1_on_shared_frames(pets_shared_frames: list) -> list:
    """TF1 detections (all scores) on those frames: the reference every other backend must agree with."""
    if not has_module("tensorflow"):
        pytest.skip("TensorFlow is not installed: no TF1 reference")
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector

    det = create_detector("tf1", DetectorConfig())
    det.load()
    try:
        return [det.detect(f)[0] for f in pets_shared_frames]
    finally:
        det.close()


def as_in_a_terminal() -> None:
    """Ctrl-C reaches the CLI as it would in a terminal: a test run started in the background (`pytest &`,
    nohup, some CI runners) passes SIGINT down as ignored, and Python then installs no KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Test tiers --------------------------------------------------------------------------------------------------
# Plain `pytest` runs the fast tier: unit tests and short end-to-end smoke runs, minutes on a 2-core machine.
# The slow tier (environment builds, Ray, a fresh machine, the GPU script's dry run, generated assets, real
# models over many frames) is named here, in one place, by module or by test; `pytest --whole-suite` (what CI
# runs, see README) runs both. Naming test files or `-m` on the command line picks the tests itself.
TESTS = Path(__file__).resolve().parent
#: test files in the slow tier, by path under tests/
SLOW_MODULES = frozenset({
    "envs/test_envs_run_build.py", "envs/test_envs_build.py", "envs/test_envs_run.py", "runs/test_ray.py",
    "project/test_gpu_check_script.py", "backends/test_generated_assets.py", "runs/test_fresh_machine.py",
    "runs/test_default_suite.py", "results/test_notebook.py", "project/test_packaging.py", "runs/test_isolation.py",
    "backends/test_fast_path.py", "results/test_report.py", "backends/test_backend_onnxruntime.py",
    "backends/test_backend_opencv.py", "backends/test_backend_openvino.py", "backends/test_backend_tf1.py",
    "backends/test_backend_tf2.py", "backends/test_backend_tflite.py", "backends/test_backend_torch.py",
    # real servers, LoadGen runs, every family net against its references, environments built for a test,
    # whole runs per scenario, precision variant builds: end-to-end, each a minute or more on 2 cores
    "runs/test_serving.py", "runs/test_serving_grpc.py", "runs/test_serving_env.py", "runs/test_loadgen.py", "backends/test_torch_family.py", "backends/test_family_onnx.py",
    "backends/test_torch_formats.py", "envs/test_envs_transactions.py", "envs/test_envs_opencv51.py",
    "runs/test_no_leftovers.py", "runs/test_resume.py", "runs/test_scenarios.py", "backends/test_precision.py",
    "results/test_results_verify.py", "results/test_ranked_summary.py", "runs/test_feature_combos.py",
    "results/test_row_schema.py", "runs/test_bad_input.py", "results/test_results_folder.py",
    "results/test_compare.py", "project/test_parallel.py",
})
#: single tests of fast files, as "folder/test_file.py::test" (a parametrized test by its name without the
#: parameters); a test marked @pytest.mark.slow in its file is in the slow tier too
SLOW_TESTS = frozenset({
    # the real TF1 run over 100 PETS frames; the rest of test_accuracy is hand-built cases, milliseconds each
    "unit/test_accuracy.py::test_harness_ap_on_a_real_tf1_run_equals_pycocotools_called_directly",
    "unit/test_accuracy.py::test_results_folder_evaluation_and_the_eval_command",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--whole-suite", action="store_true",
                     help="run the slow tier too (environment builds, Ray, long real-model runs): what CI runs")


def _is_slow(item: pytest.Item) -> bool:
    path = Path(str(item.fspath)).resolve()
    module = path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else path.name
    name = getattr(item, "originalname", None) or item.name
    return module in SLOW_MODULES or f"{module}::{name}" in SLOW_TESTS or item.get_closest_marker("slow") is not None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups assigned here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = [item for item in items if _is_slow(item)]
    for item in slow:
        item.add_marker(pytest.mark.slow)
    if is_worker(config):
        assign(config, items)
    chosen = (config.getoption("--whole-suite") or config.option.markexpr
              or config.args_source != pytest.Config.ArgsSource.TESTPATHS)
    if chosen or not slow:
        return
    ids = {id(item) for item in slow}
    config.hook.pytest_deselected(items=slow)
    items[:] = [item for item in items if id(item) not in ids]


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("--whole-suite"):
        return "tiers: the whole suite (fast and slow)"
    if config.option.markexpr or config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return "tiers: the tests named on the command line"
    return "tiers: the fast tier only (the slow tier: pytest --whole-suite)"
