"""``harness assets``: what named models and data exist, where each resolves from, and are they intact.

``list`` only looks for files (fast, hashes nothing); ``verify`` hashes every file against its manifest (a
generated file against the record of what it was made from); ``fetch`` downloads what is missing into the
cache (verified before it lands) and makes the generated files; ``path`` prints where a file resolves.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.data import assets
from harness.core.errors import AssetError

EPILOG = """\
Examples:
  harness assets list                       every asset, its kind, where it resolves from, its licence
  harness assets show coco128               files, checksums, sources and notes of one asset
  harness assets verify                     hash every present file against its manifest
  harness assets verify pets09-s2l1 --strict   also fail when a file is missing
  harness assets fetch tflite-coco-ssd-mobilenet-v1-quant   download what is missing into the cache
  harness assets fetch pets09-s2l1          the video and ground truth, then seqinfo.ini made from the video
  harness assets path coco128 images        print the resolved path of one file/folder

Files resolve from: an explicit path > a Python package that ships them > the folders in HARNESS_ASSETS >
the cache (HARNESS_CACHE, default ~/.cache/detector-harness) > a verified download (HARNESS_OFFLINE=1 forbids)
> a generator that makes the file from others (files with no hosted copy; `harness convert` makes them all).
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "assets",
        help="list, verify and fetch named models and data",
        description="Named models and data sets (manifests in datasets/*.toml): where they resolve from, "
        "checksum verification, verified downloads into the cache.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="assets_action", metavar="ACTION")
    ls = actions.add_parser("list", help="each asset: kind, where it resolves from (or missing), licence")
    ls.set_defaults(func=run_list)
    show = actions.add_parser("show", help="one asset's files, checksums, sources and notes")
    show.add_argument("name")
    show.set_defaults(func=run_show)
    ver = actions.add_parser("verify", help="check every present file's sha256 against its manifest")
    ver.add_argument("names", nargs="*", help="asset names (default: all)")
    ver.add_argument("--strict", action="store_true", help="a missing file is a failure too")
    ver.set_defaults(func=run_verify)
    fe = actions.add_parser("fetch", help="download an asset's missing files into the cache")
    fe.add_argument("names", nargs="*", help="asset names")
    fe.add_argument("--all", action="store_true", help="every asset")
    fe.set_defaults(func=run_fetch)
    pa = actions.add_parser("path", help="print the resolved path of an asset's file (verified)")
    pa.add_argument("name")
    pa.add_argument("role", nargs="?", help="the file's role (default: the asset's primary file)")
    pa.set_defaults(func=run_path)
    p.set_defaults(func=run_list)


def run(args: argparse.Namespace) -> int:
    """Entry point when called without an action: the list."""
    return run_list(args)


def _where(manifest: assets.Manifest) -> str:
    """Where an asset's files are, in one cell: the origin(s), or what is missing and whether it can be fetched."""
    origins: dict[str, int] = {}
    missing: list[assets.AssetFile] = []
    for role, spec in manifest.files.items():
        found = assets.locate_file(manifest, role)
        if found is None:
            missing.append(spec)
        else:
            origins[found.origin] = origins.get(found.origin, 0) + 1
    if not missing:
        return "+".join(origins)
    total = len(manifest.files)
    stuck = [s.role for s in missing if not (s.downloadable or s.generated)]
    if stuck:
        how = "not downloadable: " + ", ".join(stuck)
    else:
        how = "+".join(w for w, on in (("fetchable", any(s.downloadable for s in missing)),
                                       ("generated on use", any(s.generated for s in missing))) if on)
    return f"missing {len(missing)}/{total} ({how})"


def _table(rows: list[list[str]], out: Any) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]
        print("  ".join(cells).rstrip(), file=out)


def run_list(args: argparse.Namespace) -> int:
    manifests = assets.load_manifests()
    if not manifests:
        print("no asset manifests found (looked in: "
              f"{', '.join(str(d) for d in assets.manifest_dirs()) or 'nothing'})", file=sys.stderr)
        return 1
    rows = [["NAME", "KIND", "FILES", "WHERE", "LICENCE"]]
    for name, m in sorted(manifests.items()):
        rows.append([name, m.kind, str(len(m.files)), _where(m), _short(m.licence, 70)])
    _table(rows, sys.stdout)
    roots = assets.asset_roots()
    print(f"\n{assets.ASSETS_ENV}: {', '.join(map(str, roots)) if roots else '(unset)'}   "
          f"cache: {assets.cache_dir()}   downloads: {'off' if assets.offline() else 'on'}")
    return 0


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def run_show(args: argparse.Namespace) -> int:
    m = assets.get_manifest(args.name)
    print(f"{m.name} ({m.kind}): {m.description}")
    for label, value in (("licence", m.licence), ("citation", m.citation), ("source", m.source),
                         ("manifest", m.manifest_path)):
        if value:
            print(f"  {label}: {value}")
    for key, value in m.meta.items():
        print(f"  {key}: {value}")
    for role, spec in m.files.items():
        found = assets.locate_file(m, role)
        where = f"{found.origin}: {found.path}" if found else "missing"
        kind = f"folder of {len(spec.checksums or {})} files" if spec.is_folder else "file"
        print(f"  [{role}] {spec.path} ({kind}{', primary' if role == m.primary else ''})")
        print(f"      at: {where}")
        if spec.sha256:
            print(f"      sha256: {spec.sha256}" + (" (of a placed copy; a generated one is checked against the "
                                                   "record of what it was made from)" if spec.generated else ""))
        print(f"      source: {spec.source_text if spec.obtainable else 'none (see note)'}")
        if spec.needed_by is not None:
            print(f"      needed by: {', '.join(spec.needed_by) + ' jobs' if spec.needed_by else 'no job by default (options and tools may use it)'}")
        if spec.note:
            print(f"      note: {spec.note}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    manifests = assets.load_manifests()
    names = args.names or sorted(manifests)
    bad = missing = ok = 0
    for name in names:
        m = assets.get_manifest(name)
        for role, spec in m.files.items():
            found = assets.locate_file(m, role)
            label = f"{name}:{role}"
            if found is None:
                missing += 1
                how = ("harness assets fetch " + name if spec.downloadable else
                       "made on first use, or by harness convert" if spec.generated else "no download source")
                print(f"MISSING   {label}  {spec.path}  ({how})")
                continue
            try:
                assets.verify_resolved(m, found)
            except AssetError as exc:
                bad += 1
                print(f"BAD       {label}  {exc.problem}\n          fix: {exc.fix}")
                continue
            ok += 1
            what = f"{len(spec.checksums or {})} files" if spec.is_folder else \
                "checked against the record of what it was made from" if found.origin == "generated" else \
                ("no checksum" if not spec.sha256 else "")
            print(f"ok        {label}  {found.origin}: {found.path}" + (f"  ({what})" if what else ""))
    print(f"\n{ok} ok, {bad} bad, {missing} missing")
    return 1 if bad or (args.strict and missing) else 0


def run_fetch(args: argparse.Namespace) -> int:
    names = sorted(assets.load_manifests()) if args.all else args.names
    if not names:
        raise AssetError("no asset named", "give asset names (see `harness assets list`) or --all")
    for name in names:
        for r in assets.fetch(name):
            verb = "downloaded" if r.origin == "download" else f"present ({r.origin})"
            print(f"{name}:{r.role}  {verb}  {r.path}")
    return 0


def run_path(args: argparse.Namespace) -> int:
    m = assets.get_manifest(args.name)
    print(assets.resolve_file(m, args.role).path)
    return 0
