"""A `harness serve` process for the serving tests: started on 127.0.0.1 on free ports, its log kept for the
failure message, stopped by the test (SIGTERM, then a check that it exited)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from harness.serving.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def served_environ(**extra: str) -> dict[str, str]:
    """This process's environment with the checkout first on PYTHONPATH (the server imports this tree)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, **extra}


class Served:
    """``harness serve -b onnxruntime --threads 1`` plus ``args``; ``grpc=True`` opens a gRPC port too.

    It waits for the ``serving http://...`` line (and ``serving grpc://...`` with gRPC), checking each is the
    address asked for."""

    def __init__(self, *args: str, name: str = "ssd", grpc: bool = False, python: str | None = None,
                 wait_s: float = 240, environ: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.grpc_port = free_port() if grpc else None
        self.url = f"http://127.0.0.1:{self.port}/v2/models/{name}"
        self.grpc_url = f"grpc://127.0.0.1:{self.grpc_port}/{name}" if grpc else None
        cmd = [python or sys.executable, "-m", "harness", "serve", "-b", "onnxruntime", "--threads", "1",
               "--name", name, "--port", str(self.port), *args]
        if grpc:
            cmd += ["--grpc-port", str(self.grpc_port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=served_environ(**(environ or {})), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.announced: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(wait_s) or self.proc.poll() is not None:
            self.stop()
            pytest.fail("harness serve did not print its addresses:\n" + self.log())
        expected = [f"serving {self.url}"] + ([f"serving {self.grpc_url}"] if grpc else [])
        assert self.announced == expected, self.log()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        wanted = 2 if self.grpc_port else 1
        for line in self.proc.stdout:  # read to the end, so that the server never blocks on a full pipe
            self.lines.append(line)
            if line.startswith("serving "):
                self.announced.append(line.strip())
                if len(self.announced) == wanted:
                    self._ready.set()

    def log(self, lines: int = 40) -> str:
        return "".join(self.lines[-lines:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and its workers
                self.proc.wait(10)
                pytest.fail("harness serve did not stop within 60 s of SIGTERM:\n" + self.log())
        return int(self.proc.returncode)


# fixtures (registered in tests/conftest.py), session-scoped so that the serving modules share them: the
# serving tests compare the served boxes with these

@pytest.fixture(scope="session")
def served_http() -> Iterator[Served]:
    """One plain ``harness serve`` (HTTP only, the defaults) for every test that only talks to it and leaves it
    running: test_serving's clients and test_serving_grpc's look at which ports it listens on. A test that
    stops, kills or configures a server starts its own."""
    server = Served()
    yield server
    assert server.stop() == 0, server.log(30)


@pytest.fixture(scope="session")
def pets_frames(pets_video: Path) -> list:
    """The first 6 PETS frames as decoded (BGR, full size): what a client sends."""
    from harness.data.video import open_source

    return [f.image for f in open_source(pets_video).frames(6)]


@pytest.fixture(scope="session")
def in_process():
    """The reference SSD in onnxruntime in this process, one thread: the boxes a served model must give."""
    from harness.core.detector import DetectorConfig
    from harness.core.registry import create_detector

    det = create_detector("onnxruntime", DetectorConfig(threads=1))
    det.load()
    yield det
    det.close()
