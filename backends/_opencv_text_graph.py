"""The OpenCV text graph (``.pbtxt``) of a TF1 Object Detection API SSD, made from the frozen graph itself.

``cv2.dnn.readNetFromTensorflow(graph.pb, graph.pbtxt)`` takes the weights from the binary graph and the
network from the text graph. OpenCV cannot import an OD API graph as exported (its anchor generator, box
decoder and NMS are loops and dynamic shapes), so the text graph keeps only the convolutional part and ends
in OpenCV's own SSD layers:

* the backbone and the box-predictor heads, fed by ``image_tensor`` through the graph's own ``x*2/255-1``
  (``Preprocessor/mul`` and ``sub``) instead of its resize loop (the harness resizes); ``Identity`` reads
  are bypassed so that every input names the constant that holds its weights in the binary graph;
* per head, ``Flatten`` of both predictors; one ``PriorBox`` per layer with the anchors' widths and heights in
  pixels and the box coder's variances (1/scale); ``loc_pred_transposed`` on each box-encoding convolution
  (TF orders encodings y, x, h, w; OpenCV x, y, w, h);
* ``Reshape`` to [0, -1, classes+1], the score converter, ``Flatten`` and ``DetectionOutput`` with the
  graph's NMS settings.

Every number comes from :func:`backends._od_api_graph.read_settings`, which checks that the anchors it
describes regenerate the graph's own anchors. The layout follows what OpenCV's
``samples/dnn/tf_text_graph_ssd.py`` writes from a ``pipeline.config``; the code is this project's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backends._od_api_graph import PREDICTOR, SsdGraphSettings, load_graph, read_settings
from harness.core.errors import ModelError

#: generated-file revision: bump when the text graph this module writes changes
GENERATOR_REVISION = 1

INPUT = "image_tensor"
#: where the graph's own preprocessing starts; the resize loop before it is replaced by the input
RESIZE_PREFIX = "Preprocessor/map/"
#: attributes OpenCV's importer does not read (types, GPU hints): dropped to keep the text graph small
UNUSED_ATTRS = ("T", "U", "Tshape", "N", "Tidx", "Tdim", "use_cudnn_on_gpu", "Index", "Tperm", "is_training",
                "Tpaddings", "explicit_paddings", "_output_shapes")
AXIS = "concat/axis_flatten"


def _source(name: str, nodes: dict[str, Any]) -> str:
    """The node an input really reads: ``^control`` and ``:0`` stripped, Identity chains followed."""
    name = name.split(":")[0]
    while name in nodes and nodes[name].op == "Identity":
        name = nodes[name].input[0].split(":")[0]
    return name


def _network_nodes(graph_def: Any, heads: list[str]) -> list[Any]:
    """The compute nodes the heads depend on, in graph order, inputs rewired past Identity and the resizer."""
    nodes = {n.name: n for n in graph_def.node}
    keep: set[str] = set()
    todo = list(heads)
    while todo:
        name = todo.pop()
        if name in keep or name == INPUT:
            continue
        node = nodes.get(name)
        if node is None:
            raise ModelError(f"the graph has no node {name}", "give a TF1 Object Detection API SSD frozen graph")
        if node.op == "Const" or name.startswith(RESIZE_PREFIX):
            continue
        keep.add(name)
        todo += [_source(i, nodes) for i in node.input if not i.startswith("^")]
    out = []
    for node in graph_def.node:
        if node.name not in keep:
            continue
        new = type(node)()
        new.CopyFrom(node)
        data, consts = [], []
        for raw in node.input:
            if raw.startswith("^"):
                continue  # control edges (asserts) mean nothing to OpenCV
            src = _source(raw, nodes)
            if src.startswith(RESIZE_PREFIX):
                src = INPUT
            (consts if nodes.get(src) is not None and nodes[src].op == "Const" else data).append(src)
        del new.input[:]
        new.input.extend(data + consts)  # data first: OpenCV reads a scalar Mul/Sub operand from the second input
        for attr in UNUSED_ATTRS:
            if attr in new.attr:
                del new.attr[attr]
        out.append(new)
    return out


def _node(graph_def: Any, name: str, op: str, inputs: tuple[str, ...] = ()) -> Any:
    node = graph_def.node.add()
    node.name, node.op = name, op
    node.input.extend(inputs)
    return node


def _floats(node: Any, key: str, values: list[float]) -> None:
    tensor = node.attr[key].tensor
    tensor.dtype = 1  # DT_FLOAT
    tensor.tensor_shape.dim.add().size = len(values)
    tensor.float_val.extend(values)


def _ints_const(graph_def: Any, name: str, values: list[int]) -> None:
    node = _node(graph_def, name, "Const")
    node.attr["dtype"].type = 3  # DT_INT32
    tensor = node.attr["value"].tensor
    tensor.dtype = 3
    tensor.tensor_shape.dim.add().size = len(values)
    tensor.int_val.extend(values)


def prior_sizes(settings: SsdGraphSettings) -> list[tuple[list[float], list[float]]]:
    """Per layer, the anchors' (widths, heights) in input pixels, from the recovered anchor spec."""
    width, height = settings.input_size
    out = []
    for layer in settings.anchor_spec.box_specs():
        ws = [float(s * np.sqrt(a) * width) for s, a in layer]
        hs = [float(s / np.sqrt(a) * height) for s, a in layer]
        out.append((ws, hs))
    return out


def build_text_graph(graph_def: Any, settings: SsdGraphSettings) -> Any:
    """A new GraphDef holding only what OpenCV needs to run the SSD (see the module docstring)."""
    if settings.logit_scale != 1.0:
        raise ModelError(f"the graph divides its logits by {settings.logit_scale} before the score converter, "
                         "which OpenCV's SSD layers cannot do", "run this graph with --backend tf1 or onnxruntime")
    heads = {(int(m.group(1)), m.group(2)): n.name for n in graph_def.node if (m := PREDICTOR.match(n.name))}
    layers = settings.layers
    out = type(graph_def)()
    placeholder = _node(out, INPUT, "Placeholder")
    placeholder.attr["dtype"].type = 4  # DT_UINT8
    shape = placeholder.attr["shape"].shape
    for size in (-1, settings.input_size[1], settings.input_size[0], 3):
        shape.dim.add().size = size
    for node in _network_nodes(graph_def, list(heads.values())):
        out.node.add().CopyFrom(node)
    for node in out.node:  # OpenCV permutes these convolutions' outputs from TF's y, x, h, w order
        if node.op == "Conv2D" and node.name.rsplit("/", 1)[0] in {
                heads[(i, "BoxEncodingPredictor")].rsplit("/", 1)[0] for i in range(layers)}:
            node.attr["loc_pred_transposed"].b = True
    _ints_const(out, AXIS, [-1])
    for kind in ("ClassPredictor", "BoxEncodingPredictor"):
        flat = [_node(out, heads[(i, kind)] + "/Flatten", "Flatten", (heads[(i, kind)],)).name for i in range(layers)]
        _node(out, f"{kind}/concat", "ConcatV2", (*flat, AXIS))
    y, x, h, w = settings.box_scales
    for i, (widths, heights) in enumerate(prior_sizes(settings)):
        prior = _node(out, f"PriorBox_{i}", "PriorBox", (heads[(i, "BoxEncodingPredictor")], INPUT))
        prior.attr["flip"].b = False
        prior.attr["clip"].b = False
        _floats(prior, "width", widths)
        _floats(prior, "height", heights)
        _floats(prior, "variance", [1.0 / x, 1.0 / y, 1.0 / w, 1.0 / h])
    _node(out, "PriorBox/concat", "ConcatV2", (*[f"PriorBox_{i}" for i in range(layers)], AXIS))
    _ints_const(out, "ClassPredictor/concat3d/shape", [0, -1, settings.num_classes + 1])
    _node(out, "ClassPredictor/concat3d", "Reshape", ("ClassPredictor/concat", "ClassPredictor/concat3d/shape"))
    converter = {"sigmoid": "Sigmoid", "softmax": "Softmax", "identity": "Identity"}[settings.score_converter]
    scores = _node(out, f"ClassPredictor/concat/{settings.score_converter}", converter, ("ClassPredictor/concat3d",))
    _node(out, scores.name + "/Flatten", "Flatten", (scores.name,))
    det = _node(out, "detection_out", "DetectionOutput",
                ("BoxEncodingPredictor/concat", scores.name + "/Flatten", "PriorBox/concat"))
    det.attr["num_classes"].i = settings.num_classes + 1
    det.attr["share_location"].b = True
    det.attr["background_label_id"].i = 0
    det.attr["nms_threshold"].f = settings.iou_threshold
    det.attr["top_k"].i = settings.max_per_class
    det.attr["keep_top_k"].i = settings.max_total
    det.attr["code_type"].s = b"CENTER_SIZE"
    det.attr["confidence_threshold"].f = settings.score_threshold
    return out


def write_text_graph(graph_path: Path, out: Path, settings: SsdGraphSettings | None = None) -> Path:
    """Write the OpenCV text graph of ``graph_path`` to ``out`` (needs TensorFlow for reading the graph)."""
    from google.protobuf import text_format

    loaded = load_graph(Path(graph_path))
    settings = settings or read_settings(graph_path, loaded)
    graph_def = loaded[1]
    text = text_format.MessageToString(build_text_graph(graph_def, settings))
    out.write_text(text, encoding="utf-8")
    return out


def generate(inputs: dict[str, Path], out: Path, meta: dict[str, Any]) -> None:
    """Asset generator (see datasets/README.md): ``opencv_pbtxt`` from the role ``graph``."""
    write_text_graph(inputs["graph"], out)
