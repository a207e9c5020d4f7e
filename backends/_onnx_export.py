"""Export a TF1 Object Detection API frozen graph to ONNX with tf2onnx (in process, no CLI subprocess).

Two cuts of the same graph:

* ``full``: image in, the four ``detection_*`` tensors out. The graph's own preprocessor, box decoder and
  NMS become ONNX ops, so ONNX Runtime reproduces the TF pipeline end to end.
* ``network``: image in, the raw box encodings (``concat:0``) and class logits (``concat_1:0``) out; the
  harness decodes them (:mod:`backends._ssd_decode`). This is the shape of most SSDs exported from other
  frameworks, and it shows whether a gap between frameworks lies in the network or in the post-processing.
* ``body``: the network after the graph's own preprocessor: a float ``[1,300,300,3]``
  input already scaled to x*2/255-1 (``Preprocessor/sub:0``) in, the same two outputs out. The ``network``
  cut still holds the preprocessor's ``Loop`` over the batch (a resize that is a copy once the harness has
  resized, and the scaling); quantizers and fusions see a plain convolutional graph here.

Conversions are slow (about 10 s for the reference graph), so the onnxruntime backend and ``harness convert``
both go through :func:`harness.data.cache.reference_conversion`, keyed by the graph's sha256, tf2onnx's version,
the cut and the opset.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from harness.core.errors import BackendUnavailable, ModelError
from harness.core.versions import distribution_version

OD_API_INPUT = "image_tensor:0"
OD_API_OUTPUTS = ("detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0")
NETWORK_OUTPUTS = ("concat:0", "concat_1:0")  # raw box encodings [1,N,1,4], class logits [1,N,C+1]
BODY_INPUT = "Preprocessor/sub:0"  # float [1,300,300,3], x*2/255-1: the feature extractor's input
CUTS = {"full": OD_API_OUTPUTS, "network": NETWORK_OUTPUTS, "body": NETWORK_OUTPUTS}
#: the input tensor of each cut, and the fixed shape given to tf2onnx where the graph leaves it open
CUT_INPUTS = {"full": OD_API_INPUT, "network": OD_API_INPUT, "body": BODY_INPUT}
CUT_SHAPES = {"body": [1, 300, 300, 3]}
DEFAULT_OPSET = 13


def tf2onnx_version() -> str:
    # the distribution's metadata, not `import tf2onnx`: that import pulls in TensorFlow (~3 s)
    version = distribution_version("tf2onnx")
    if version is None:
        raise BackendUnavailable("tf2onnx is not installed", "pip install -e '.[onnx]'")
    return version


def export_frozen_graph(
    graph: Path,
    out_path: Path,
    *,
    cut: str = "full",
    opset: int = DEFAULT_OPSET,
    inputs: tuple[str, ...] | None = None,
    outputs: tuple[str, ...] | None = None,
) -> Path:
    """Convert ``graph`` (a frozen GraphDef .pb) to ``out_path`` (.onnx); return ``out_path``."""
    if cut not in CUTS and outputs is None:
        raise ValueError(f"unknown cut {cut!r}: {', '.join(CUTS)}")
    outputs = outputs or CUTS[cut]
    shapes = {CUT_INPUTS[cut]: CUT_SHAPES[cut]} if inputs is None and cut in CUT_SHAPES else None
    inputs = inputs or (CUT_INPUTS.get(cut, OD_API_INPUT),)
    tf2onnx_version()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf2onnx
    from tf2onnx import tf_loader

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        graph_def, in_names, out_names = tf_loader.from_graphdef(str(graph), list(inputs), list(outputs))
    except Exception as exc:  # DecodeError, KeyError for missing tensors, ValueError...
        raise ModelError(
            f"tf2onnx cannot read {graph} as a frozen graph with inputs {list(inputs)} and outputs "
            f"{list(outputs)}: {exc}",
            "give an Object Detection API frozen_inference_graph.pb (or an .onnx file directly)",
        ) from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tf2onnx.convert.from_graph_def(
            graph_def, input_names=in_names, output_names=out_names, opset=opset, output_path=str(out_path),
            shape_override=shapes,
        )
    except Exception as exc:
        raise ModelError(f"tf2onnx failed to convert {graph} at opset {opset}: {exc}",
                         "try another opset (--opt opset=17), or convert by hand with python -m tf2onnx.convert") from exc
    return out_path
