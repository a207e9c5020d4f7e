"""SSDLite-MobileNetV2 in PyTorch, and the import of the reference TF1 frozen graph's weights into it.

Why a port: the reference person detector ships only as a TF1 frozen graph. Running *the same weights*
natively in PyTorch lets the harness compare runtimes, not models. The network is rebuilt from torchvision
parts (``MobileNetV2`` blocks, ``Conv2dNormActivation``, ``ops.batched_nms``) and matches the graph layer for
layer; four details decide whether the numbers agree with TensorFlow to ~1e-5:

* TF ``SAME`` padding of stride-2 convolutions is asymmetric (0 before, 1 after on an even input); PyTorch's
  is symmetric. :class:`TFSameConv2d` pads like TF and keeps ``nn.Conv2d``'s parameter names.
* Batch norm is *not* folded in this frozen graph (76 ``FusedBatchNorm`` ops, eps 1e-3): the import keeps
  gamma/beta/mean/variance, and :func:`fuse_batchnorm` folds them into the convolutions at load time.
* The graph's resize is ``ResizeBilinear(align_corners=False, half_pixel_centers=False)`` (legacy TF), which
  no ``F.interpolate`` mode reproduces: :func:`tf_resize_bilinear` does it with two gathers per axis.
* The postprocessor: box coder scales (10, 10, 5, 5), sigmoid scores without the background column, NMS at
  IoU 0.6 over the unclipped boxes with at most 100 kept, then clipping to the image and dropping boxes left
  with no area.

Conversion (``convert_frozen_graph``) needs TensorFlow; running the converted file needs only torch.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np


def avoid_triton_after_tensorflow() -> None:
    """Importing ``triton`` (torch/torchvision do, to probe for it) after TensorFlow segfaults the process
    (tensorflow 2.21 + triton 3.8: both bundle LLVM). Eager inference never needs triton, so when TensorFlow is
    already loaded and triton is not, mark triton absent; torch then reports "no triton" instead of crashing.
    Importing torchvision first and TensorFlow later is safe and left alone."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]


avoid_triton_after_tensorflow()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models import mobilenet_v2  # noqa: E402
from torchvision.ops import Conv2dNormActivation, batched_nms  # noqa: E402

from backends import _ssd_decode as ssd  # noqa: E402
from harness.core.errors import ModelError  # noqa: E402

FORMAT = "harness-ssdlite-mobilenet-v2"
FORMAT_VERSION = 1
BN_EPS = 1e-3

#: what the reference graph holds (read from its nodes; see docs/backend-torch.md)
DEFAULT_CONFIG: dict[str, Any] = {
    "num_classes": 1,  # without background; the class head has num_classes + 1 outputs per anchor
    "input_size": [300, 300],  # width, height
    "feature_map_sizes": [19, 10, 5, 3, 2, 1],
    "anchors_per_cell": [3, 6, 6, 6, 6, 6],
    "box_coder_scales": [10.0, 10.0, 5.0, 5.0],  # y, x, h, w
    "nms_iou_threshold": 0.6,
    "nms_score_threshold": 1e-8,
    "max_detections": 100,
    "label_offset": 1,  # class column c (0-based, background dropped) is label c + 1
    "anchor_min_scale": 0.2,
    "anchor_max_scale": 0.95,
    "anchor_aspect_ratios": [1.0, 2.0, 0.5, 3.0, 0.3333],
}

EXTRA_LAYERS = [  # TF names of the four extra feature layers after Conv_1: (1x1 depth, 3x3 s2 depth)
    ("layer_19_1_Conv2d_2_1x1_256", "layer_19_2_Conv2d_2_3x3_s2_512", 256, 512),
    ("layer_19_1_Conv2d_3_1x1_128", "layer_19_2_Conv2d_3_3x3_s2_256", 128, 256),
    ("layer_19_1_Conv2d_4_1x1_128", "layer_19_2_Conv2d_4_3x3_s2_256", 128, 256),
    ("layer_19_1_Conv2d_5_1x1_64", "layer_19_2_Conv2d_5_3x3_s2_128", 64, 128),
]
HEAD_IN_CHANNELS = [576, 1280, 512, 256, 256, 128]
TAP_BLOCK = 14  # torchvision features[14] == TF expanded_conv_13: its expansion output feeds BoxPredictor_0


class TFSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` that pads like TensorFlow's ``SAME`` (extra row/column at the bottom/right).

    A subclass rather than a wrapper so the parameter names (and so the state-dict keys) stay those of
    torchvision's blocks; the padding is computed from the input size, so it also scripts and traces.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2], x.shape[-1]
        kh, kw = self.weight.shape[-2], self.weight.shape[-1]
        sh, sw = self.stride[0], self.stride[1]
        pad_h = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pad_w = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return self._conv_forward(x, self.weight, self.bias)


def _tf_same_padding(module: nn.Module) -> nn.Module:
    """Swap every strided convolution for a :class:`TFSameConv2d` with the same parameters."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.stride != (1, 1):
            conv = TFSameConv2d(
                child.in_channels, child.out_channels, child.kernel_size, child.stride, padding=0,
                groups=child.groups, bias=child.bias is not None,
            )
            setattr(module, name, conv)
        else:
            _tf_same_padding(child)
    return module


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Module:
    norm = functools.partial(nn.BatchNorm2d, eps=BN_EPS)
    block = Conv2dNormActivation(cin, cout, kernel, stride, groups=groups, norm_layer=norm,
                                 activation_layer=nn.ReLU6)
    return _tf_same_padding(block)


class SSDLiteMobileNetV2(nn.Module):
    """The network of the reference graph: input ``float[N, 3, 300, 300]`` RGB scaled to [-1, 1].

    ``forward`` returns ``(boxes, scores)``: ``boxes float[N, A, 4]`` decoded x1, y1, x2, y2 normalized to the
    input (not clipped), ``scores float[N, A, num_classes]`` sigmoid scores without the background column. NMS is
    :func:`postprocess` (kept out of ``forward`` so exported TorchScript stays a plain tensor function).
    """

    __jit_ignored_attributes__ = ["config"]

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        self.config = cfg
        self.num_classes = int(cfg["num_classes"])
        features = mobilenet_v2(weights=None, norm_layer=functools.partial(nn.BatchNorm2d, eps=BN_EPS)).features
        _tf_same_padding(features)
        self.backbone = nn.Sequential(*features[:TAP_BLOCK])  # Conv .. expanded_conv_12
        self.tap_block = features[TAP_BLOCK]  # expanded_conv_13 (expand | depthwise s2 | project | bn)
        self.backbone_tail = nn.Sequential(*features[TAP_BLOCK + 1:])  # expanded_conv_14 .. Conv_1
        extras = []
        cin = 1280
        for _, _, mid, out in EXTRA_LAYERS:
            extras.append(nn.Sequential(_conv_bn(cin, mid), _conv_bn(mid, mid, 3, 2, groups=mid), _conv_bn(mid, out)))
            cin = out
        self.extras = nn.ModuleList(extras)
        anchors_per_cell = [int(a) for a in cfg["anchors_per_cell"]]
        self.box_heads = nn.ModuleList(
            nn.Sequential(_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, a * 4, 1))
            for c, a in zip(HEAD_IN_CHANNELS, anchors_per_cell)
        )
        self.class_heads = nn.ModuleList(
            nn.Sequential(_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, a * (self.num_classes + 1), 1))
            for c, a in zip(HEAD_IN_CHANNELS, anchors_per_cell)
        )
        anchors = anchors_for(cfg)  # replaced by the graph's own anchor tensor when converted weights load
        self.register_buffer("anchors", torch.from_numpy(anchors))  # [A, 4] ymin, xmin, ymax, xmax
        scales = torch.tensor([float(s) for s in cfg["box_coder_scales"]], dtype=torch.float32)
        self.register_buffer("box_coder_scales", scales, persistent=False)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.backbone(x)
        tap = self.tap_block.conv[0](x)  # layer_15/expansion_output: 576 x 19 x 19
        x = self.tap_block.conv[1](tap)
        x = self.tap_block.conv[2](x)
        x = self.tap_block.conv[3](x)
        x = self.backbone_tail(x)  # layer_19 (Conv_1): 1280 x 10 x 10
        maps = [tap, x]
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.feature_maps(images)
        n = images.shape[0]
        encodings: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        for i, (box_head, class_head) in enumerate(zip(self.box_heads, self.class_heads)):
            # NCHW -> NHWC -> [N, H*W*A, k]: the anchor order of TF's reshape (y, x, anchor)
            encodings.append(box_head(maps[i]).permute(0, 2, 3, 1).reshape(n, -1, 4))
            logits.append(class_head(maps[i]).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1))
        boxes = decode_boxes(torch.cat(encodings, 1), self.anchors, self.box_coder_scales)
        scores = torch.sigmoid(torch.cat(logits, 1))[:, :, 1:]
        return boxes, scores


def decode_boxes(rel_codes: torch.Tensor, anchors: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The torch twin of :func:`backends._ssd_decode.decode_boxes` (``order="yxhw"``), kept because the port
    decodes on its own device inside ``forward`` (and TorchScript must compile it): codes (ty, tx, th, tw) on
    ymin, xmin, ymax, xmax anchors -> x1, y1, x2, y2 boxes. Tested equal to the numpy decoder."""
    ya = (anchors[:, 0] + anchors[:, 2]) / 2
    xa = (anchors[:, 1] + anchors[:, 3]) / 2
    ha = anchors[:, 2] - anchors[:, 0]
    wa = anchors[:, 3] - anchors[:, 1]
    ty = rel_codes[..., 0] / scales[0]
    tx = rel_codes[..., 1] / scales[1]
    th = rel_codes[..., 2] / scales[2]
    tw = rel_codes[..., 3] / scales[3]
    w = torch.exp(tw) * wa
    h = torch.exp(th) * ha
    yc = ty * ha + ya
    xc = tx * wa + xa
    return torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], dim=-1)


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    iou_threshold: float = 0.6,
    score_threshold: float = 1e-8,
    max_detections: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The graph's postprocessor for one image: per-class NMS on unclipped boxes, keep the best
    ``max_detections``, clip to [0, 1], drop boxes with no area. Returns xyxy normalized boxes, scores,
    0-based class columns, sorted by score; everything stays on the input's device."""
    num_classes = scores.shape[-1]
    flat_scores = scores.reshape(-1)
    class_idx = torch.arange(num_classes, device=scores.device).repeat(boxes.shape[0])
    flat_boxes = boxes.repeat_interleave(num_classes, dim=0) if num_classes > 1 else boxes
    keep = flat_scores > score_threshold
    flat_boxes, flat_scores, class_idx = flat_boxes[keep], flat_scores[keep], class_idx[keep]
    kept = batched_nms(flat_boxes, flat_scores, class_idx, iou_threshold)[:max_detections]
    out_boxes = flat_boxes[kept].clamp(0.0, 1.0)
    area_ok = (out_boxes[:, 2] > out_boxes[:, 0]) & (out_boxes[:, 3] > out_boxes[:, 1])
    return out_boxes[area_ok], flat_scores[kept][area_ok], class_idx[kept][area_ok]


def tf_resize_bilinear(images: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """TF1 ``ResizeBilinear(align_corners=False, half_pixel_centers=False)`` on ``float[N, C, H, W]``.

    Source coordinate = destination index * (in / out), no half-pixel shift (``F.interpolate`` always shifts
    by half a pixel when ``align_corners=False``, which moves boxes by up to a pixel and changes scores).
    """
    in_h, in_w = images.shape[-2], images.shape[-1]
    out_h, out_w = size_hw
    if (in_h, in_w) == (out_h, out_w):
        return images
    device = images.device

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, device=device, dtype=torch.float32) * (n_in / n_out)
        lo = src.floor().clamp(max=n_in - 1)
        frac = (src - lo).to(images.dtype)
        lo_i = lo.long()
        return lo_i, (lo_i + 1).clamp(max=n_in - 1), frac

    y0, y1, fy = axis(in_h, out_h)
    x0, x1, fx = axis(in_w, out_w)
    top = images.index_select(-2, y0)
    bottom = images.index_select(-2, y1)
    rows = top + (bottom - top) * fy.view(-1, 1)
    left = rows.index_select(-1, x0)
    right = rows.index_select(-1, x1)
    return left + (right - left) * fx


def anchors_for(config: dict[str, Any] | None = None) -> np.ndarray:
    """The port's anchors from its config, made by the one OD API anchor generator
    (:func:`backends._ssd_decode.ssd_anchors`; reduce_boxes_in_lowest_layer, interpolated scale 1.0, square
    feature maps): ``float32[A, 4]`` ymin, xmin, ymax, xmax normalized, in (y, x, anchor) order."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    sizes = [int(v) for v in cfg["feature_map_sizes"]]
    spec = ssd.SsdAnchorSpec(
        num_layers=len(sizes),
        min_scale=float(cfg["anchor_min_scale"]),
        max_scale=float(cfg["anchor_max_scale"]),
        aspect_ratios=tuple(float(a) for a in cfg["anchor_aspect_ratios"]),
    )
    return ssd.ssd_anchors(spec, [(size, size) for size in sizes])


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of torchvision's blocks into the convolution (eval only):
    one fewer pass over each activation, same results to float rounding."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name_a, a), (name_b, b) in zip(children, children[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    fused = fuse_conv_bn_eval(a.eval(), b.eval())
                    if isinstance(a, TFSameConv2d):
                        fused.__class__ = TFSameConv2d
                    setattr(module, name_a, fused)
                    setattr(module, name_b, nn.Identity())
    return model


# weight import from the frozen graph ------------------------------------------------------------------------

def _tf_param_map(model: SSDLiteMobileNetV2) -> dict[str, str]:
    """state-dict key -> TF node name of the constant that holds it."""
    mapping: dict[str, str] = {}

    def conv_bn(prefix: str, tf_scope: str, depthwise: bool = False) -> None:
        mapping[f"{prefix}.0.weight"] = f"{tf_scope}/{'depthwise_weights' if depthwise else 'weights'}"
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            mapping[f"{prefix}.1.{ours}"] = f"{tf_scope}/BatchNorm/{theirs}"

    def project(conv_key: str, bn_key: str, tf_scope: str) -> None:
        mapping[f"{conv_key}.weight"] = f"{tf_scope}/weights"
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            mapping[f"{bn_key}.{ours}"] = f"{tf_scope}/BatchNorm/{theirs}"

    fe = "FeatureExtractor/MobilenetV2"
    blocks: list[tuple[str, nn.Module]] = [(f"backbone.{i}", m) for i, m in enumerate(model.backbone)]
    blocks.append(("tap_block", model.tap_block))
    blocks += [(f"backbone_tail.{i}", m) for i, m in enumerate(model.backbone_tail)]
    for index, (key, block) in enumerate(blocks):
        if index == 0:
            conv_bn(key, f"{fe}/Conv")
        elif index == len(blocks) - 1:
            conv_bn(key, f"{fe}/Conv_1")
        else:
            scope = f"{fe}/expanded_conv" + ("" if index == 1 else f"_{index - 1}")
            if index == 1:  # expand ratio 1: depthwise | project | bn
                conv_bn(f"{key}.conv.0", f"{scope}/depthwise", depthwise=True)
                project(f"{key}.conv.1", f"{key}.conv.2", f"{scope}/project")
            else:
                conv_bn(f"{key}.conv.0", f"{scope}/expand")
                conv_bn(f"{key}.conv.1", f"{scope}/depthwise", depthwise=True)
                project(f"{key}.conv.2", f"{key}.conv.3", f"{scope}/project")
    for i, (one, three, _, _) in enumerate(EXTRA_LAYERS):
        conv_bn(f"extras.{i}.0", f"{fe}/{one}")
        conv_bn(f"extras.{i}.1", f"{fe}/{three}_depthwise", depthwise=True)
        conv_bn(f"extras.{i}.2", f"{fe}/{three}")
    for i in range(len(HEAD_IN_CHANNELS)):
        for head, tf_head in (("box_heads", "BoxEncodingPredictor"), ("class_heads", "ClassPredictor")):
            conv_bn(f"{head}.{i}.0", f"BoxPredictor_{i}/{tf_head}_depthwise", depthwise=True)
            mapping[f"{head}.{i}.1.weight"] = f"BoxPredictor_{i}/{tf_head}/weights"
            mapping[f"{head}.{i}.1.bias"] = f"BoxPredictor_{i}/{tf_head}/biases"
    return mapping


def _to_torch_layout(value: np.ndarray, tf_name: str) -> np.ndarray:
    if value.ndim == 4:
        if tf_name.endswith("depthwise_weights"):  # [kh, kw, C, 1] -> [C, 1, kh, kw]
            return value.transpose(2, 3, 0, 1)
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    return value


def convert_frozen_graph(graph: Path, out_file: Path) -> Path:
    """Read the frozen graph's constants with TensorFlow and write a plain ``torch.save`` dict:
    ``{"format", "version", "config", "state_dict", "source_sha256"}``; the anchors are a buffer in the
    state dict, taken from the graph's own anchor tensor (``Concatenate/concat``) rather than recomputed."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from backends._tf_common import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.python.framework import tensor_util

    from harness.data.assets import sha256_of

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(graph).read_bytes())
    except Exception as exc:
        raise ModelError(f"{graph} is not a TensorFlow frozen graph: {exc}",
                         "give the SSDLite-MobileNetV2 frozen_inference_graph.pb of the OD API") from exc
    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    config = dict(DEFAULT_CONFIG)
    cls_w = consts.get("BoxPredictor_0/ClassPredictor/weights")
    if cls_w is None:
        raise ModelError(f"{graph} has no BoxPredictor_0/ClassPredictor: not an SSDLite-MobileNetV2 OD API graph",
                         "the torch port covers ssdlite_mobilenet_v2 graphs only; run others with --backend tf1")
    config["num_classes"] = int(tensor_util.MakeNdarray(cls_w.attr["value"].tensor).shape[-1]) // 3 - 1
    model = SSDLiteMobileNetV2(config)
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, tf_name in _tf_param_map(model).items():
        node = consts.get(tf_name)
        if node is None:
            raise ModelError(f"{graph}: constant {tf_name} is missing", "is this an ssdlite_mobilenet_v2 graph?")
        value = _to_torch_layout(tensor_util.MakeNdarray(node.attr["value"].tensor), tf_name)
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelError(f"{graph}: {tf_name} has shape {value.shape}, the port expects {tuple(expected[key].shape)}",
                             "the graph's architecture differs from ssdlite_mobilenet_v2 (depth multiplier 1)")
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    for key, tensor in expected.items():  # BN step counters: not in a frozen graph
        state.setdefault(key, tensor)

    imported = tf.Graph()
    with imported.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=imported) as sess:
        anchors = sess.run("Concatenate/concat:0")
    if anchors.shape != tuple(expected["anchors"].shape):
        raise ModelError(f"{graph}: anchors of shape {anchors.shape}, expected {tuple(expected['anchors'].shape)}",
                         "the graph's anchor layout differs from the standard ssdlite_mobilenet_v2 one")
    state["anchors"] = torch.from_numpy(anchors.astype(np.float32))
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": config, "state_dict": state,
               "source_sha256": sha256_of(Path(graph))}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out_file)
    return out_file


def is_converted_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def model_from_checkpoint(payload: dict[str, Any], where: str) -> SSDLiteMobileNetV2:
    """Build the port from a converted file's payload; a mismatch is a :class:`ModelError`."""
    if int(payload.get("version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{where} was written by a newer converter (version {payload.get('version')})",
                         "upgrade detector-harness, or convert the graph again with this version")
    model = SSDLiteMobileNetV2(payload.get("config") or {})
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{where}: the weights don't fit the SSDLite-MobileNetV2 port: {exc}",
                         "convert the frozen graph again (harness convert --backend torch)") from exc
    return model.eval()


def export_torchscript(model: SSDLiteMobileNetV2, path: Path, *, method: str = "script") -> Path:
    """Save the port as TorchScript (``script`` or ``trace``) with its config beside it in the archive, so
    that the torch backend runs the file with the same pre/postprocessing."""
    import json

    model = model.eval()
    w, h = model.config["input_size"]
    if method == "trace":
        with torch.inference_mode(False), torch.no_grad():
            scripted = torch.jit.trace(model, torch.zeros(1, 3, int(h), int(w)))
    elif method == "script":
        scripted = torch.jit.script(model)
    else:
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    torch.jit.save(scripted, str(path), _extra_files={"harness.json": json.dumps({"format": FORMAT,
                                                                                     "config": model.config})})
    return path
