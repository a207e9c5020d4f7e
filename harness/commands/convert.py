"""``harness convert``: make every backend's form of the reference frozen graph once, cached by content.

Each backend that needs its own format (a TF2 SavedModel, an ONNX file, ...) implements
``Detector.convert_reference(graph, out_dir)``; this command calls it for every registered backend through
:func:`harness.cache.cached_artifact`, so the artifact is rebuilt only when the graph, the converter or the
framework version changes, and prints where each artifact is. Backends whose default model is the
reference SSD call :func:`harness.cache.reference_artifact` too, so ``harness convert`` and ``harness run`` share the
same cached files.
"""

from __future__ import annotations

import argparse
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.cache import conversion_params, reference_artifact, reference_graph  # noqa: F401 (re-exported)
from harness.errors import HarnessError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert the reference frozen graph for every backend that needs its own format (cached)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", action="append", default=None,
                   help="only these backends (repeatable); default: every registered backend")
    p.add_argument("--graph", default=None,
                   help="frozen graph to convert (default: the reference model asset ssdlite-pedestrian)")
    p.add_argument("--cache-root", default=None,
                   help="artifact folder (default: $HARNESS_CACHE/artifacts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.registry import available_backends, backend_class
    from harness.errors import BackendUnavailable

    registered = available_backends()
    names = args.backend or sorted(registered)
    graph = Path(args.graph) if args.graph else reference_graph()
    if not graph.is_file():
        raise HarnessError(f"graph not found: {graph}", "give an existing frozen graph with --graph")
    root = Path(args.cache_root) if args.cache_root else None
    print(f"reference graph: {graph}")
    failures = 0
    for name in names:
        try:
            cls = backend_class(name)
        except BackendUnavailable as exc:
            print(f"{name:12s} skipped: {exc.problem}")
            continue
        if cls.convert_reference.__func__ is _base_convert():  # type: ignore[attr-defined]
            print(f"{name:12s} nothing to convert (no convert_reference: it uses its own model files)")
            continue
        t0 = time.perf_counter()
        try:
            path = reference_artifact(cls, graph, root)
        except NotImplementedError:
            print(f"{name:12s} nothing to convert")
            continue
        except HarnessError as exc:
            failures += 1
            print(f"{name:12s} FAILED: {exc.problem}" + (f"\n{'':13s}fix: {exc.fix}" if exc.fix else ""))
            continue
        print(f"{name:12s} {path}  ({time.perf_counter() - t0:.1f} s)")
    return 1 if failures else 0


def _base_convert() -> Any:
    from harness.detector import Detector

    return Detector.convert_reference.__func__  # type: ignore[attr-defined]
