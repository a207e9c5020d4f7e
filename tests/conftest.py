"""Shared fixtures: where the real assets are, and skips that say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the network: downloads are tested against local servers only.
os.environ.setdefault("HARNESS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    from harness.assets import resolve

    return resolve("pets09-s2l1")


@pytest.fixture(scope="session")
def pets_gt(assets_root: Path) -> Path:
    from harness.assets import resolve

    return resolve("pets09-s2l1", "ground_truth")


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


requires_tf = pytest.mark.skipif(not has_module("tensorflow"), reason="TensorFlow is not installed")
requires_torch = pytest.mark.skipif(not has_module("torch"), reason="PyTorch is not installed")
requires_cv2 = pytest.mark.skipif(not has_module("cv2"), reason="OpenCV is not installed")
