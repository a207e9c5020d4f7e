"""Prior boxes of the pytorch-ssd family, from its configs: SSD300 specs for the MobileNet/SqueezeNet/VGG nets,
UltraFace's min boxes on feature maps that follow from the input size.

All priors are center form (cx, cy, w, h), normalized to the input, clamped to [0, 1], in the order the heads
emit them (feature map by feature map, row by row, then the boxes of one cell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SSDSpec:
    """One feature map of an SSD300 config: cells a side, stride in pixels, min/max box size, aspect ratios."""

    feature_map: int
    shrinkage: int
    min_size: float
    max_size: float
    aspect_ratios: tuple[int, ...]

    @property
    def boxes_per_cell(self) -> int:
        return 2 + 2 * len(self.aspect_ratios)


MOBILENET_SPECS = (  # mobilenetv1_ssd_config (also used by the MobileNetV2/V3 SSD-Lite nets)
    SSDSpec(19, 16, 60, 105, (2, 3)), SSDSpec(10, 32, 105, 150, (2, 3)), SSDSpec(5, 64, 150, 195, (2, 3)),
    SSDSpec(3, 100, 195, 240, (2, 3)), SSDSpec(2, 150, 240, 285, (2, 3)), SSDSpec(1, 300, 285, 330, (2, 3)),
)
SQUEEZENET_SPECS = (SSDSpec(17, 16, 60, 105, (2, 3)),) + MOBILENET_SPECS[1:]
VGG_SPECS = (
    SSDSpec(38, 8, 30, 60, (2,)), SSDSpec(19, 16, 60, 111, (2, 3)), SSDSpec(10, 32, 111, 162, (2, 3)),
    SSDSpec(5, 64, 162, 213, (2, 3)), SSDSpec(3, 100, 213, 264, (2,)), SSDSpec(1, 300, 264, 315, (2,)),
)

#: UltraFace (fd_config): min box sizes in pixels per feature map, the maps at strides 8, 16, 32, 64
ULTRAFACE_MIN_BOXES = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
ULTRAFACE_STRIDES = (8, 16, 32, 64)


def ssd_priors(specs: tuple[SSDSpec, ...], image_size: int = 300) -> np.ndarray:
    """The SSD300 priors of ``specs``: per cell the min square, the sqrt(min*max) square, then for each aspect
    ratio r the min box widened and heightened by sqrt(r). Computed in float64 and stored float32, as the
    family's ``torch.tensor(list of floats)`` does."""
    rows: list[list[float]] = []
    for spec in specs:
        scale = image_size / spec.shrinkage
        small = spec.min_size / image_size
        big = math.sqrt(spec.max_size * spec.min_size) / image_size
        for j in range(spec.feature_map):
            for i in range(spec.feature_map):
                cx, cy = (i + 0.5) / scale, (j + 0.5) / scale
                rows.append([cx, cy, small, small])
                rows.append([cx, cy, big, big])
                for ratio in spec.aspect_ratios:
                    r = math.sqrt(ratio)
                    rows.append([cx, cy, small * r, small / r])
                    rows.append([cx, cy, small / r, small * r])
    return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)


def ultraface_feature_maps(input_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(width, height) of each UltraFace feature map: ceil(size / stride), which is what the net's stride-2,
    padding-1 convolutions produce (320x240 -> 40x30, 20x15, 10x8, 5x4)."""
    w, h = input_size
    return [(math.ceil(w / s), math.ceil(h / s)) for s in ULTRAFACE_STRIDES]


def ultraface_priors(input_size: tuple[int, int]) -> np.ndarray:
    """UltraFace's priors for ``input_size`` = (width, height): each cell's min boxes, the cell centres spaced
    by size / cells (fd_config's shrinkage), sizes normalized by the input's width and height."""
    w, h = input_size
    rows: list[list[float]] = []
    for (fw, fh), boxes in zip(ultraface_feature_maps(input_size), ULTRAFACE_MIN_BOXES):
        shrink_w, shrink_h = w / fw, h / fh
        scale_w, scale_h = w / shrink_w, h / shrink_h
        for j in range(fh):
            for i in range(fw):
                cx, cy = (i + 0.5) / scale_w, (j + 0.5) / scale_h
                for size in boxes:
                    rows.append([cx, cy, size / w, size / h])
    return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)

