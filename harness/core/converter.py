"""What a backend makes before it runs: its converter, apart from its runtime (:class:`harness.core.detector.Detector`).

A backend's runtime loads a model and runs the three timed stages; its converter knows the model files: which
formats it writes (``harness convert --format``), whether it makes its own form of the reference frozen graph
(a TF2 SavedModel, an ONNX file, the PyTorch port's weights) and at which precisions, which options change
that artifact (part of its cache key), and which asset a job without ``--model`` runs. ``harness convert`` and
the run's asset preflight ask the converter only, so they import neither the runtime's module nor its
framework; a conversion imports what it needs when it runs.

A converter is a class of classmethods (nothing to construct), found by backend name through the registry
(:func:`harness.core.registry.converter_class`). A backend that converts nothing has none. Every hook has its
default here, so callers never probe for one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping


class Converter:
    """One backend's conversions. Subclasses set :attr:`backend` and override what they make."""

    #: the registered backend name whose model files this converter makes
    backend: ClassVar[str] = "?"
    #: distributions whose versions decide an artifact (part of its cache key): the converter's framework
    distributions: ClassVar[tuple[str, ...]] = ()
    #: bumped when the conversion code changes what it makes (part of the cache key)
    revision: ClassVar[int] = 1
    #: the name artifacts are keyed under (the ``class`` of the cache key); default: this class's dotted name.
    #: A converter split out of its runtime class keeps the runtime's name, so the artifacts made before the
    #: split are still found (and environments without the converter still find them: cache.converted_elsewhere)
    cache_identity: ClassVar[str | None] = None
    #: precisions for which :meth:`convert_reference` makes a variant of its own (an int8 model calibrated by
    #: the harness, fp16 weights...); the others are asked of the framework at load, or not available
    precisions: ClassVar[tuple[str, ...]] = ()
    #: the formats :meth:`convert_model` writes from a checkpoint (``harness convert --model X --format F``)
    model_formats: ClassVar[tuple[str, ...]] = ()
    #: :meth:`convert_model` also takes the reference's converted artifact (``harness convert --format F``
    #: without ``--model``)
    converts_reference_model: ClassVar[bool] = False
    #: the asset a job without --model runs (read by the assets preflight, see :meth:`default_model_for`);
    #: None: the reference SSD for this project's backends, whatever the backend loads for a third-party one
    default_model: ClassVar[str | None] = None

    @classmethod
    def identity(cls) -> str:
        return cls.cache_identity or f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def default_model_for(cls, precision: str | None) -> str | None:
        """The asset a job without --model runs at ``precision`` (None: not asked); :attr:`default_model` unless
        the precision decides it (tflite's precision variants are the reference SSD's)."""
        return cls.default_model

    @classmethod
    def makes_reference(cls) -> bool:
        """Whether this converter makes a form of the reference graph (overrides :meth:`convert_reference`)."""
        return cls.convert_reference.__func__ is not Converter.convert_reference.__func__  # type: ignore[attr-defined]

    @classmethod
    def conversion_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The job options that change the converted artifact, with their defaults filled in, passed to
        :meth:`convert_reference` as keywords and part of the cache key (so that ``harness convert``, which has
        no options, and a run with the defaults find the same artifact). Most conversions take none."""
        return {}

    @classmethod
    def convert_reference(cls, graph: Path, out_dir: Path, **options: Any) -> Path:
        """Make this backend's form of the reference frozen graph inside ``out_dir`` and return its path
        (``options``: :meth:`conversion_options`' choice). Called through :func:`harness.data.cache.reference_conversion`,
        by ``harness convert`` and by a runtime whose default model is the reference SSD alike.
        NotImplementedError: nothing to convert (for this precision)."""
        raise NotImplementedError(f"backend {cls.backend!r} needs no conversion of the reference graph")

    @classmethod
    def convert_model(cls, source: Path, out_dir: Path, *, fmt: str, options: Mapping[str, Any] | None = None
                      ) -> Path:
        """Write the checkpoint ``source`` as ``fmt`` (one of :attr:`model_formats`) inside ``out_dir``; called
        through :func:`harness.data.cache.model_conversion`."""
        raise NotImplementedError(f"backend {cls.backend!r} writes no other format from a checkpoint")
