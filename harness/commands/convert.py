"""``harness convert``: make every backend's form of the reference frozen graph once, cached by content, and
the files the harness generates itself (manifest roles with a ``generator``).

Each backend that needs its own format (a TF2 SavedModel, an ONNX file, ...) has a converter
(:mod:`harness.core.converter`) that implements ``convert_reference(graph, out_dir)``; this command calls it for
every registered backend through :func:`harness.data.cache.reference_conversion`, so the artifact is rebuilt only
when the graph, the converter or the framework version changes, and prints where each artifact is. It asks
the converters only: no backend's runtime module is imported here. Backends whose default model is the
reference SSD load it through the same call, so ``harness convert`` and ``harness run`` share the same cached
files.

Files with no hosted copy that the harness can make from others (the reference SSD's OpenCV text graph and
``pipeline.config`` from the frozen graph, ``seqinfo.ini`` from a video) are listed after that: present
(where from), made now, up to date, or skipped because what they are made from is not here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

from harness.data.cache import conversion_params, reference_artifact, reference_conversion, reference_graph  # noqa: F401 (re-exported)
from harness.core.errors import HarnessError

EPILOG = """\
Examples:
  harness convert                         every backend's form of the reference SSD + every generated file
  harness convert --backend opencv        the generated files opencv jobs use (text graph, seqinfo.ini)
  harness convert --backend tf2 --backend onnxruntime   the SavedModel and the ONNX file
  harness convert --graph my/frozen_inference_graph.pb --cache-root /tmp/artifacts
  harness convert --no-generated          conversions only
  harness convert --precision int8        the int8 variants (ONNX Runtime QDQ, OpenVINO NNCF IR, TFLite int8)
  harness convert --backend tflite --precision fp32,fp16,int8
  harness convert --backend torch --format pt2                the reference port as a torch.export program
  harness convert --backend torch --format pt2 --model mb2-ssd-lite.pth   a pytorch-ssd family checkpoint too

Artifacts are kept in $HARNESS_CACHE/artifacts (default ~/.cache/detector-harness) keyed by content, and
reused by `harness run`; generated files (made from the named assets, whatever --graph says) are kept in
$HARNESS_CACHE beside downloads (see `harness assets show NAME`). Nothing is downloaded here.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert the reference frozen graph for every backend, make the generated asset files (cached)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", action="append", default=None,
                   help="only these backends (repeatable); default: every registered backend")
    p.add_argument("--graph", default=None,
                   help="frozen graph to convert (default: the reference model asset ssdlite-pedestrian)")
    p.add_argument("--cache-root", default=None,
                   help="artifact folder (default: $HARNESS_CACHE/artifacts)")
    p.add_argument("--no-generated", action="store_true",
                   help="skip the generated asset files (text graphs, seqinfo.ini ...)")
    p.add_argument("--model", default=None,
                   help="convert this checkpoint (a .pth/.pt the torch backend reads) instead of the reference "
                   "graph, into --format (default: each backend's first model format)")
    p.add_argument("--format", default=None,
                   help="the file format to write from --model or the reference port (torch: pt2)")
    p.add_argument("--precision", action="append", default=None, metavar="P[,P...]",
                   help="also make these precision variants (int8 calibrated on the default split, fp16 ...) "
                   "where a backend makes them; default: fp32 only (docs/precision.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.core.registry import available_backends

    registered = available_backends()
    names = args.backend or sorted(registered)
    graph = Path(args.graph) if args.graph else reference_graph()
    if not graph.is_file():
        raise HarnessError(f"graph not found: {graph}", "give an existing frozen graph with --graph")
    root = Path(args.cache_root) if args.cache_root else None
    from harness.data.assets import cache_dir
    from harness.data.assets.places import CACHE_ENV, check_folder

    check_folder(root if root is not None else cache_dir() / "artifacts",
                 "--cache-root" if root is not None else "the conversion cache",
                 "give --cache-root a folder you can write" if root is not None else
                 f"set {CACHE_ENV} to a folder you can write, e.g. export {CACHE_ENV}=~/.cache/detector-harness")
    if getattr(args, "model", None) or getattr(args, "format", None):
        return convert_models(names, graph, root, getattr(args, "model", None), getattr(args, "format", None))
    print(f"reference graph: {graph}")
    from harness.core.precision import parse_precisions

    precisions = parse_precisions(args.precision or ()) if getattr(args, "precision", None) else ()
    from harness.commands.framework_log import framework_output_to, log_path

    # TensorFlow's absl/CUDA lines and other frameworks' chatter go to a log; the conversion lines stay here
    with framework_output_to(log_path("convert")) as log:
        failures = _convert_all(args, names, graph, root, precisions)
    if log.stat().st_size:
        print(f"frameworks' own messages: {log}")
    else:
        log.unlink()
    return 1 if failures else 0


def _convert_all(args: argparse.Namespace, names: list[str], graph: Path, root: Path | None,
                 precisions: tuple[str, ...]) -> int:
    from harness.core.errors import BackendUnavailable
    from harness.core.registry import converter_class

    failures = 0
    for name in names:
        try:
            conv = converter_class(name)
        except BackendUnavailable as exc:
            print(f"{name:12s} skipped: {exc.problem}")
            continue
        if conv is None or not conv.makes_reference():
            print(f"{name:12s} nothing to convert (no convert_reference: it uses its own model files)")
            continue
        failures += _convert_line(name, 12, lambda: (reference_artifact(conv, graph, root), ""))
    for name in names if precisions else ():
        failures += _variants(name, precisions, graph, root)
    if not args.no_generated:
        failures += make_generated(args.backend)
    return failures


def convert_models(names: list[str], graph: Path, root: Path | None, model: str | None, fmt: str | None) -> int:
    """``--model`` / ``--format``: each backend's ``convert_model`` of the checkpoint (the reference port's
    converted ``.pt`` when no --model is given), cached by content; returns the number that failed."""
    from harness.data.cache import model_conversion
    from harness.core.errors import BackendUnavailable
    from harness.core.registry import converter_class

    if model is not None:
        source = Path(model).expanduser()
        if not source.is_file():
            raise HarnessError(f"model not found: {model}", "give an existing checkpoint file with --model")
    failures = 0
    for name in names:
        try:
            conv = converter_class(name)
        except BackendUnavailable as exc:
            print(f"{name:12s} skipped: {exc.problem}")
            continue
        formats = conv.model_formats if conv is not None else ()
        if conv is None or not formats:
            print(f"{name:12s} nothing to convert (it writes no other format from a checkpoint)")
            continue
        if model is None and not conv.converts_reference_model:
            print(f"{name:12s} FAILED: its {formats[0]} files are made from a checkpoint\n{'':13s}fix: add --model X.pth")
            failures += 1
            continue
        chosen = fmt or formats[0]
        if chosen not in formats:
            print(f"{name:12s} FAILED: it writes no {chosen!r} files\n{'':13s}fix: --format {' or '.join(formats)}")
            failures += 1
            continue

        def make(conv: Any = conv, chosen: str = chosen) -> tuple[Path, str]:
            src = source if model is not None else reference_artifact(conv, graph, root)
            artifact = model_conversion(conv, src, chosen, root)
            return Path(artifact.path), ("made, " if artifact.built else "cached, ")

        failures += _convert_line(name, 12, make)
    return failures


def make_generated(backends: list[str] | None = None) -> int:
    """List every generated role (those some of ``backends`` need; all without a filter) and make the ones
    that are neither present nor up to date. Never downloads. Returns the number that failed."""
    from harness.data.assets import load_manifests, locate_file, resolve_file
    from harness.core.errors import AssetError

    print("\ngenerated files (no hosted copy; made from other files of the asset, see datasets/README.md):")
    failures = 0
    for manifest in sorted(load_manifests().values(), key=lambda m: m.name):
        for spec in manifest.files.values():
            wanted = not backends or spec.needed_by is None or bool(set(backends) & set(spec.needed_by))
            if not spec.generated or not wanted:
                continue
            label = f"{manifest.name}:{spec.role}"
            before = locate_file(manifest, spec.role)
            if before is not None and before.origin != "generated":
                print(f"  {label:36s} present ({before.origin}): {before.path}")
                continue
            absent = [r for r in spec.generated_from if locate_file(manifest, r) is None]
            if absent:
                how = f"`harness assets fetch {manifest.name}`" if all(
                    manifest.files[r].downloadable for r in absent) else f"see `harness assets show {manifest.name}`"
                print(f"  {label:36s} skipped: made from its {', '.join(absent)}, which is not here ({how})")
                continue
            stamp = before.path.stat().st_mtime_ns if before else None
            t0 = time.perf_counter()
            try:
                made = resolve_file(manifest, spec.role, allow_download=False)
            except AssetError as exc:
                failures += 1
                print(f"  {label:36s} FAILED: {exc.problem}" + (f"\n{'':39s}fix: {exc.fix}" if exc.fix else ""))
                continue
            state = "up to date" if stamp == made.path.stat().st_mtime_ns else \
                f"made in {time.perf_counter() - t0:.1f} s"
            print(f"  {label:36s} {state}: {made.path}")
    return failures


def _variants(name: str, precisions: tuple[str, ...], graph: Path, root: Path | None) -> int:
    """Make ``name``'s precision variants of the reference; returns the failures."""
    from harness.core.errors import BackendUnavailable
    from harness.core.registry import converter_class

    try:
        conv = converter_class(name)
    except BackendUnavailable:
        return 0
    failures = 0
    for precision in precisions:
        label = f"{name} {precision}"
        if conv is None or precision not in conv.precisions:
            print(f"{label:17s} no variant made: {name} runs {precision} by asking its framework, or not at all "
                  "(a job says which it ran)")
            continue
        failures += _convert_line(label, 17, lambda: _variant(conv, graph, root, precision))
    return failures


def _variant(conv: Any, graph: Path, root: Path | None, precision: str) -> tuple[Path, str]:
    artifact = reference_conversion(conv, graph, root, options={"precision": precision})
    return Path(artifact.path), ("made, " if artifact.built else "cached, ")


def _convert_line(label: str, width: int, make: Callable[[], tuple[Path, str]]) -> int:
    """One conversion as one printed line (its path and time, 'nothing to convert', or FAILED with the fix);
    returns 1 for a failure so that the command's exit status counts them."""
    t0 = time.perf_counter()
    try:
        path, state = make()
    except NotImplementedError:
        print(f"{label:{width}s} nothing to convert")
        return 0
    except HarnessError as exc:
        print(f"{label:{width}s} FAILED: {exc.problem}" + (f"\n{'':{width + 1}s}fix: {exc.fix}" if exc.fix else ""))
        return 1
    print(f"{label:{width}s} {path}  ({state}{time.perf_counter() - t0:.1f} s)")
    return 0
