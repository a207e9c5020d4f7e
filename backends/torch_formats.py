"""PyTorch model formats beside state dicts and TorchScript: ``torch.export`` programs (``.pt2``) and models
given as Python code (``py:MODULE:CALLABLE``, protocol in :mod:`harness.core.pymodel`).

Why here and not in :mod:`backends.torch_ssd`: both formats end as "a module plus the facts the harness
needs" (:class:`TensorModel`), which the torch backend then runs like its other kinds; reading them is this
module's one job.

``.pt2``: :func:`torch.export.load` (PyTorch's own loader: it reads the serialized graph and the tensors, it
imports none of the user's code). The harness writes its facts (output convention, input size, mean/std, NMS
settings, label names) into the archive as ``extra/harness.json``; a program exported elsewhere is read by
its outputs' shapes (``--opt format=ssdlite|family`` when they cannot tell) and the options.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.core.errors import ModelError

META_FILE = "harness.json"
#: the output conventions a program or a Python model may follow (see harness.core.pymodel for their meaning)
CONVENTIONS = ("ssdlite", "family", "torchvision")
#: how many images an exported program takes at once at most (its batch axis is dynamic from 1 to this)
MAX_EXPORT_BATCH = 64


@dataclass
class TensorModel:
    """A ready module and what the torch backend must know to feed it and read its outputs."""

    module: Any
    convention: str  # ssdlite | family | torchvision
    input_size: tuple[int, int] | None
    mean: tuple[float, float, float] | None = None  # None: the convention's own (the port's x*2/255-1 ...)
    std: tuple[float, float, float] | None = None
    rgb: bool = True
    labels: list[str] | None = None  # names by raw class id (family: background first)
    settings: dict[str, Any] = field(default_factory=dict)  # NMS / port config


def is_export_archive(path: Path) -> bool:
    """``torch.export.save`` archives (PT2 archive format) hold an ``archive_format`` record and ``models/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("archive_format") for n in names) and any("/models/" in n for n in names)


def _output_shapes(program: Any) -> list[tuple[Any, ...]]:
    """The shapes of the program's outputs from its graph's metadata (symbolic sizes stay symbols)."""
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    shapes = []
    for arg in out_node.args[0]:
        val = getattr(arg, "meta", {}).get("val")
        shapes.append(tuple(val.shape) if hasattr(val, "shape") else ())
    return shapes


def _guess_convention(shapes: Sequence[tuple[Any, ...]], path: Path) -> str:
    """``(boxes, scores)`` -> ssdlite (the port); ``(scores, boxes)`` -> family; anything else needs the option."""
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes):
        first, second = (s[-1] for s in shapes)
        if first == 4 and second != 4:
            return "ssdlite"
        if second == 4 and first != 4:
            return "family"
    raise ModelError(f"{path}: the program's outputs {[list(map(str, s)) for s in shapes]} don't tell its convention",
                     "pass --opt format=ssdlite ((boxes [N,A,4], scores [N,A,C])) or format=family "
                     "((scores [N,P,C] softmaxed, boxes [N,P,4]))")


def load_program(torch: Any, path: Path, options: Mapping[str, Any], device: Any = None) -> TensorModel:
    """A ``.pt2`` file as a :class:`TensorModel` (its harness.json where the harness wrote it, else its outputs'
    shapes and ``--opt format= input_size= mean= std=``), its tensors on ``device``."""
    extra = {META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:
        raise ModelError(f"{path} looks like a torch.export program but torch.export.load fails: "
                         f"{type(exc).__name__}: {str(exc)[:300]}",
                         "save it with torch.export.save from a compatible torch version "
                         f"(this is torch {torch.__version__})") from exc
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        # an exported graph may hold device constants (aten.arange(device=cpu) ...): PyTorch's own pass moves
        # them with the weights, which module().to(device) would not
        program = torch.export.passes.move_to_device_pass(program, device)
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    convention = options.get("format") or meta.get("convention")
    if convention is None and meta.get("format"):  # the port's own marker
        convention = "ssdlite"
    if convention is None:
        convention = _guess_convention(_output_shapes(program), path)
    if convention not in CONVENTIONS[:2]:
        raise ModelError(f"{path}: unsupported program convention {convention!r}",
                         "torch.export programs run as --opt format=ssdlite or format=family; torchvision "
                         "detectors (their NMS is data-dependent) go as TorchScript or a state dict")
    size = options.get("input_size") or meta.get("input_size")
    if size is None:
        shape = next((tuple(s) for s in _input_shapes(program)), ())
        size = (shape[3], shape[2]) if len(shape) == 4 and all(isinstance(v, int) for v in shape[2:]) else None
    if size is None:
        raise ModelError(f"{path}: the program's input size is not fixed and not given", "pass --opt input_size=WxH")
    return TensorModel(
        module=program.module(), convention=str(convention), input_size=_size(size),
        mean=_maybe3(options.get("mean", meta.get("mean"))), std=_maybe3(options.get("std", meta.get("std"))),
        rgb=bool(meta.get("rgb", True)), labels=meta.get("labels"), settings=dict(meta.get("settings", {})),
    )


def _input_shapes(program: Any) -> list[tuple[Any, ...]]:
    shapes = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            shapes.append(tuple(int(v) if str(v).isdigit() else v for v in val.shape) if hasattr(val, "shape") else ())
    return shapes


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        w, _, h = value.lower().partition("x")
        return int(w), int(h or w)
    w, h = value
    return int(w), int(h)


def _maybe3(value: Any) -> tuple[float, float, float] | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return (float(value),) * 3  # type: ignore[return-value]
    parts = [float(v) for v in (value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split())]
    parts = parts * 3 if len(parts) == 1 else parts
    if len(parts) != 3:
        raise ModelError(f"mean/std {value!r}: expected 1 or 3 numbers", "e.g. mean=127 or mean=123,117,104")
    return parts[0], parts[1], parts[2]


def save_program(torch: Any, module: Any, path: Path, model: TensorModel) -> Path:
    """``torch.export`` ``module`` (eval mode, a dynamic batch axis of 1..64 images at the model's input size) and
    save it with the harness's facts in ``extra/harness.json``."""
    w, h = model.input_size  # type: ignore[misc]
    module = module.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    example = torch.zeros(2, 3, int(h), int(w))  # 2, not 1: torch.export specializes a size-1 axis
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    meta = {"convention": model.convention, "input_size": [int(w), int(h)], "rgb": model.rgb,
            "mean": list(model.mean) if model.mean else None, "std": list(model.std) if model.std else None,
            "labels": model.labels, "settings": model.settings}
    torch.export.save(program, str(path), extra_files={META_FILE: json.dumps(meta)})
    return path


def python_model(torch: Any, name: str, options: Mapping[str, Any]) -> TensorModel:
    """``py:MODULE:CALLABLE``: call the factory with the job's options and turn its :class:`PythonModel` into a
    :class:`TensorModel` (labels read from a file where it names one)."""
    from backends._family_decode import labels_beside
    from harness.core.pymodel import call_factory

    made = call_factory(name, dict(options), torch.nn.Module)
    labels = made.labels
    if labels is None and made.output == "family" and options.get("weights"):
        labels = labels_beside(Path(str(options["weights"])))
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        if not path.is_file():
            raise ModelError(f"{name}: PythonModel.labels names {path}, which is not a file",
                             "give labels as a list of names or an existing one-name-per-line file")
        labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    settings = {k: getattr(made, k) for k in ("iou_threshold", "candidate_size", "prob_threshold",
                                              "score_threshold", "max_detections") if getattr(made, k) is not None}
    return TensorModel(module=made.module, convention=made.output, input_size=made.input_size,
                       mean=made.mean, std=made.std, rgb=bool(made.rgb),  # type: ignore[arg-type]
                       labels=list(labels) if labels is not None else None, settings=settings)


def checkpoint_model(torch: Any, source: Path, options: Mapping[str, Any] | None = None) -> TensorModel:
    """The eager model of a checkpoint the torch backend reads, as a :class:`TensorModel` to export: the
    reference port (a converted ``.pt`` or its bare state dict) or a pytorch-ssd family state dict
    (:mod:`backends.torch_family`; ``arch``, ``input_size``, ``labels`` options as a run takes them)."""
    from backends import torch_ssdlite as port

    options = dict(options or {})
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{source} is not a weights file torch.load(weights_only=True) can read: {exc}",
                         "give a state dict (torch.save(model.state_dict(), f)) or the converted reference .pt") from exc
    if port.is_converted_checkpoint(obj) or (isinstance(obj, dict) and "tap_block.conv.0.0.weight" in obj):
        model = port.model_from_checkpoint(obj if port.is_converted_checkpoint(obj) else {"state_dict": obj},
                                           str(source))
        config = {k: v for k, v in model.config.items() if isinstance(v, (int, float, str, list))}
        return TensorModel(model, "ssdlite", tuple(int(v) for v in model.config["input_size"]),  # type: ignore[arg-type]
                           settings=config)
    from backends._family_decode import labels_beside, read_label_file
    from backends.torch_family import load_family

    labels_file = options.get("labels") or labels_beside(source)
    names = read_label_file(Path(str(labels_file))) if labels_file else None
    size = _size(options["input_size"]) if options.get("input_size") else None
    width = options.get("width_mult")
    family = load_family(obj, arch=options.get("arch"), input_size=size, labels=names,
                         width_mult=float(width) if width else None)
    return TensorModel(family.net, "family", tuple(family.input_size), tuple(family.mean), tuple(family.std),  # type: ignore[arg-type]
                       labels=list(family.labels) if family.labels is not None else None,
                       settings={"arch": family.arch, "iou_threshold": float(family.iou_threshold),
                                 "candidate_size": int(family.candidate_size)})


def export_checkpoint(torch: Any, source: Path, out: Path, options: Mapping[str, Any] | None = None) -> Path:
    """``source`` (see :func:`checkpoint_model`) written as a ``.pt2`` program at ``out``."""
    model = checkpoint_model(torch, source, options)
    return save_program(torch, model.module, out, model)


# the Jetson ONNX export (dusty-nv's onnx_export.py) ----------------------------------------------------------

#: the facts a runtime cannot read from the ONNX file itself, written beside it (backends._family_decode reads it)
FAMILY_SIDECAR = "pytorch-ssd-family.json"
#: options of a run that decide the export (part of its cache key)
EXPORT_OPTIONS = ("arch", "input_size", "labels", "width_mult")


def export_jetson_onnx(torch: Any, source: Path, out_dir: Path, options: Mapping[str, Any] | None = None) -> Path:
    """A pytorch-ssd family checkpoint as dusty-nv's ``onnx_export.py`` writes it: the test-mode net, batch 1,
    input ``input_0`` ``[1, 3, H, W]``, outputs ``scores`` ``[1, N, C]`` (softmaxed) and ``boxes`` ``[1, N, 4]``
    (decoded corners), with TorchScript-based ``torch.onnx.export`` as the script calls it (its default opset).
    Beside it: ``labels.txt`` (the script's ``--labels``) and the family facts (arch, mean/std, NMS) the
    runtimes read, so that a VGG or UltraFace export runs with its own settings."""
    model = checkpoint_model(torch, source, options)
    if model.convention != "family":
        raise ModelError(f"{source} is not a pytorch-ssd family checkpoint (it holds the reference port)",
                         "the Jetson ONNX export is for family checkpoints; the reference SSD's ONNX form is "
                         "`harness convert --backend onnxruntime` without --model")
    w, h = model.input_size  # type: ignore[misc]
    out = Path(out_dir) / f"{Path(source).stem}.onnx"
    with torch.no_grad():
        torch.onnx.export(model.module.eval(), torch.zeros(1, 3, int(h), int(w)), str(out), input_names=["input_0"],
                          output_names=["scores", "boxes"], dynamo=False)
    if model.labels:
        (Path(out_dir) / "labels.txt").write_text("\n".join(model.labels) + "\n", encoding="utf-8")
    facts = {"arch": model.settings.get("arch"), "input_size": [int(w), int(h)], "mean": list(model.mean or ()),
             "std": list(model.std or ()), "iou_threshold": model.settings.get("iou_threshold"),
             "candidate_size": model.settings.get("candidate_size"), "source": str(source)}
    (Path(out_dir) / FAMILY_SIDECAR).write_text(json.dumps(facts, indent=1), encoding="utf-8")
    return out


def family_onnx(converter: Any, source: Path, options: Mapping[str, Any] | None = None) -> Path:
    """The Jetson ONNX export of a family checkpoint from the conversion cache (``harness convert --backend
    onnxruntime --model X.pth`` fills the same entry): what ONNX Runtime, OpenVINO and OpenCV run when given a
    ``.pth``. ``converter`` is the converter that owns that cache entry (ONNX Runtime's), passed in so that this
    module and the ONNX backends do not import each other."""
    from harness.data.cache import model_conversion

    chosen = {k: v for k, v in (options or {}).items() if k in EXPORT_OPTIONS and v is not None}
    try:
        return model_conversion(converter, Path(source), "onnx", options=chosen).path
    except ImportError as exc:
        raise ModelError(f"{source} is a PyTorch checkpoint; making its ONNX export needs PyTorch here ({exc})",
                         "run `harness convert --backend onnxruntime --model ...` where torch is installed, or "
                         "give the exported .onnx file") from exc


def is_checkpoint(path: Path) -> bool:
    return Path(path).suffix.lower() in (".pth", ".pt")
