"""Files the harness makes itself from other files of the same asset (a manifest role with a ``generator``).

Some files have no hosted copy: the OpenCV text graph of the reference SSD, a ``seqinfo.ini``. Rather than
depend on a hand-made copy, the manifest names a generator (``module:function``) and the roles it reads.
The generated file goes where a download would (``$HARNESS_CACHE/<path>``) with a record beside it
(``<file>.generated.json``): the generator, its revision, the sha256 of each input and of the output. A
record that no longer matches (inputs or generator changed, file edited) makes the file again; a copy found
under ``HARNESS_ASSETS`` is still checked against the manifest's sha256 as before.

Generators run in a child process (``python -m harness.data.assets.generate_worker``): they may import
TensorFlow or OpenCV, which must not end up in the process that runs a suite (GPU memory, start-up time).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.data.assets.checksums import file_sha256
from harness.data.assets.manifest import AssetFile, Manifest
from harness.core.errors import AssetError

RECORD_SUFFIX = ".generated.json"
ERROR_MARK = "HARNESS-GENERATOR-ERROR "
TIMEOUT_S = 900


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def read_record(path: Path) -> dict[str, Any] | None:
    """The record of a generated file, or None when ``path`` was not generated (or its record is unreadable)."""
    try:
        data = json.loads(record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def generator_revision(target: str) -> int:
    """``GENERATOR_REVISION`` of the generator's module (1 when it has none): a new revision remakes files."""
    module = importlib.import_module(target.partition(":")[0])
    return int(getattr(module, "GENERATOR_REVISION", 1))


def expected_record(spec: AssetFile, inputs: dict[str, Path]) -> dict[str, Any]:
    assert spec.generator is not None
    return {"generator": spec.generator, "revision": generator_revision(spec.generator),
            "inputs": {role: file_sha256(path) for role, path in sorted(inputs.items())}}


def is_current(spec: AssetFile, path: Path, inputs: dict[str, Path]) -> bool:
    """Whether ``path`` is what the generator would make now from ``inputs`` (and was not changed since)."""
    rec = read_record(path)
    if rec is None or not path.is_file():
        return False
    want = expected_record(spec, inputs)
    return all(rec.get(k) == v for k, v in want.items()) and rec.get("sha256") == file_sha256(path)


def _run_worker(request: dict[str, Any]) -> None:
    cmd = [sys.executable, "-m", "harness.data.assets.generate_worker", json.dumps(request)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AssetError(f"the generator {request['generator']} ran past {TIMEOUT_S} s", "run `harness convert` "
                         "alone to see what it does, or place the file under HARNESS_ASSETS") from exc
    if proc.returncode == 0:
        return
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith(ERROR_MARK):
            err = json.loads(line[len(ERROR_MARK):])
            raise AssetError(err["problem"], err.get("fix"))
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    raise AssetError(f"the generator {request['generator']} failed (exit {proc.returncode}): {tail[-400:]}",
                     "run `harness convert` to see its whole output")


def make(manifest: Manifest, spec: AssetFile, inputs: dict[str, Path], dest: Path) -> Path:
    """Run the generator of ``spec`` on ``inputs`` into ``dest`` atomically, with its record beside it."""
    assert spec.generator is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"assets: making {manifest.name}:{spec.role} ({dest.name}) from "
          f"{', '.join(p.name for p in inputs.values())} (once; kept in {dest.parent})", file=sys.stderr)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".generate-") as tmp:
        out = Path(tmp) / dest.name
        try:
            _run_worker({"generator": spec.generator, "inputs": {r: str(p) for r, p in inputs.items()},
                         "out": str(out), "meta": manifest.meta})
        except AssetError as exc:
            raise AssetError(f"{manifest.name}: cannot make {spec.path} ({spec.role}): {exc.problem}",
                             exc.fix or "see the generator's message above") from exc
        if not out.is_file():
            raise AssetError(f"{manifest.name}: the generator {spec.generator} wrote no file",
                             "a bug in the generator: report it")
        record = expected_record(spec, inputs) | {
            "asset": manifest.name, "role": spec.role, "sha256": file_sha256(out),
            "seconds": round(time.perf_counter() - t0, 1), "made": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        rec_tmp = Path(tmp) / "record.json"
        rec_tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        # the record first: a reader in between sees a record that does not match the old file and remakes it
        os.replace(rec_tmp, record_path(dest))
        os.replace(out, dest)
    return dest
