"""What an Object Detection API SSD frozen graph says about itself: anchors, box coder, score converter, NMS.

A TF1 OD API export carries its whole post-processing inside the graph, so nothing else (no
``pipeline.config``, which the reference package does not ship) is needed to describe it: the box coder's
scales and the NMS settings are constants of ``Postprocessor/``, the score converter is the op behind
``Postprocessor/convert_scores``, and the anchors are the value of ``Concatenate/concat`` for one run on a
blank image. From the anchors the ``ssd_anchor_generator`` parameters are recovered and checked by
regenerating every anchor with :func:`backends._ssd_decode.ssd_anchors`: a graph whose anchors are not such
a grid is refused rather than described approximately.

The generated files that need these settings (the OpenCV text graph, a ``pipeline.config``) are made from
:class:`SsdGraphSettings`; this module also writes the ``pipeline.config``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends._ssd_decode import SsdAnchorSpec, ssd_anchors
from harness.core.errors import ModelError

#: generated-file revision: bump when the output of :func:`write_pipeline_config` changes
GENERATOR_REVISION = 1

ANCHORS = "Concatenate/concat"
SCORES = "Postprocessor/convert_scores"
DECODE = "Postprocessor/Decode/truediv{}/y"  # ty / y_scale, tx / x_scale, th / h_scale, tw / w_scale
NMS = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"
PREDICTOR = re.compile(r"^BoxPredictor_(\d+)/(BoxEncodingPredictor|ClassPredictor)/BiasAdd$")
#: the largest anchor difference (normalized coordinates) a recovered anchor spec may leave
ANCHOR_TOLERANCE = 1e-5


@dataclass(frozen=True)
class SsdGraphSettings:
    """Everything an OD API SSD graph fixes about turning its two heads into detections."""

    input_size: tuple[int, int]  # (width, height) the graph resizes to
    num_classes: int  # without the background class
    layers: int
    feature_maps: tuple[tuple[int, int], ...]  # (height, width) per layer
    anchors_per_cell: tuple[int, ...]
    anchor_spec: SsdAnchorSpec
    anchor_error: float  # max |anchors regenerated from anchor_spec - the graph's anchors|
    box_scales: tuple[float, float, float, float]  # y, x, h, w (faster_rcnn_box_coder)
    score_converter: str  # sigmoid | softmax | identity
    logit_scale: float
    score_threshold: float
    iou_threshold: float
    max_per_class: int
    max_total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _const(tf: Any, nodes: dict[str, Any], name: str) -> np.ndarray:
    node = nodes.get(name)
    if node is None or node.op != "Const":
        raise ModelError(f"the graph has no constant {name}: it is not a TF1 Object Detection API SSD export "
                         "this reader knows", "give the settings by hand (a pipeline.config) for this graph")
    return tf.make_ndarray(node.attr["value"].tensor)


def _scalar(tf: Any, nodes: dict[str, Any], name: str) -> float:
    return float(np.asarray(_const(tf, nodes, name)).reshape(-1)[0])


def _run_once(tf: Any, graph_def: Any, layers: int) -> tuple[np.ndarray, list[tuple[int, ...]], tuple[int, int]]:
    """Anchors, the box-encoding heads' shapes and the resized input's size, from one run on a blank image.

    Runs on the CPU only: describing a graph must not take a GPU from the jobs.
    """
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    fetches = [f"{ANCHORS}:0", "Preprocessor/sub:0"] + [
        f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd:0" for i in range(layers)]
    config = tf.compat.v1.ConfigProto(device_count={"GPU": 0}, intra_op_parallelism_threads=1,
                                      inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        try:
            out = sess.run(fetches, {"image_tensor:0": np.zeros((1, 300, 300, 3), np.uint8)})
        except KeyError as exc:
            raise ModelError(f"the graph lacks a tensor an OD API SSD has: {exc}",
                             "give a TF1 Object Detection API SSD frozen graph") from exc
    anchors, pre, heads = out[0], out[1], out[2:]
    return np.asarray(anchors).reshape(-1, 4), [tuple(h.shape) for h in heads], (int(pre.shape[2]), int(pre.shape[1]))


def _nice(value: float) -> float:
    """The short decimal a person wrote in the config (0.95, 0.3333) for a float32-rounded value."""
    return round(float(value), 4)


def fit_anchor_spec(anchors: np.ndarray, feature_maps: list[tuple[int, int]],
                    per_cell: list[int]) -> tuple[SsdAnchorSpec, float]:
    """Recover ``ssd_anchor_generator`` parameters from a graph's anchors (yxyx normalized, OD API order).

    Every anchor's scale is sqrt(w*h) and its aspect ratio w/h; the first cell of each layer holds the
    layer's box specs. The recovered spec is accepted only if it regenerates every anchor.
    """
    layers = len(feature_maps)
    starts = np.cumsum([0] + [h * w * k for (h, w), k in zip(feature_maps, per_cell)])
    if starts[-1] != len(anchors):
        raise ModelError(f"the graph has {len(anchors)} anchors but its heads predict {starts[-1]} boxes",
                         "the anchors do not belong to these heads: give a pipeline.config for this graph")
    cells = []
    for i in range(layers):
        first = anchors[starts[i]: starts[i] + per_cell[i]].astype(np.float64)
        h, w = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
        cells.append((np.sqrt(h * w), w / h))
    s0, r0 = cells[0]
    reduce = bool(per_cell[0] == 3 and abs(s0[0] - 0.1) < 1e-4 and abs(r0[0] - 1.0) < 1e-4)
    min_scale = s0[1] if reduce else s0[0]
    upper = cells[1] if layers > 1 else cells[0]
    interpolated = layers > 1 and per_cell[-1] > 1 and abs(upper[0][-1] - upper[0][0]) > 1e-6
    ratios = upper[1][:-1] if interpolated else upper[1]
    max_scale = cells[-1][0][0]
    candidates = []
    for rounder in (_nice, float):
        candidates.append(SsdAnchorSpec(
            num_layers=layers,
            min_scale=rounder(min_scale),
            max_scale=rounder(max_scale),
            aspect_ratios=tuple(rounder(r) for r in ratios),
            interpolated_scale_aspect_ratio=rounder(upper[1][-1]) if interpolated else 0.0,
            reduce_boxes_in_lowest_layer=reduce,
        ))
    best: tuple[SsdAnchorSpec, float] | None = None
    for spec in candidates:
        try:
            error = float(np.abs(ssd_anchors(spec, feature_maps) - anchors).max())
        except ValueError:
            continue
        if best is None or error < best[1]:
            best = (spec, error)
        if error <= ANCHOR_TOLERANCE:
            return spec, error
    raise ModelError(
        "the graph's anchors are not an ssd_anchor_generator grid this reader can describe"
        + (f" (closest fit off by {best[1]:.2g})" if best else ""),
        "give the graph's pipeline.config instead",
    )


def load_graph(graph_path: Path) -> tuple[Any, Any]:
    """(the ``tensorflow`` module, the parsed GraphDef) of a frozen graph."""
    from backends._tf_common import import_tf
    from backends.tf1 import read_graph_def

    tf = import_tf()
    return tf, read_graph_def(tf, Path(graph_path))


def read_settings(graph_path: Path, loaded: tuple[Any, Any] | None = None) -> SsdGraphSettings:
    """Read an OD API SSD frozen graph's settings (needs TensorFlow; runs the graph once on the CPU)."""
    tf, graph_def = loaded or load_graph(graph_path)
    nodes = {n.name: n for n in graph_def.node}
    heads = sorted({int(m.group(1)) for n in nodes if (m := PREDICTOR.match(n))})
    if not heads or heads != list(range(len(heads))):
        raise ModelError(f"{graph_path}: no BoxPredictor_<i> heads found: not an OD API SSD with a convolutional "
                         "box predictor", "give an SSD exported by the TF1 Object Detection API")
    if SCORES not in nodes:
        raise ModelError(f"{graph_path}: no {SCORES} op", "give an SSD exported by the TF1 Object Detection API")
    anchors, shapes, input_size = _run_once(tf, graph_def, len(heads))
    per_cell = [s[3] // 4 for s in shapes]
    feature_maps = [(s[1], s[2]) for s in shapes]
    class_channels = [_const(tf, nodes, f"BoxPredictor_{i}/ClassPredictor/biases").size for i in heads]
    num_classes = class_channels[0] // per_cell[0] - 1
    spec, error = fit_anchor_spec(anchors, feature_maps, per_cell)
    converter = {"Sigmoid": "sigmoid", "Softmax": "softmax", "Identity": "identity"}.get(nodes[SCORES].op)
    if converter is None:
        raise ModelError(f"{graph_path}: unknown score converter op {nodes[SCORES].op}",
                         "give a pipeline.config for this graph")
    return SsdGraphSettings(
        input_size=input_size,
        num_classes=num_classes,
        layers=len(heads),
        feature_maps=tuple(feature_maps),
        anchors_per_cell=tuple(per_cell),
        anchor_spec=spec,
        anchor_error=error,
        box_scales=tuple(_scalar(tf, nodes, DECODE.format(s)) for s in ("", "_1", "_2", "_3")),  # type: ignore[arg-type]
        score_converter=converter,
        logit_scale=_scalar(tf, nodes, "Postprocessor/scale_logits/y"),
        score_threshold=_scalar(tf, nodes, NMS + "non_max_suppression/score_threshold"),
        iou_threshold=_scalar(tf, nodes, NMS + "non_max_suppression/iou_threshold"),
        max_per_class=int(_scalar(tf, nodes, NMS + "Minimum/x")),
        max_total=int(_scalar(tf, nodes, NMS + "Minimum_1/x")),
    )


def _short(value: float) -> str:
    """A float32 constant as a person wrote it: 0.6 for 0.6000000238418579, 1e-08 for 9.99999993922529e-09."""
    return str(np.float32(value))


def write_pipeline_config(settings: SsdGraphSettings, out: Path, source: str = "") -> Path:
    """The ``pipeline.config`` fields that decode the graph's two heads (what
    :func:`backends._ssd_decode.decode_config_from_pipeline` and OpenCV's ``tf_text_graph_ssd.py`` read)."""
    a = settings.anchor_spec
    y, x, h, w = settings.box_scales
    width, height = settings.input_size
    lines = [
        "# Generated from the frozen graph itself by detector-harness (backends/_od_api_graph.py)"
        + (f": {source}" if source else "") + ".",
        "# Only the fields that decode the graph's outputs: anchors (regenerated from these values to "
        f"{settings.anchor_error:.1e}), box coder, NMS.",
        "model {",
        "  ssd {",
        f"    num_classes: {settings.num_classes}",
        "    box_coder {",
        "      faster_rcnn_box_coder {",
        f"        y_scale: {_short(y)}",
        f"        x_scale: {_short(x)}",
        f"        height_scale: {_short(h)}",
        f"        width_scale: {_short(w)}",
        "      }",
        "    }",
        "    anchor_generator {",
        "      ssd_anchor_generator {",
        f"        num_layers: {a.num_layers}",
        f"        min_scale: {a.min_scale!r}",
        f"        max_scale: {a.max_scale!r}",
        *[f"        aspect_ratios: {r!r}" for r in a.aspect_ratios],
        *([f"        interpolated_scale_aspect_ratio: {a.interpolated_scale_aspect_ratio!r}"]
          if a.interpolated_scale_aspect_ratio != 1.0 else []),
        f"        reduce_boxes_in_lowest_layer: {'true' if a.reduce_boxes_in_lowest_layer else 'false'}",
        "      }",
        "    }",
        "    image_resizer {",
        "      fixed_shape_resizer {",
        f"        height: {height}",
        f"        width: {width}",
        "      }",
        "    }",
        "    post_processing {",
        "      batch_non_max_suppression {",
        f"        score_threshold: {_short(settings.score_threshold)}",
        f"        iou_threshold: {_short(settings.iou_threshold)}",
        f"        max_detections_per_class: {settings.max_per_class}",
        f"        max_total_detections: {settings.max_total}",
        "      }",
        f"      score_converter: {settings.score_converter.upper()}",
        *([f"      logit_scale: {_short(settings.logit_scale)}"] if settings.logit_scale != 1.0 else []),
        "    }",
        "  }",
        "}",
    ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def generate_pipeline_config(inputs: dict[str, Path], out: Path, meta: dict[str, Any]) -> None:
    """Asset generator (see datasets/README.md): ``pipeline_config`` from the role ``graph``."""
    write_pipeline_config(read_settings(inputs["graph"]), out, source=inputs["graph"].name)

