"""Small hostile inputs, each refused with one ``error:`` + ``fix:`` (exit 2) before anything is made: Ray
addresses that cannot be a cluster, Ray flags without the Ray executor, sweep levels given twice, rates the
clock cannot keep, an infinite compare threshold, a doctor device that does not exist; and job ids that keep a
rate's exponent readable.

Each case runs the real command line in a process of its own (as a user types it) with the results folder
pointed at a temporary path, then checks the message, that no folder was made and that an existing folder's
``jobs.json`` was not touched. No case reaches a framework or the network: the closed port is on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released: the kernel refuses connections to it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


RUN = ("run", "-b", "tf1", "--frames", "5", "--no-report", "-q")

#: (id, argv after the results folder is filled in as {out}, words the error must contain)
CASES = [
    ("ray-address-garbage", [*RUN, "--executor", "ray", "--address", "garbage", "--out", "{out}"],
     ["'garbage' is not a Ray cluster address"]),
    ("ray-address-port-out-of-range", [*RUN, "--executor", "ray", "--address", "127.0.0.1:99999", "--out", "{out}"],
     ["invalid port"]),
    ("ray-address-closed-port", [*RUN, "--executor", "ray", "--address", "127.0.0.1:{port}", "--out", "{out}"],
     ["cannot reach the Ray cluster's head", "refused"]),
    ("jobs-per-node-without-ray", [*RUN, "--jobs-per-node", "2", "--out", "{out}"],
     ["--jobs-per-node is a setting of the Ray executor", "--executor process"]),
    ("node-retries-without-ray", [*RUN, "--node-retries", "0", "--out", "{out}"],
     ["--node-retries is a setting of the Ray executor"]),
    ("batch-level-twice", [*RUN, "--scenario", "offline", "--batch", "2,2", "--out", "{out}"],
     ["duplicate sweep level", "2 is given twice"]),
    ("fps-levels-alike", [*RUN, "--scenario", "realtime", "--fps", "10,10.0000001", "--out", "{out}"],
     ["duplicate sweep level", "10 and 10.0000001 are the same level"]),
    ("fps-too-slow-to-time", [*RUN, "--scenario", "realtime", "--fps", "1e-300", "--out", "{out}"],
     ["fps 1e-300", "not a rate the harness can time"]),
    ("compare-threshold-inf", ["compare", "{out}", "{out}", "--threshold", "inf"],
     ["--threshold must be a finite percentage"]),
    ("doctor-device-banana", ["doctor", "--device", "banana"], ["unknown device 'banana'"]),
]


@pytest.mark.parametrize("argv, words", [pytest.param(a, w, id=i) for i, a, w in CASES])
@pytest.mark.parametrize("folder", ["new", "existing"])
def test_refused_before_anything_is_made(tmp_path: Path, argv: list[str], words: list[str], folder: str) -> None:
    out = tmp_path / "results"
    if folder == "existing":  # a finished run's folder: its plan must survive a refused command
        out.mkdir()
        (out / "jobs.json").write_text('{"kept": true}\n')
    elif "compare" in argv:
        out.mkdir()  # compare reads two folders; the threshold is refused before either is read
    filled = [a.format(out=out, port=closed_port()) for a in argv]
    start = time.monotonic()
    done = harness(*filled)
    took = time.monotonic() - start
    err = done.stderr
    print(err)
    assert done.returncode == 2, (done.returncode, err)
    assert err.startswith("error: ") and "\n  fix: " in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 3, err  # one error and its fix, no framework's warnings
    for word in words:
        assert word in err, (word, err)
    assert took < 60, f"took {took:.1f} s to refuse"
    if folder == "existing":
        assert (out / "jobs.json").read_text() == '{"kept": true}\n'
        assert sorted(p.name for p in out.iterdir()) == ["jobs.json"]
    elif "compare" not in argv:
        assert not out.exists(), "a refused run made its results folder"


@pytest.mark.parametrize("rates, ids", [
    ("1e308,2e-05", ["realtime-1e308fps", "realtime-2e-05fps"]),
    ("0.5,25", ["realtime-0.5fps", "realtime-25fps"]),
])
def test_rate_job_ids_keep_the_exponents_sign(rates: str, ids: list[str]) -> None:
    """``1e+308`` would become ``1e-308`` once the id's ``+`` is replaced: write the exponent without it."""
    done = harness("run", "-b", "tf1", "--scenario", "realtime", "--fps", rates, "--list")
    assert done.returncode == 0, done.stderr
    listed = [line.strip() for line in done.stdout.splitlines() if line.startswith("  tf1_")]
    assert [job.rsplit("_", 1)[-1] for job in listed] == ids, listed
