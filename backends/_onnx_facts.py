"""What an ONNX graph holds, read from the file: parameters, MACs per frame, and the precision its compute
ops run at.

The precision is read from the graph ONNX Runtime *optimized* for the session (``optimized_model_filepath``):
a QDQ model whose ``DequantizeLinear -> Conv`` pairs ORT fused into ``QLinearConv`` computes in int8; one it
left unfused computes fp32 convolutions on dequantized weights, which is what the flag would hide.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.model_facts import ModelCost
from harness.core.precision import dominant, precision_of_type

#: compute ops whose work is int8 whatever their tensors' declared types
INT8_OPS = {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QAttention", "DynamicQuantizeLSTM"}
#: compute ops that run at their weights' (or input's) element type
FLOAT_OPS = {"Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "ConvTranspose", "NhwcFusedConv"}
#: the element type of each ONNX TensorProto data type that matters here
_ONNX_TYPES = {1: "float32", 10: "float16", 16: "bfloat16", 2: "uint8", 3: "int8", 11: "float64"}


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def compute_precisions(model: Any) -> tuple[Counter, list[str]]:
    """Counts of the main graph's compute ops per precision, and notes on what was unusual (unfused QDQ)."""
    graph = model.graph
    inits = {t.name: _ONNX_TYPES.get(t.data_type, str(t.data_type)) for t in graph.initializer}
    made_by = _producers(graph)
    counts: Counter = Counter()
    notes: list[str] = []
    unfused = 0
    for node in graph.node:
        if node.op_type in INT8_OPS:
            counts["int8"] += 1
            continue
        if node.op_type not in FLOAT_OPS or len(node.input) < 2:
            continue
        weight = node.input[1]
        producer = made_by.get(weight)
        if producer is not None and producer.op_type == "DequantizeLinear":
            unfused += 1  # int8 weights expanded to float before a float convolution
            counts["fp32"] += 1
            continue
        kind = precision_of_type(inits.get(weight, "")) or "fp32"
        counts[kind] += 1
    if unfused:
        notes.append(f"{unfused} convolution(s) take DequantizeLinear weights: QDQ left unfused, computed in fp32")
    return counts, notes


def read_precision(optimized: Path) -> tuple[str, dict[str, float], str]:
    """(effective precision, shares, evidence) of an optimized ONNX graph written by ONNX Runtime."""
    import onnx

    model = onnx.load(str(optimized), load_external_data=False)
    counts, notes = compute_precisions(model)
    effective, shares = dominant(counts)
    ops = Counter((n.domain or "ai.onnx", n.op_type) for n in model.graph.node
                  if n.op_type in INT8_OPS | FLOAT_OPS)
    listed = ", ".join(f"{n} {d}:{t}" for (d, t), n in ops.most_common(4))
    evidence = (f"ONNX Runtime's optimized graph: {sum(counts.values())} compute ops ({listed}); "
                + ", ".join(f"{p} {n}" for p, n in counts.most_common()) + (f"; {'; '.join(notes)}" if notes else ""))
    return effective, shares, evidence


def onnx_params(model: Any) -> int:
    """Weights stored in the graph (initializers, subgraphs' constants excluded): their element count."""
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer))


def _conv_macs(node: Any, shapes: dict[str, list[int]], inits: dict[str, list[int]], made_by: dict[str, Any]) -> int:
    weight = node.input[1]
    dims = inits.get(weight)
    if dims is None and weight in made_by and made_by[weight].op_type == "DequantizeLinear":
        dims = inits.get(made_by[weight].input[0])
    out = shapes.get(node.output[0])
    if not dims or not out or len(out) < 3:
        return -1
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv", "FusedConv", "ConvTranspose", "NhwcFusedConv"):
        per_output = int(np.prod(dims[1:]))  # Cin/groups x kh x kw
        return int(np.prod(out)) * per_output
    # MatMul/Gemm: output elements x the reduced dimension (Gemm's B is [N, K] when transB = 1)
    trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    reduce = dims[-1] if trans_b else dims[0]
    return int(np.prod(out)) * int(reduce)


def onnx_cost(path: Path, feed: dict[str, np.ndarray] | None = None) -> ModelCost:
    """Parameters and MACs of one inference, counted from the convolutions and matrix products of the main
    graph. Output shapes come from ONNX shape inference; where a ``Loop`` before the network leaves them open
    (the reference graph's preprocessor), one ONNX Runtime run on ``feed`` tells them."""
    import onnx

    model = onnx.load(str(path))
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    made_by = _producers(model.graph)
    compute = [n for n in model.graph.node if n.op_type in INT8_OPS | FLOAT_OPS and len(n.input) >= 2]
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes then come from a run
        inferred = model
    shapes: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        if dims and all(v > 0 for v in dims):
            shapes[vi.name] = dims
    missing = [n.output[0] for n in compute if n.output[0] not in shapes]
    how = "ONNX shape inference"
    if missing and feed is not None:
        shapes.update(_shapes_from_a_run(model, missing, feed))
        how += " + one ONNX Runtime run"
    macs = [_conv_macs(n, shapes, inits, made_by) for n in compute]
    known = [m for m in macs if m >= 0]
    if len(known) < len(macs):
        how += f" ({len(macs) - len(known)} of {len(macs)} ops without a known shape, not counted)"
    return ModelCost(onnx_params(model), int(sum(known)), f"{Path(path).name}: {len(compute)} Conv/MatMul ops, {how}")


def _shapes_from_a_run(model: Any, names: list[str], feed: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Shapes of ``names`` from one CPU run of a copy of the graph that also outputs them."""
    import onnx
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(copy.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    values = session.run(names, feed)
    return {n: list(v.shape) for n, v in zip(names, values)}
