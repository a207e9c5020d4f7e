"""The interface every backend implements and the record of where it ran (the registry: :mod:`harness.core.registry`).

A detector is split into ``preprocess`` / ``infer`` / ``postprocess`` so that the harness times the three
stages the same way for every framework (and benchmarks can call ``infer`` alone in a bare loop). ``infer``
must return only when its result is on the host: that is where inference time ends.
"""

from __future__ import annotations

import difflib
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from harness.core.asked_vs_measured import AskedVsMeasured
from harness.core.detections import Detections
from harness.core.device import Device, is_accelerator
from harness.core.errors import HarnessError
from harness.core.labels import COCO, LabelMap
from harness.core.precision import Precision

if TYPE_CHECKING:
    from harness.core.converter import Converter
    from harness.core.model_facts import ModelCost
    from harness.data.models import ModelRef
    from harness.core.precision import PrecisionReport

@dataclass(frozen=True)
class DetectorConfig:
    """What a job asks of a backend. ``options`` holds backend-specific settings (tensor names, targets...)."""

    model: str | None = None
    device: Device = Device("cpu")
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    precision: Precision | None = None  # what the job asked; None = not asked

    def __post_init__(self) -> None:  # a config made from text (tests, benchmarks) holds the parsed values too
        object.__setattr__(self, "device", Device(self.device))
        if self.precision is not None:
            object.__setattr__(self, "precision", Precision(self.precision))

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass
class Placement(AskedVsMeasured):
    """Where the work actually ran, measured from the framework, with the evidence that shows it."""

    requested: str
    actual: str
    evidence: str
    shares: dict[str, float] = field(default_factory=dict)

    @property
    def effective(self) -> str:  # type: ignore[override]
        return self.actual

    @property
    def fallback(self) -> bool:
        """A GPU/accelerator was asked for and the work ended on the CPU."""
        return is_accelerator(self.requested) and self.actual.lower().startswith("cpu")


@dataclass
class ThreadSettings:
    """A job's thread counts. ``in_effect``: what the framework itself reports at run time (read back from it,
    resolved, never the request echoed). ``configured``: what was asked for, for the knobs the framework cannot
    report (0 or -1 there mean the framework's own default); the runner writes them to two columns named so."""

    in_effect: dict[str, int] = field(default_factory=dict)
    configured: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Conversion:
    """One converted artifact a load needed: made now (``built``, in ``seconds``) or found in the cache."""

    converter: str
    path: str
    built: bool
    seconds: float


@dataclass(frozen=True)
class StageTimes:
    """Nanoseconds spent in each stage of one frame."""

    pre_ns: int
    infer_ns: int
    post_ns: int

    @property
    def total_ns(self) -> int:
        return self.pre_ns + self.infer_ns + self.post_ns


class Detector(ABC):
    """One framework's way of running an SSD, normalized to canonical :class:`Detections`.

    Subclasses set ``label_map``, ``input_size`` (``(width, height)`` the network sees) and, for a model they
    resolved through :func:`harness.data.models.resolve_model`, ``model_ref`` in ``load``; the base class turns
    those into the model facts (:meth:`describe`) and versions every backend reports the same way, and a
    backend adds only what is its own (:meth:`model_details`, :meth:`runtime_versions`,
    :meth:`thread_settings`).

    This class is the backend's runtime only: what it converts (and which asset a job without ``--model``
    runs) is its :attr:`converter`'s (:mod:`harness.core.converter`). Every optional hook has its default here.
    """

    name: ClassVar[str] = "?"
    #: the framework's pip distribution names whose versions go into the results
    distributions: ClassVar[tuple[str, ...]] = ()
    #: import names the backend needs; the default suite runs only backends whose modules are all present
    modules: ClassVar[tuple[str, ...]] = ()
    #: every ``--opt`` setting the backend reads: name -> one line of help. Anything else is refused by
    #: :meth:`validate_options` before the job loads (a typo must not be silently ignored). A subclass extends
    #: its parent's with ``{**Parent.known_options, "new": "..."}``.
    known_options: ClassVar[Mapping[str, str]] = {}
    #: a client of a model served elsewhere (the v2 backend): its --model is an endpoint, so a suite's
    #: ``backends = "installed"`` never picks it (it has no reference model of its own to run)
    remote: ClassVar[bool] = False
    #: what this backend converts (the same class the registry finds by the backend's name, see
    #: :func:`harness.core.registry.converter_class`); None: it runs the files it is given
    converter: ClassVar[type[Converter] | None] = None

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.label_map: LabelMap = COCO
        self.input_size: tuple[int, int] | None = None
        self.model_ref: ModelRef | None = None
        self.conversions: list[Conversion] = []
        #: set by the runner: tells the progress line what a long load is doing (a conversion)
        self.on_phase: Callable[[str], None] | None = None

    @classmethod
    def preflight(cls, config: DetectorConfig) -> None:
        """A check before the run's first job, without loading anything (the v2 client asks its server whether
        the model is ready): raise :class:`HarnessError` to stop the run before any job. Default: none."""

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Refuse options this backend does not read, naming them and the ones it knows (imports no framework)."""
        unknown = [key for key in options if key not in cls.known_options]
        if not unknown:
            return
        described = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(cls.known_options), n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}: {cls.known_options[close[0]]}?)" if close else ""
            described.append(f"{key!r}{hint}")
        raise HarnessError(
            f"backend {cls.name!r} has no option {', '.join(described)}",
            f"drop it, or use an option {cls.name} knows: {', '.join(sorted(cls.known_options)) or '(none)'}",
        )

    # lifecycle ------------------------------------------------------------------------------------------
    @abstractmethod
    def load(self) -> None:
        """Load the model onto the requested device. Raise :class:`ModelError` with a fix on bad files."""

    def close(self) -> None:
        """Release framework resources (sessions, GPU memory)."""

    # the three timed stages -----------------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, frame_bgr: np.ndarray) -> Any:
        """Turn one BGR uint8 frame into the framework's *ready* input: its layout, channel order, dtype,
        contiguity and memory (device). Every conversion is done here, so that the inference stage holds only
        the framework's own work (DESIGN.md: stage attribution)."""

    @abstractmethod
    def infer(self, inputs: Any) -> Any:
        """Only the framework call on the ready input; return only once the outputs are on the host."""

    @abstractmethod
    def postprocess(self, raw: Any, frame_size: tuple[int, int]) -> Detections:
        """Turn raw outputs into canonical detections on a frame of ``frame_size`` (width, height)."""

    def detect(self, frame_bgr: np.ndarray) -> tuple[Detections, StageTimes]:
        clock = time.perf_counter_ns
        height, width = frame_bgr.shape[:2]
        t0 = clock()
        inputs = self.preprocess(frame_bgr)
        t1 = clock()
        raw = self.infer(inputs)
        t2 = clock()
        dets = self.postprocess(raw, (width, height))
        t3 = clock()
        return dets, StageTimes(t1 - t0, t2 - t1, t3 - t2)

    # batches: the offline scenario's path; the single-frame path above is unchanged --
    def batch_unsupported(self, size: int) -> str | None:
        """Why this loaded backend can't run ``size`` frames in one framework call (None: it can). One frame
        always can (the single-frame stages); a backend whose framework takes a batch axis overrides this and
        :meth:`preprocess_batch` / :meth:`postprocess_batch` (and :meth:`infer_batch` if its call differs)."""
        if size == 1:
            return None
        return f"backend {self.name} has no batched path (its framework call takes one frame)"

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> Any:
        """The ready input of several frames at once (the same rules as :meth:`preprocess`)."""
        if len(frames_bgr) == 1:
            return self.preprocess(frames_bgr[0])
        raise NotImplementedError(f"backend {self.name} has no batched preprocessing")

    def infer_batch(self, inputs: Any) -> Any:
        """The framework call on a batch: by default the same call as for one frame."""
        return self.infer(inputs)

    def postprocess_batch(self, raw: Any, frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """One :class:`Detections` per frame of the batch, in order."""
        if len(frame_sizes) == 1:
            return [self.postprocess(raw, frame_sizes[0])]
        raise NotImplementedError(f"backend {self.name} has no batched postprocessing")

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> tuple[list[Detections], StageTimes]:
        """Several frames through the three stages at once; the times are the batch's."""
        clock = time.perf_counter_ns
        sizes = [(f.shape[1], f.shape[0]) for f in frames_bgr]
        t0 = clock()
        inputs = self.preprocess_batch(frames_bgr)
        t1 = clock()
        raw = self.infer_batch(inputs)
        t2 = clock()
        dets = self.postprocess_batch(raw, sizes)
        t3 = clock()
        return dets, StageTimes(t1 - t0, t2 - t1, t3 - t2)

    # reporting ------------------------------------------------------------------------------------------
    @abstractmethod
    def placement(self) -> Placement:
        """Measure where the last inference ran. Called after warm-up."""

    def versions(self) -> dict[str, str]:
        """Installed distributions (one lookup for every backend) plus what the loaded framework reports."""
        from harness.core.versions import distribution_versions

        return {**distribution_versions(self.distributions), **self.runtime_versions()}

    def runtime_versions(self) -> dict[str, str]:
        """Versions only the loaded framework can tell (its CUDA/cuDNN build, devices); {} before load."""
        return {}

    def thread_settings(self) -> ThreadSettings:
        """Threads as the framework reports them after load; a backend whose framework can say overrides it.

        The base can read nothing from a framework, so all it has is the request (0 = the framework's default).
        """
        return ThreadSettings(configured={"threads": int(self.config.threads or 0)})

    def peak_gpu_memory_mb(self) -> float | None:
        """Peak device memory this job allocated, where the framework can tell (None otherwise)."""
        return None

    @classmethod
    def missing_modules(cls) -> list[str]:
        """Framework modules this backend needs that are not installed (checked without importing them)."""
        import importlib.util

        return [m for m in cls.modules if importlib.util.find_spec(m) is None]

    def describe(self) -> dict[str, Any]:
        """Model facts for the results: what was run (path, checksum, label space, input size), the options
        and threads in effect, what the load converted, then the backend's own :meth:`model_details`."""
        d: dict[str, Any] = {"model": self.config.model}
        if self.model_ref is not None:
            d.update(self.model_ref.describe())
        threads = self.thread_settings()
        d.update({
            "input_size": list(self.input_size) if self.input_size else None,
            "label_space": self.label_map.space,
            "labels": {int(k): v for k, v in self.label_map.names.items()},
            "options": dict(self.config.options),
            "threads": dict(threads.in_effect),
            "threads_configured": dict(threads.configured),
            "conversions": [asdict(c) for c in self.conversions],
            "conversion_s": round(sum(c.seconds for c in self.conversions if c.built), 3),
        })
        d.update(self.model_details())
        return d

    def model_details(self) -> dict[str, Any]:
        """What only this backend knows about the loaded model (tensor names, layout, interpreter...)."""
        return {}

    # precision ---------------------------------------------------------------------------------
    def precision_report(self) -> PrecisionReport:
        """The precision the framework runs the loaded model at, read from the framework after warm-up (its
        compiled model, optimized graph, tensor types, autocast dtype), never the flag echoed. A backend that
        can read nothing reports ``unknown``, which is never a fallback."""
        from harness.core.precision import unknown_report

        return unknown_report(self.config.precision, self.name)

    def model_cost(self) -> ModelCost | None:
        """Parameters and multiply-accumulates per frame, counted from the loaded graph; None where the
        backend cannot count them."""
        return None

    def model_file(self) -> Path | None:
        """The file (or folder) the framework loaded: a converted artifact where the load made one."""
        if self.conversions:
            return Path(self.conversions[-1].path)
        return self.model_ref.path if self.model_ref is not None else None

def split_batch(outputs: Sequence[Any], count: int) -> list[list[Any]]:
    """A batched call's outputs (arrays with the batch on axis 0) as ``count`` single-frame outputs, each array
    keeping a batch axis of 1, so that a backend's single-frame :meth:`Detector.postprocess` reads them as it
    reads its own."""
    return [[np.asarray(out)[i:i + 1] for out in outputs] for i in range(count)]
