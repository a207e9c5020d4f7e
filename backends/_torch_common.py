"""What the torch runtime and its converters share: importing PyTorch the one safe way."""

from __future__ import annotations

import sys
from typing import Any

from harness.core.errors import BackendUnavailable


def import_torch() -> Any:
    """torch, with torchvision's ops registered; one clear error when either is missing."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]  # see torch_ssdlite.avoid_triton_after_tensorflow
    try:
        import torch
        import torchvision  # noqa: F401  (registers torchvision ops for TorchScript files)
    except ImportError as exc:
        raise BackendUnavailable(f"PyTorch/torchvision is not installed ({exc})",
                                 "pip install -e '.[torch]'  (or pip install torch torchvision)") from exc
    return torch
