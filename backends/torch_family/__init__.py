"""The qfgaohao/pytorch-ssd family (and dusty-nv's Jetson fork, and UltraFace) natively in PyTorch.

The nets are written in this project; what they compute follows the family's code, and the checkpoints' key
names and shapes are the contract. Archs: ``mb1-ssd``, ``mb1-ssd-lite``, ``mb2-ssd-lite`` (any width
multiplier), ``mb3-large-ssd-lite``, ``mb3-small-ssd-lite``, ``sq-ssd-lite``, ``vgg16-ssd``,
``ultraface-slim``, ``ultraface-rfb``.

Public interface (other backends and converters call exactly this)::

    from backends.torch_family import load_family
    model = load_family(state_dict, arch=None, input_size=None, labels=None)

``load_family(state_dict: dict, *, arch: str | None = None, input_size: tuple[int, int] | None = None,
labels: list[str] | None = None) -> FamilyModel`` builds the net the state dict holds (``arch`` forces one,
else it is told from the keys and shapes), loads the weights strictly and checks that the net's feature maps
fit its priors at ``input_size`` (``(w, h)``; SSD300 nets: 300x300 only; UltraFace: any size, default
320x240). ``labels`` (index 0 the background) must have as many names as the heads have classes. Every
problem is one :class:`harness.core.errors.ModelError` with a fix. (``width_mult=`` may also be given for
mb2-ssd-lite; by default it is read from the weights.)

:class:`FamilyModel` fields:

* ``net``: ``torch.nn.Module`` in eval (test) mode on the CPU: ``forward(x float32 [N, 3, H, W])`` ->
  ``(scores [N, P, C] softmaxed, boxes [N, P, 4] corner x1, y1, x2, y2 normalized, not clipped)``;
  ``net.raw(x)`` gives the heads' logits and box regressions before softmax and decoding.
* ``arch`` (str), ``input_size`` ((w, h)), ``mean`` and ``std`` (per-channel RGB floats: the input is
  ``(rgb - mean) / std`` after resizing the uint8 RGB image with ``cv2.resize`` (bilinear)),
* ``priors`` (numpy float32 ``[P, 4]`` cx, cy, w, h normalized, clamped to [0, 1], in output order),
* ``labels`` (list[str], index 0 the background), ``iou_threshold`` (the config's NMS IoU),
  ``candidate_size`` (200: the Predictor's candidates per class before NMS).

Helpers: :func:`detect_arch`, :func:`read_labels`, :func:`labels_beside`, :func:`label_map_for`,
:func:`preprocess_rgb` and :func:`predict` (the family Predictor's per-class hard NMS, numpy).
"""

from __future__ import annotations

from backends.torch_family.labels import label_map_for
from backends.torch_family.loader import (ARCHS, FamilyModel, detect_arch, labels_beside, load_family, parse_size,
                                          read_labels)
from backends.torch_family.nms import hard_nms, predict
from backends.torch_family.preprocess import preprocess_rgb

__all__ = ["ARCHS", "FamilyModel", "detect_arch", "hard_nms", "label_map_for", "labels_beside", "load_family",
           "parse_size", "predict", "preprocess_rgb", "read_labels"]
