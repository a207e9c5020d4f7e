"""The torch backend's converter, and what it counts in a model without timing it.

The reference frozen graph's weights become a ``torch.save`` dict for the SSDLite port (:mod:`backends.torch_ssdlite`,
TensorFlow needed only here); a checkpoint the backend reads (the reference port, a pytorch-ssd family state
dict) becomes a ``torch.export`` program (``.pt2``, :mod:`backends.torch_formats`). :func:`model_cost` counts a
module's parameters and one forward pass's MACs. Importing this module imports neither torch nor TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from harness.core.converter import Converter
from harness.core.errors import ModelError
from harness.core.model_facts import ModelCost


class TorchConverter(Converter):
    backend = "torch"
    distributions: ClassVar[tuple[str, ...]] = ("torch", "torchvision")
    #: bump with torch_ssdlite.FORMAT_VERSION (or any change to the import) so cached conversions are redone
    revision = 1
    #: the artifacts were keyed by the runtime class before the converter was split out of it
    cache_identity = "backends.torch_ssd.TorchDetector"
    #: what ``harness convert --backend torch --format F`` writes from a checkpoint (the reference's converted
    #: ``.pt`` when no --model is given)
    model_formats: ClassVar[tuple[str, ...]] = ("pt2",)
    converts_reference_model: ClassVar[bool] = True

    @classmethod
    def convert_reference(cls, graph: Path, out_dir: Path) -> Path:
        """The frozen graph's weights as a ``torch.save`` dict for the SSDLite port (needs TensorFlow)."""
        from backends import torch_ssdlite

        return torch_ssdlite.convert_frozen_graph(Path(graph), Path(out_dir) / "ssdlite_mobilenet_v2.pt")

    @classmethod
    def convert_model(cls, source: Path, out_dir: Path, *, fmt: str = "pt2",
                      options: Mapping[str, Any] | None = None) -> Path:
        """A checkpoint the backend reads (the reference port, a pytorch-ssd family state dict) as a
        ``torch.export`` program, ``out_dir/<name>.pt2``."""
        from backends import torch_formats
        from backends._torch_common import import_torch

        torch = import_torch()
        if fmt != "pt2":
            raise ModelError(f"the torch backend writes no {fmt!r} files", "use --format pt2")
        return torch_formats.export_checkpoint(torch, Path(source), Path(out_dir) / f"{Path(source).stem}.pt2",
                                               options)


def model_cost(torch: Any, module: Any, forward: Callable[[Any], Any], blank: Any, label: str) -> ModelCost:
    """Parameters of ``module`` and the MACs of ``forward(blank)``, counted by PyTorch's own FLOP counter
    (torch.utils.flop_counter: 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(int(p.numel()) for p in module.parameters())
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        forward(blank)
    return ModelCost(params, int(counter.get_total_flops() // 2), label)
