"""Building blocks of the pytorch-ssd family's networks, laid out so that their parameters get the family's
state-dict key names (the checkpoints' key names and shapes are the contract; the modules are written here).

Index positions inside each ``nn.Sequential`` matter: a checkpoint's ``base_net.3.4.running_mean`` names the
BatchNorm at position 4 of block 3, so activations keep their slots even though they have no parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(inp: int, out: int, stride: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """3x3 convolution, BatchNorm, activation (keys ``0``, ``1``)."""
    return nn.Sequential(nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), act())


def conv_dw(inp: int, out: int, stride: int) -> nn.Sequential:
    """MobileNetV1's depthwise-separable block (keys ``0``, ``1``, ``3``, ``4``)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU(),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
    )


def separable(inp: int, out: int, kernel: int = 1, stride: int = 1, padding: int = 0, *,
              batch_norm: bool = False, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """The family's ``SeperableConv2d``: depthwise convolution (with bias), [BatchNorm], activation, 1x1
    convolution. Keys ``0``, ``2`` without BatchNorm; ``0``, ``1``, ``3`` with it (the SSD-Lite heads of the
    MobileNetV2/V3 nets)."""
    layers: list[nn.Module] = [nn.Conv2d(inp, inp, kernel, stride, padding, groups=inp)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(inp))
    layers += [act(), nn.Conv2d(inp, out, 1)]
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block; ``conv`` holds the layers (a tap may stop inside it, after its expansion)."""

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class HardSwish(nn.Module):
    """``x * relu6(x + 3) / 6`` in the family's operation order (kept rather than nn.Hardswish so that the
    float rounding is the reference code's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3) / 6


class HardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3) / 6


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation of the family's MobileNetV3 (keys ``se.1``, ``se.2``, ``se.4``, ``se.5``)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = channels // reduction
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels), HardSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class V3Block(nn.Module):
    """MobileNetV3 bottleneck as the family writes it: expand, depthwise, project, optional SE on the
    projection, and a residual at every stride-1 block (a 1x1 conv + BN shortcut when the widths differ)."""

    def __init__(self, kernel: int, inp: int, expand: int, out: int, act: type[nn.Module], se: bool,
                 stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inp, expand, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(expand)
        self.act = act()
        self.conv2 = nn.Conv2d(expand, expand, kernel, stride, kernel // 2, groups=expand, bias=False)
        self.bn2 = nn.BatchNorm2d(expand)
        self.conv3 = nn.Conv2d(expand, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SqueezeExcite(out) if se else None
        self.shortcut = nn.Sequential()
        if stride == 1 and inp != out:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return out + self.shortcut(x) if self.stride == 1 else out


class Fire(nn.Module):
    """SqueezeNet's fire module (keys ``squeeze``, ``expand1x1``, ``expand3x3``)."""

    def __init__(self, inp: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inp, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class BasicConv(nn.Module):
    """UltraFace RFB's convolution + BatchNorm [+ ReLU] (keys ``conv``, ``bn``)."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inp, out, kernel, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(out, eps=1e-5, momentum=0.01)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class BasicRFB(nn.Module):
    """UltraFace's receptive-field block: three dilated branches, a linear 1x1 merge, a scaled residual."""

    def __init__(self, inp: int, out: int, stride: int = 1, scale: float = 0.1, map_reduce: int = 8,
                 vision: int = 1) -> None:
        super().__init__()
        self.scale = scale
        inter = inp // map_reduce
        self.branch0 = nn.Sequential(
            BasicConv(inp, inter, 1, relu=False), BasicConv(inter, 2 * inter, 3, stride, 1),
            BasicConv(2 * inter, 2 * inter, 3, 1, vision + 1, vision + 1, relu=False))
        self.branch1 = nn.Sequential(
            BasicConv(inp, inter, 1, relu=False), BasicConv(inter, 2 * inter, 3, stride, 1),
            BasicConv(2 * inter, 2 * inter, 3, 1, vision + 2, vision + 2, relu=False))
        self.branch2 = nn.Sequential(
            BasicConv(inp, inter, 1, relu=False), BasicConv(inter, (inter // 2) * 3, 3, 1, 1),
            BasicConv((inter // 2) * 3, 2 * inter, 3, stride, 1),
            BasicConv(2 * inter, 2 * inter, 3, 1, vision + 4, vision + 4, relu=False))
        self.ConvLinear = BasicConv(6 * inter, out, 1, relu=False)
        self.shortcut = BasicConv(inp, out, 1, stride, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ConvLinear(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return F.relu(out * self.scale + self.shortcut(x))
