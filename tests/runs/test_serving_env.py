"""`harness serve --python PATH` / `--env NAME`: the server runs in that interpreter, or one clear error first.

Real interpreters only: a virtual environment of its own that sees this environment's packages and this
checkout (served, answered by tritonclient; then as a registered, built environment for --env), and one
with the harness installed the project's way (`harness env check PATH --install`) but no MLServer. (The
refusals that start nothing, a bare interpreter's included: test_serving_cli.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.serving.server import check_port, free_port
from tests.conftest import has_module
from tests.helpers.served import ROOT, Served, served_environ

pytestmark = [pytest.mark.skipif(not (has_module("mlserver") and has_module("onnxruntime")),
                                 reason="the serve extra (mlserver) or onnxruntime is not installed"),
              pytest.mark.timeout(900)]


def _serve(*args: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`harness serve` expected to refuse before it starts: its exit code and output."""
    return subprocess.run([sys.executable, "-m", "harness", "serve", "-b", "onnxruntime", *args], cwd=ROOT,
                          env=served_environ(HARNESS_CACHE=str(tmp_path / "cache")), text=True, capture_output=True,
                          timeout=timeout)


def _another_interpreter(venv: Path) -> str:
    """A virtual environment of its own (another interpreter path) that imports this checkout's harness and
    this environment's packages (MLServer, onnxruntime): a .pth file names both. Why not this environment's
    interpreter under another name: it imports the harness it was installed with (an editable install may
    point at another checkout), and the server must run this one's."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    here = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "harness-checkout.pth").write_text("\n".join([str(ROOT), *here]) + "\n")
    return str(venv / "bin" / "python")


def test_python_serves_from_that_interpreter_and_answers_tritonclient(pets_video: Path, tmp_path: Path,
                                                                      in_process) -> None:
    from harness.data.video import open_source

    httpclient = pytest.importorskip("tritonclient.http")
    python = _another_interpreter(tmp_path / "other")
    server = Served("--python", python, wait_s=300)
    try:
        # the process that prints the address is the one started: replaced (exec), not a child, with the
        # other interpreter and the environment a job there gets (no PYTHONPATH from here)
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode() == python and b"--python" not in cmdline, cmdline
        assert cmdline[1:4] == [b"-m", b"harness", b"serve"]
        environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{server.proc.pid}/environ").read_bytes()
                       .split(b"\0") if b"=" in item)
        assert b"PYTHONPATH" not in environ and environ.get(b"PYTHONSAFEPATH") == b"1"
        frame = next(iter(open_source(pets_video).frames(1))).image
        rgb = np.ascontiguousarray(frame[:, :, ::-1])[None]
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert client.is_model_ready("ssd")
            inp = httpclient.InferInput("frames", list(rgb.shape), "UINT8")
            inp.set_data_from_numpy(rgb, binary_data=False)
            result = client.infer("ssd", [inp])
        finally:
            client.close()
        want, _ = in_process.detect(frame)  # the session's in-process onnxruntime, one thread
        n = int(result.as_numpy("num_detections")[0])
        assert n == len(want.scores) > 0
        np.testing.assert_array_equal(result.as_numpy("boxes")[0, :n], want.boxes)
    finally:
        code = server.stop()  # SIGTERM reaches the server itself: it was exec'd, so it is that process
    assert code == 0, server.log()
    assert "harness serve: running in" in server.log()


def test_an_interpreter_without_mlserver_is_one_error_naming_what_is_missing(tmp_path: Path) -> None:
    """The harness installed the project's way (no extras), so it imports harness but not MLServer or
    onnxruntime: one error naming both, with the command that installs them there."""
    venv = tmp_path / "plain"
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv) if uv.exists() else "uv", "venv", "-q", str(venv), "--python", sys.executable],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "harness", "env", "check", str(python), "--install"],
                               cwd=ROOT, env=served_environ(), text=True, capture_output=True, timeout=600)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    port = free_port()
    done = _serve("--python", str(python), "--port", str(port), tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"python {python} cannot run `harness serve -b onnxruntime`" in done.stderr
    assert "MLServer does not import" in done.stderr
    assert "backend 'onnxruntime' needs its framework, and none of onnxruntime" in done.stderr
    fix = done.stderr.split("fix:", 1)[1]
    assert "'mlserver>=1.7,<1.8'" in fix and "'uvloop<0.22'" in fix and "onnxruntime" in fix and str(python) in fix
    assert "serving" not in done.stdout
    check_port("127.0.0.1", port, "--port")


def test_env_serves_from_a_built_environment_and_keeps_it_from_removal(tmp_path: Path) -> None:
    """A registered environment, complete for this harness (its folder a real interpreter that sees this
    checkout and this environment's packages, as _another_interpreter makes one): the server runs there,
    and `harness env remove` refuses it while the server runs (its use lock crossed the exec)."""
    from harness.data.assets.places import cache_dir
    from harness.envs.resolve import current_key
    from harness.envs.spec import EnvSpec
    from harness.envs.store import BuildRecord, EnvStore
    from harness.core.worker_protocol import PROTOCOL_VERSION

    cache = tmp_path / "cache"
    cache.mkdir()
    for entry in cache_dir().glob("*"):  # converted models and videos as they are; environments of its own
        if entry.name != "envs":
            (cache / entry.name).symlink_to(entry)
    store = EnvStore(cache / "envs")
    spec = EnvSpec("served", ("onnxruntime",))
    store.define(spec)
    folder = store.folder(spec.name, current_key(spec))
    _another_interpreter(folder)
    store.mark_complete(folder, BuildRecord(spec.name, current_key(spec), list(spec.requirements),
                                            "3.11.0", "0.1.0", "d", "uv", PROTOCOL_VERSION))
    environ = {"HARNESS_CACHE": str(cache)}
    server = Served("--env", "served", environ=environ, wait_s=300)
    try:
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode() == str(folder / "bin" / "python"), cmdline
        removing = subprocess.run([sys.executable, "-m", "harness", "env", "remove", "served"], cwd=ROOT,
                                  env=served_environ(**environ), text=True, capture_output=True, timeout=120)
        assert removing.returncode == 2 and "in use by a running harness" in removing.stderr, removing.stderr
    finally:
        assert server.stop() == 0, server.log()
    removed = subprocess.run([sys.executable, "-m", "harness", "env", "remove", "served"], cwd=ROOT,
                             env=served_environ(**environ), text=True, capture_output=True, timeout=120)
    assert removed.returncode == 0 and not folder.exists(), removed.stderr

