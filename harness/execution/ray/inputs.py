"""A job's local files on the node that runs it: used in place, shipped through Ray, or refused clearly.

Named assets (``pets09-s2l1``) need nothing from here: each node resolves them through the manifests, with
their checksums and its own cache (or its ``HARNESS_ASSETS`` folder). A video or model given as a *path* is
another matter: on a cluster the node may not have it, or may have another file at that path. So the driver
hashes every local input once (sha256; a folder: its files' relative paths and contents) and puts it into
Ray's object store (files up to :data:`SHIP_LIMIT_BYTES`; a folder as one tar). The node then:

1. uses its own file at the same path when its sha256 matches (shared storage, or the same copy everywhere);
2. else fetches the shipped copy into ``$HARNESS_CACHE/ray-inputs/<sha256>/`` (content-addressed, written
   atomically, reused by later jobs on that node) and runs the job on it;
3. else refuses the job with one clear cause: the path, the node, and why nothing was shipped.

Never a silent wrong path: a file that exists on the node but differs from the driver's is not used.
The object store and not a ``runtime_env`` working dir: a working dir is packed into Ray's GCS for every job
and capped at a few hundred MB, while an object is fetched once per node that needs it, chunked, spilled to
disk under pressure, and only by the nodes that lack the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec

#: files (or folders, as a tar) larger than this are not put into the object store: copy them to the nodes
SHIP_LIMIT_BYTES = 512 << 20
#: the local inputs a job can name: its video, its model, and the frames an int8 variant is calibrated on
#: (``--opt calibration=PATH``), which the node reads as much as the other two
ROLES = ("source", "model", "calibration")
#: how a message names each role
WHAT = {"source": "video", "model": "model", "calibration": "calibration source"}


def input_path(spec: JobSpec, role: str) -> str | None:
    """The job's local input of ``role`` (the calibration source lives in the backend options)."""
    if role == "calibration":
        value = (spec.options or {}).get("calibration")
        return value if isinstance(value, str) else None
    return getattr(spec, role)


def with_input(spec: JobSpec, changes: dict[str, str]) -> JobSpec:
    """``spec`` with the node's copies of its inputs swapped in (the job id stays the driver's)."""
    import dataclasses

    fields = {k: v for k, v in changes.items() if k != "calibration"}
    if "calibration" in changes:
        fields["options"] = {**spec.options, "calibration": changes["calibration"]}
    return dataclasses.replace(spec, **fields)


def _is_local_path(value: str | None) -> bool:
    if not value:
        return False
    from harness.results import is_path_like

    return is_path_like(value) and Path(value).expanduser().is_absolute()


def tree_sha256(folder: Path) -> str:
    """The content digest of a folder: every file's relative path and bytes, in a fixed order."""
    from harness.data.assets import file_sha256

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode("utf-8") + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def content_sha256(path: Path) -> str:
    from harness.data.assets import file_sha256

    return tree_sha256(path) if path.is_dir() else file_sha256(path)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _payload(path: Path) -> bytes:
    if not path.is_dir():
        return path.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            tar.add(item, arcname=str(item.relative_to(path)), recursive=False)
    return buffer.getvalue()


@dataclass
class Shipment:
    """One local input as the driver saw it: what the node checks its own copy against, and the shipped
    bytes (``ref`` is an ObjectRef inside a list, so Ray does not fetch it before the node asks)."""

    role: str
    path: str
    sha256: str | None  # None: the driver could not read it (a path that exists only on the nodes)
    size: int = 0
    folder: bool = False
    ref: list[Any] | None = None
    not_shipped: str = ""  # why there is no ref

    def to_payload(self) -> dict[str, Any]:
        return {"role": self.role, "path": self.path, "sha256": self.sha256, "size": self.size,
                "folder": self.folder, "ref": self.ref, "not_shipped": self.not_shipped}


class Shipper:
    """The driver side: hash and put each local input once per run, when a job first names it.

    Once per run, not per job: every job of a run reads the same bytes of a file even if it changes on the
    driver while the run goes on (the executor ships every job's inputs before the first job starts).
    """

    def __init__(self, put: Callable[[bytes], Any], limit_bytes: int = SHIP_LIMIT_BYTES) -> None:
        self._put = put
        self.limit_bytes = limit_bytes
        self._done: dict[str, Shipment] = {}

    def shipments(self, spec: JobSpec) -> list[Shipment]:
        out = []
        for role in ROLES:
            value = input_path(spec, role)
            if _is_local_path(value):
                out.append(self._ship(role, os.path.normpath(Path(value).expanduser())))
        return out

    def _ship(self, role: str, path: str) -> Shipment:
        p = Path(path)
        key = path
        if key not in self._done:
            try:
                p.stat()
            except OSError as exc:
                return Shipment(role, path, None, not_shipped=f"the driver cannot read it either ({exc.strerror})")
            size = _size(p)
            shipment = Shipment(role, path, content_sha256(p), size, p.is_dir())
            if size > self.limit_bytes:
                shipment.not_shipped = (f"it is {size / 2**20:.0f} MiB, over the shipping limit of "
                                        f"{self.limit_bytes / 2**20:.0f} MiB")
            else:
                shipment.ref = [self._put(_payload(p))]
            self._done[key] = shipment
        done = self._done[key]
        return Shipment(role, path, done.sha256, done.size, done.folder, done.ref, done.not_shipped)


# the node side ------------------------------------------------------------------------------------------

def _place(shipment: dict[str, Any], data: bytes, root: Path) -> Path:
    """Write the shipped bytes into the content-addressed cache atomically; return the file or folder."""
    from harness.data.assets import safe_extract_all

    final_dir = root / shipment["sha256"]
    name = Path(shipment["path"]).name or "input"
    target = final_dir / name
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{shipment['sha256'][:16]}-", dir=root))
    try:
        if shipment["folder"]:
            archive = tmp / "payload.tar"
            archive.write_bytes(data)
            safe_extract_all(archive, tmp / name)
            archive.unlink()
        else:
            (tmp / name).write_bytes(data)
        if content_sha256(tmp / name) != shipment["sha256"]:
            raise HarnessError(f"the shipped copy of {shipment['path']} does not have the driver's sha256",
                               "run again; if it repeats, the object store or the disk of that node is damaged")
        try:
            tmp.rename(final_dir)
        except OSError:  # another job on this node placed it first: theirs is the same content
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def place_inputs(spec: JobSpec, shipments: list[dict[str, Any]], node: str, root: Path,
                 fetch: Callable[[Any], bytes]) -> tuple[JobSpec, dict[str, Any]]:
    """The spec as this node runs it (shipped inputs swapped in) and what was done with each input.

    Raises :class:`HarnessError` naming the path and the node when a local input can be neither used in
    place nor fetched.
    """

    changes: dict[str, str] = {}
    notes: dict[str, Any] = {}
    for shipment in shipments:
        role, path = shipment["role"], shipment["path"]
        here = Path(path)
        what = WHAT[role]
        if shipment["sha256"] is None:
            if here.exists():
                notes[role] = {"path": path, "used": "the node's own (the driver could not read it to compare)"}
                continue
            raise HarnessError(
                f"{what} {path} is not on node {node}, and {shipment['not_shipped']}, so nothing was shipped",
                "give a path that exists on the nodes (shared storage), a named asset (harness assets list), "
                "or a file the driver can read so that it is shipped")
        if here.exists() and content_sha256(here) == shipment["sha256"]:
            notes[role] = {"path": path, "used": "in place (same sha256 on the node)", "sha256": shipment["sha256"]}
            continue
        seen = "differs there" if here.exists() else "is not there"
        if not shipment["ref"]:
            raise HarnessError(
                f"{what} {path} {seen} on node {node}, and it was not shipped: {shipment['not_shipped']}",
                "copy it to the same path on every node (or shared storage), give it as a named asset, or "
                "raise the limit (RayExecutor(ship_limit_mb=...))")
        placed = _place(shipment, fetch(shipment["ref"][0]), root)
        changes[role] = str(placed)
        notes[role] = {"path": path, "used": f"shipped through the object store ({seen} on the node)",
                       "node_path": str(placed), "sha256": shipment["sha256"], "bytes": shipment["size"]}
    return (with_input(spec, changes) if changes else spec), notes
