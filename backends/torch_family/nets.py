"""The pytorch-ssd family's networks in test mode: backbone, extra layers, per-map heads, then softmax and
box decoding against the priors, as the family's ``SSD.forward(is_test=True)`` computes them.

``FamilySSD.forward(x)`` takes ``float32 [N, 3, H, W]`` (already normalized) and returns
``(scores [N, P, C] softmaxed, boxes [N, P, 4] corner x1, y1, x2, y2 normalized, not clipped)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from backends.torch_family import layers as L

CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


@dataclass(frozen=True)
class Tap:
    """Where a head reads the backbone: after ``base_net[:end]``; ``add_on`` indexes ``source_layer_add_ons``
    (applied to the tapped map only: VGG's BatchNorm on conv4_3); ``inside`` = (attribute, n) taps inside
    ``base_net[end]``, after the first n layers of that attribute (MobileNetV2's expansion of block 14)."""

    end: int
    add_on: int | None = None
    inside: tuple[str, int] | None = None


class FamilySSD(nn.Module):
    """One family net. Attribute names are the checkpoints' key prefixes (``base_net``, ``extras``,
    ``classification_headers``, ``regression_headers``, ``source_layer_add_ons``)."""

    def __init__(self, num_classes: int, base_net: nn.Module, taps: list[Tap], extras: nn.ModuleList,
                 classification_headers: nn.ModuleList, regression_headers: nn.ModuleList,
                 priors: np.ndarray, add_ons: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.base_net = base_net
        self.taps = taps
        self.extras = extras
        self.classification_headers = classification_headers
        self.regression_headers = regression_headers
        self.source_layer_add_ons = add_ons if add_ons is not None else nn.ModuleList()
        # not in the state dict (the family computes priors from its config), but moved with .to(device)
        self.register_buffer("priors", torch.tensor(np.asarray(priors, np.float32), device="cpu"),
                             persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps the heads read, in head order."""
        maps: list[torch.Tensor] = []
        start = 0
        layers = list(self.base_net)
        for tap in self.taps:
            for layer in layers[start:tap.end]:
                x = layer(x)
            if tap.inside is not None:
                name, n = tap.inside
                sub = getattr(layers[tap.end], name)
                for layer in sub[:n]:
                    x = layer(x)
                maps.append(x)
                for layer in sub[n:]:
                    x = layer(x)
                start = tap.end + 1
            else:
                maps.append(self.source_layer_add_ons[tap.add_on](x) if tap.add_on is not None else x)
                start = tap.end
        for layer in layers[start:]:
            x = layer(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' logits ``[N, P, C]`` and regression ``[N, P, 4]`` (the family's training-mode output)."""
        confidences, locations = [], []
        for i, feature in enumerate(self.features(x)):
            conf = self.classification_headers[i](feature).permute(0, 2, 3, 1)
            loc = self.regression_headers[i](feature).permute(0, 2, 3, 1)
            confidences.append(conf.reshape(conf.shape[0], -1, self.num_classes))
            locations.append(loc.reshape(loc.shape[0], -1, 4))
        return torch.cat(confidences, 1), torch.cat(locations, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        confidences, locations = self.raw(x)
        scores = torch.softmax(confidences, dim=2)
        priors = self.priors[None]
        centers = locations[..., :2] * CENTER_VARIANCE * priors[..., 2:] + priors[..., :2]
        sizes = torch.exp(locations[..., 2:] * SIZE_VARIANCE) * priors[..., 2:]
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=2)
        return scores, boxes


# backbones -------------------------------------------------------------------------------------------------

def mobilenet_v1() -> nn.Sequential:
    widths = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
              *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
    return nn.Sequential(L.conv_bn(3, 32, 2), *[L.conv_dw(i, o, s) for i, o, s in widths])


def mobilenet_v2(width_mult: float) -> nn.Sequential:
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]
    channels = int(32 * width_mult)
    blocks: list[nn.Module] = [L.conv_bn(3, channels, 2, nn.ReLU6)]
    for t, c, n, s in setting:
        out = int(c * width_mult)
        for i in range(n):
            blocks.append(L.InvertedResidual(channels, out, s if i == 0 else 1, t))
            channels = out
    last = int(1280 * width_mult) if width_mult > 1.0 else 1280
    blocks.append(nn.Sequential(nn.Conv2d(channels, last, 1, 1, 0, bias=False), nn.BatchNorm2d(last), nn.ReLU6()))
    return nn.Sequential(*blocks)


_R, _H = nn.ReLU, L.HardSwish
V3_LARGE = [  # kernel, in, expand, out, activation, SE, stride
    (3, 16, 16, 16, _R, False, 1), (3, 16, 64, 24, _R, False, 2), (3, 24, 72, 24, _R, False, 1),
    (5, 24, 72, 40, _R, True, 2), (5, 40, 120, 40, _R, True, 1), (5, 40, 120, 40, _R, True, 1),
    (3, 40, 240, 80, _H, False, 2), (3, 80, 200, 80, _H, False, 1), (3, 80, 184, 80, _H, False, 1),
    (3, 80, 184, 80, _H, False, 1), (3, 80, 480, 112, _H, True, 1), (3, 112, 672, 112, _H, True, 1),
    (5, 112, 672, 160, _H, True, 1), (5, 160, 672, 160, _H, True, 2), (5, 160, 960, 160, _H, True, 1),
]
V3_SMALL = [
    (3, 16, 16, 16, _R, True, 2), (3, 16, 72, 24, _R, False, 2), (3, 24, 88, 24, _R, False, 1),
    (5, 24, 96, 40, _H, True, 2), (5, 40, 240, 40, _H, True, 1), (5, 40, 240, 40, _H, True, 1),
    (5, 40, 120, 48, _H, True, 1), (5, 48, 144, 48, _H, True, 1), (5, 48, 288, 96, _H, True, 2),
    (5, 96, 576, 96, _H, True, 1), (5, 96, 576, 96, _H, True, 1),
]


def mobilenet_v3(table: list[tuple]) -> nn.Sequential:
    """conv1, bn1, hswish, the bottlenecks, conv2, bn2, hswish: one flat list, as the family's ``features``."""
    last_in = table[-1][3]
    last = 6 * last_in
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), L.HardSwish(),
        *[L.V3Block(*row) for row in table],
        nn.Conv2d(last_in, last, 1, bias=False), nn.BatchNorm2d(last), L.HardSwish(),
    )


def squeezenet_1_1() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        L.Fire(64, 16, 64, 64), L.Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2),
        L.Fire(128, 32, 128, 128), L.Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2),
        L.Fire(256, 48, 192, 192), L.Fire(384, 48, 192, 192), L.Fire(384, 64, 256, 256), L.Fire(512, 64, 256, 256),
    )


def vgg16() -> nn.ModuleList:
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
    mods: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            mods.append(nn.MaxPool2d(2, 2))
        elif v == "C":
            mods.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            mods += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU()]
            channels = int(v)
    mods += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(),
             nn.Conv2d(1024, 1024, 1), nn.ReLU()]
    return nn.ModuleList(mods)


def mb_tiny(rfb: bool) -> nn.Sequential:
    """UltraFace's backbone (base channel 16); the RFB version puts a receptive-field block at position 7."""
    b = 16
    dw = [(b, 2 * b, 1), (2 * b, 2 * b, 2), (2 * b, 2 * b, 1), (2 * b, 4 * b, 2), (4 * b, 4 * b, 1),
          (4 * b, 4 * b, 1), (4 * b, 4 * b, 1), (4 * b, 8 * b, 2), (8 * b, 8 * b, 1), (8 * b, 8 * b, 1),
          (8 * b, 16 * b, 2), (16 * b, 16 * b, 1)]
    blocks: list[nn.Module] = [L.conv_bn(3, b, 2)] + [L.conv_dw(i, o, s) for i, o, s in dw]
    if rfb:
        blocks[7] = L.BasicRFB(4 * b, 4 * b, stride=1, scale=1.0)
    return nn.Sequential(*blocks)


# heads -------------------------------------------------------------------------------------------------------

def _heads(channels: list[int], anchors: list[int], per_box: int, last_plain: bool, lite: bool,
           batch_norm: bool = False, act: type[nn.Module] = nn.ReLU, last_kernel: int = 1) -> nn.ModuleList:
    """One head per map: 3x3 convolutions (SSD) or separable ones (SSD-Lite); the last map's head of an
    SSD-Lite net is a plain convolution."""
    out: list[nn.Module] = []
    for i, (c, k) in enumerate(zip(channels, anchors)):
        if not lite or (last_plain and i == len(channels) - 1):
            kernel = last_kernel if lite else 3
            out.append(nn.Conv2d(c, k * per_box, kernel, padding=kernel // 2))
        else:
            out.append(L.separable(c, k * per_box, 3, 1, 1, batch_norm=batch_norm, act=act))
    return nn.ModuleList(out)


def _both_heads(num_classes: int, channels: list[int], anchors: list[int], **kw: object) -> tuple[nn.ModuleList, nn.ModuleList]:
    return (_heads(channels, anchors, num_classes, **kw),  # type: ignore[arg-type]
            _heads(channels, anchors, 4, **kw))  # type: ignore[arg-type]


def _extras_ssd(pairs: list[tuple[int, int, int]], lite: bool, paddings: list[int] | None = None,
                strides: list[int] | None = None) -> nn.ModuleList:
    """SSD's extra layers: 1x1 reduce + ReLU, then a 3x3 (stride 2) convolution (+ ReLU) or, for SSD-Lite, a
    separable one."""
    mods = []
    for n, (inp, mid, out) in enumerate(pairs):
        pad = paddings[n] if paddings else 1
        stride = strides[n] if strides else 2
        if lite:
            seq = [nn.Conv2d(inp, mid, 1), nn.ReLU(), L.separable(mid, out, 3, stride, pad)]
        else:
            seq = [nn.Conv2d(inp, mid, 1), nn.ReLU(), nn.Conv2d(mid, out, 3, stride, pad), nn.ReLU()]
        mods.append(nn.Sequential(*seq))
    return nn.ModuleList(mods)


# the nets ----------------------------------------------------------------------------------------------------

def build_mb1_ssd(num_classes: int, priors: np.ndarray, lite: bool = False) -> FamilySSD:
    extras = _extras_ssd([(1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)], lite)
    cls, reg = _both_heads(num_classes, [512, 1024, 512, 256, 256, 256], [6] * 6, last_plain=True, lite=lite)
    return FamilySSD(num_classes, mobilenet_v1(), [Tap(12), Tap(14)], extras, cls, reg, priors)


def build_mb2_ssd_lite(num_classes: int, priors: np.ndarray, width_mult: float = 1.0) -> FamilySSD:
    extras = nn.ModuleList([L.InvertedResidual(1280, 512, 2, 0.2), L.InvertedResidual(512, 256, 2, 0.25),
                            L.InvertedResidual(256, 256, 2, 0.5), L.InvertedResidual(256, 64, 2, 0.25)])
    cls, reg = _both_heads(num_classes, [round(576 * width_mult), 1280, 512, 256, 256, 64], [6] * 6,
                           last_plain=True, lite=True, batch_norm=True, act=nn.ReLU6)
    return FamilySSD(num_classes, mobilenet_v2(width_mult), [Tap(14, inside=("conv", 3)), Tap(19)], extras,
                     cls, reg, priors)


def build_mb3_ssd_lite(num_classes: int, priors: np.ndarray, large: bool = True) -> FamilySSD:
    table = V3_LARGE if large else V3_SMALL
    last = 6 * table[-1][3]
    tap_channels = 112 if large else 48
    extras = nn.ModuleList([L.V3Block(3, last, 256, 512, L.HardSwish, False, 2),
                            L.V3Block(3, 512, 128, 256, L.HardSwish, False, 2),
                            L.V3Block(3, 256, 128, 256, L.HardSwish, False, 2),
                            L.V3Block(3, 256, 64, 64, L.HardSwish, False, 2)])
    cls, reg = _both_heads(num_classes, [tap_channels, last, 512, 256, 256, 64], [6] * 6, last_plain=True,
                           lite=True, batch_norm=True, act=nn.ReLU6)
    taps = [Tap(15), Tap(21)] if large else [Tap(11), Tap(17)]
    return FamilySSD(num_classes, mobilenet_v3(table), taps, extras, cls, reg, priors)


def build_sq_ssd_lite(num_classes: int, priors: np.ndarray) -> FamilySSD:
    extras = _extras_ssd([(512, 256, 512), (512, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)],
                         lite=True, paddings=[2, 1, 1, 1, 1])
    cls, reg = _both_heads(num_classes, [512, 512, 512, 256, 256, 256], [6] * 6, last_plain=True, lite=True)
    return FamilySSD(num_classes, squeezenet_1_1(), [Tap(12)], extras, cls, reg, priors)


def build_vgg16_ssd(num_classes: int, priors: np.ndarray) -> FamilySSD:
    base = vgg16()
    extras = _extras_ssd([(1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)], lite=False,
                         paddings=[1, 1, 0, 0], strides=[2, 2, 1, 1])
    cls, reg = _both_heads(num_classes, [512, 1024, 512, 256, 256, 256], [4, 6, 6, 6, 4, 4], last_plain=False,
                           lite=False)
    return FamilySSD(num_classes, base, [Tap(23, add_on=0), Tap(len(base))], extras, cls, reg, priors,
                     add_ons=nn.ModuleList([nn.BatchNorm2d(512)]))


def build_ultraface(num_classes: int, priors: np.ndarray, rfb: bool = False) -> FamilySSD:
    b = 16
    extras = nn.ModuleList([nn.Sequential(nn.Conv2d(16 * b, 4 * b, 1), nn.ReLU(),
                                          L.separable(4 * b, 16 * b, 3, 2, 1), nn.ReLU())])
    cls, reg = _both_heads(num_classes, [4 * b, 8 * b, 16 * b, 16 * b], [3, 2, 2, 3], last_plain=True, lite=True,
                           last_kernel=3)
    return FamilySSD(num_classes, mb_tiny(rfb), [Tap(8), Tap(11), Tap(13)], extras, cls, reg, priors)

