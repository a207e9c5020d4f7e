"""A model given as Python code: ``--model py:MODULE:CALLABLE`` and the small protocol its factory follows.

Why: a detector that exists only as a class in the user's repository (plus a state dict) has no file format
the harness could read. The user names a factory; the job's worker imports ``MODULE`` (in the job's own
environment, so the user's package may live there) and calls ``CALLABLE(**opts)`` with the job's ``--opt``
values (strings, as typed). This is explicit code execution chosen by the user: every other model path keeps
``torch.load(weights_only=True)`` and refuses pickled whole modules.

The factory returns a :class:`PythonModel` (or a dict with the same keys). Required: ``module`` (a
``torch.nn.Module``) and ``output`` (how to read what ``module(x)`` returns). Everything else has a default
that follows from ``output``::

    from harness.core.pymodel import PythonModel

    def build_detector(weights: str, **opts) -> PythonModel:
        net = MyNet()
        net.load_state_dict(torch.load(weights, weights_only=True))
        return PythonModel(module=net, output="family", input_size=(300, 300), labels="labels.txt")

=====================  ==================================================================================
field                  meaning (default)
=====================  ==================================================================================
module                 required: the ``torch.nn.Module`` (put in eval mode by the harness)
output                 required: ``family`` (``(scores [N,P,C] softmaxed, column 0 background, boxes
                       [N,P,4] x1,y1,x2,y2 normalized)``), ``ssdlite`` (``(boxes [N,A,4] x1,y1,x2,y2
                       normalized, scores [N,A,C] without background)``) or ``torchvision`` (a list of dicts
                       of ``boxes`` in pixels, ``scores``, ``labels``, as torchvision's detectors)
input_size             (width, height) the network takes; required for ``family`` and ``ssdlite``
                       (``torchvision`` models resize inside: optional)
mean, std              per-channel (RGB) or one number, on 0..255 pixels: input = (pixel - mean) / std
                       (``family``: 127 / 128; ``ssdlite``: 127.5 / 127.5; ``torchvision``: 0 / 255)
rgb                    True: the network takes RGB (default), False: BGR
labels                 names by raw class id (a list, background first for ``family``) or a label file
                       (``family``: ``labels.txt`` beside ``opts['weights']`` if there; ``torchvision``:
                       COCO ids; ``ssdlite``: person)
iou_threshold ...      ``family``: ``iou_threshold`` (0.45), ``candidate_size`` (200), ``prob_threshold``
                       (0.01); ``ssdlite``: ``iou_threshold`` (0.6), ``score_threshold`` (1e-8),
                       ``max_detections`` (100)
=====================  ==================================================================================
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from harness.core.errors import ModelError

PREFIX = "py:"
OUTPUTS = ("family", "ssdlite", "torchvision")
#: per output layout: (mean, std) on 0..255 pixels
DEFAULT_NORMALIZATION = {"family": (127.0, 128.0), "ssdlite": (127.5, 127.5), "torchvision": (0.0, 255.0)}


@dataclass
class PythonModel:
    """What a ``py:`` factory returns (see the module's table for every field's meaning and default)."""

    module: Any
    output: str
    input_size: tuple[int, int] | None = None
    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    rgb: bool = True
    labels: Sequence[str] | str | Path | None = None
    iou_threshold: float | None = None
    candidate_size: int | None = None
    prob_threshold: float | None = None
    score_threshold: float | None = None
    max_detections: int | None = None


FIELDS = tuple(f.name for f in fields(PythonModel))
REQUIRED = ("module", "output")


def is_python_model(name: str | None) -> bool:
    return bool(name) and str(name).startswith(PREFIX)


def parse_reference(name: str) -> tuple[str, str]:
    """``py:pkg.mod:factory`` -> (``pkg.mod``, ``factory``); anything else is one clear error."""
    body = str(name)[len(PREFIX):]
    module, sep, attr = body.rpartition(":")
    if not sep or not module or not attr:
        raise ModelError(f"--model {name}: a Python model is py:MODULE:CALLABLE",
                         "e.g. --model py:mypkg.models:build_detector (MODULE importable in the job's environment)")
    return module, attr


def _three(value: Any, what: str) -> tuple[float, float, float]:
    vals = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3:
        raise ModelError(f"the py: factory's {what} has {len(vals)} values", f"give {what} as one number or three (R, G, B)")
    return vals[0], vals[1], vals[2]


def call_factory(name: str, options: dict[str, Any], module_type: type) -> PythonModel:
    """Import MODULE and call CALLABLE(**options); check what comes back against the protocol.

    The current directory is importable (as for ``python -m``), so a factory in the user's project runs as is.
    """
    module_name, attr = parse_reference(name)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the user's module raises on import
        raise ModelError(f"--model {name}: importing {module_name} failed: {type(exc).__name__}: {exc}",
                         f"make {module_name} importable in the job's environment (pip install -e your package, "
                         "or run from the folder that holds it) and fix the error above") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelError(f"--model {name}: {module_name} has no callable {attr!r}",
                         f"define def {attr}(**opts) -> harness.core.pymodel.PythonModel in {module_name}")
    try:
        made = factory(**options)
    except Exception as exc:
        raise ModelError(f"--model {name}: the factory raised {type(exc).__name__}: {exc}",
                         f"fix {module_name}.{attr}; it is called with the job's --opt values as keyword "
                         f"arguments ({', '.join(sorted(options)) or 'none given'})") from exc
    return check(made, module_type, name)


def check(made: Any, module_type: type, name: str = "the factory") -> PythonModel:
    """A :class:`PythonModel` from what the factory returned (a PythonModel or a dict), or one error naming the
    missing or wrong piece; ``module_type`` is the framework's module class (``torch.nn.Module``), given by the
    backend so that this protocol imports no framework."""
    fix_form = ("return harness.core.pymodel.PythonModel(module=net, output='family'|'ssdlite'|'torchvision', "
                "input_size=(W, H), ...) (or a dict with those keys)")
    if isinstance(made, dict):
        unknown = sorted(set(made) - set(FIELDS))
        if unknown:
            raise ModelError(f"{name} returned a dict with unknown keys: {', '.join(unknown)}",
                             f"the keys are: {', '.join(FIELDS)}")
        missing = [k for k in REQUIRED if k not in made]
        if missing:
            raise ModelError(f"{name} returned a dict without {', '.join(missing)}", fix_form)
        made = PythonModel(**made)
    if not isinstance(made, PythonModel):
        raise ModelError(f"{name} returned a {type(made).__name__}, not a PythonModel", fix_form)
    if not isinstance(made.module, module_type):
        raise ModelError(f"{name}: PythonModel.module is a {type(made.module).__name__}, not a torch.nn.Module",
                         "set module= to the network (an nn.Module whose forward takes the image batch)")
    if made.output not in OUTPUTS:
        raise ModelError(f"{name}: PythonModel.output is {made.output!r}",
                         f"set output= one of {', '.join(OUTPUTS)} (what module(x) returns; see docs/backend-torch.md)")
    if made.input_size is None and made.output != "torchvision":
        raise ModelError(f"{name}: PythonModel.input_size is missing; a {made.output} network takes a fixed size",
                         "set input_size=(width, height), e.g. (300, 300)")
    if made.input_size is not None:
        try:
            w, h = (int(v) for v in made.input_size)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{name}: PythonModel.input_size is {made.input_size!r}",
                             "set input_size=(width, height) as two integers") from exc
        made.input_size = (w, h)
    mean, std = DEFAULT_NORMALIZATION[made.output]
    made.mean = _three(mean if made.mean is None else made.mean, "mean")
    made.std = _three(std if made.std is None else made.std, "std")
    return made
