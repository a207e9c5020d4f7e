"""``py:`` factories the tests name (``--model py:tests.helpers.pymodel_factories:NAME``): a good one for each
output convention and one for every way a factory can be wrong."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.core.pymodel import PythonModel


def reference_port(weights: str, **opts: Any) -> PythonModel:
    """The reference SSDLite port built from its converted ``.pt``, as user code would build its own class."""
    from backends.torch_ssdlite import model_from_checkpoint

    net = model_from_checkpoint(torch.load(weights, map_location="cpu", weights_only=True), weights)
    return PythonModel(module=net, output="ssdlite", input_size=(300, 300), labels=["person"])



def tiny_family(seed: str = "0", **opts: Any) -> PythonModel:
    """A small network with the pytorch-ssd family's test-mode outputs: softmaxed scores [N, P, 3] and corner
    boxes [N, P, 4] decoded from fixed priors; outputs depend on the image."""
    return PythonModel(module=make_tiny_family(int(seed)), output="family", input_size=(64, 48),
                       labels=["BACKGROUND", "person", "car"], iou_threshold=0.45)


class TinyFamilyNet(nn.Module):
    """A small network with the pytorch-ssd family's test-mode outputs: softmaxed scores [N, P, 3] and corner
    boxes [N, P, 4] decoded from fixed priors (variances 0.1 / 0.2); outputs depend on the image."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.cls = nn.Conv2d(16, 2 * 3, 3, 1, 1)
        self.reg = nn.Conv2d(16, 2 * 4, 3, 1, 1)
        ys, xs = torch.meshgrid(torch.arange(12), torch.arange(16), indexing="ij")
        cx, cy = (xs.flatten() + 0.5) / 16, (ys.flatten() + 0.5) / 12
        priors = [torch.stack([cx, cy, torch.full_like(cx, s), torch.full_like(cx, s * 1.5)], 1) for s in (0.2, 0.35)]
        self.register_buffer("priors", torch.stack(priors, 1).reshape(-1, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        n = x.shape[0]
        scores = torch.softmax(self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, 3), dim=2)
        loc = self.reg(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        centers = loc[..., :2] * 0.1 * self.priors[:, 2:] + self.priors[:, :2]
        sizes = torch.exp(loc[..., 2:] * 0.2) * self.priors[:, 2:]
        return scores, torch.cat([centers - sizes / 2, centers + sizes / 2], 2)


def make_tiny_family(seed: int = 0) -> TinyFamilyNet:
    return TinyFamilyNet(seed).eval()


def as_dict(**opts: Any) -> dict[str, Any]:
    return {"module": make_tiny_family(0), "output": "family", "input_size": [64, 48]}


def raises(**opts: Any) -> PythonModel:
    raise FileNotFoundError("checkpoint.pth not found")


def wrong_type(**opts: Any) -> Any:
    return make_tiny_family(0)  # the bare module: the harness cannot know its input or outputs


def lacks_output(**opts: Any) -> dict[str, Any]:
    return {"module": make_tiny_family(0), "input_size": (64, 48)}


def lacks_input_size(**opts: Any) -> PythonModel:
    return PythonModel(module=make_tiny_family(0), output="family")


def not_a_module(**opts: Any) -> PythonModel:
    return PythonModel(module="net.pth", output="family", input_size=(64, 48))


def unknown_output(**opts: Any) -> PythonModel:
    return PythonModel(module=make_tiny_family(0), output="yolo", input_size=(64, 48))


NOT_CALLABLE = 3
