"""`harness serve`'s refusals before anything starts, and the pieces of --env/--python and gRPC that need no
server: the server's command line, the serving requirements, gRPC addresses and messages. (Servers: the slow
modules test_serving, test_serving_grpc and test_serving_env.)"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.serving.server import check_port, free_port
from tests.conftest import has_module
from tests.helpers.served import ROOT, served_environ


def _serve(*args: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`harness serve` expected to refuse before it starts: its exit code and output."""
    return subprocess.run([sys.executable, "-m", "harness", "serve", "-b", "onnxruntime", *args], cwd=ROOT,
                          env=served_environ(HARNESS_CACHE=str(tmp_path / "cache")), text=True, capture_output=True,
                          timeout=timeout)


# --env / --python -------------------------------------------------------------------------------------------

def test_an_environment_that_does_not_exist_is_exit_2_with_the_fix(tmp_path: Path) -> None:
    port = free_port()
    done = _serve("--env", "no-such-env", "--port", str(port), tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no environment named 'no-such-env'" in done.stderr and "harness env create no-such-env" in done.stderr
    assert "serving" not in done.stdout
    check_port("127.0.0.1", port, "--port")  # nothing was started on it


def test_env_and_python_together_are_refused(tmp_path: Path) -> None:
    done = _serve("--env", "x", "--python", sys.executable, tmp_path=tmp_path)
    assert done.returncode == 2 and "one server runs in one interpreter" in done.stderr, done.stderr


def test_an_interpreter_without_the_harness_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """A bare virtual environment (no pip, no harness), started from the checkout: nothing of it leaks in."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = tmp_path / "bare" / "bin" / "python"
    port = free_port()
    done = _serve("--python", str(python), "--port", str(port), tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"python {python} cannot import harness" in done.stderr
    assert f"harness env check {python} --install" in done.stderr
    assert "serving" not in done.stdout
    check_port("127.0.0.1", port, "--port")


def test_the_serving_requirements_are_the_serve_extras() -> None:
    """What the fix installs is what pyproject's serve extra pins for the server side."""
    import tomllib

    from harness.serving.elsewhere import SERVE_REQUIREMENTS

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    assert set(SERVE_REQUIREMENTS) <= set(extra), (SERVE_REQUIREMENTS, extra)


def test_the_server_command_keeps_every_option_but_where_it_runs() -> None:
    from harness.commands.serve import add_parser, forwarded_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    given = ["serve", "-b", "onnxruntime", "--model", "m.onnx", "--device", "gpu:1", "-p", "fp16", "--threads", "2",
             "--opt", "a=1", "--opt", "b=2", "--env", "x", "--name", "n", "--host", "0.0.0.0", "--port", "9",
             "--grpc-port", "0", "--workers", "3", "--max-request-mb", "5.5"]
    args = parser.parse_args(given)
    forwarded = forwarded_args(args)
    assert "--env" not in forwarded and "x" not in forwarded
    again = parser.parse_args(["serve", *forwarded])
    assert {**vars(again), "env": "x"} == vars(args)
    # only what differs from the defaults: a harness there that predates an unused option still takes it
    assert forwarded_args(parser.parse_args(["serve", "-b", "opencv", "--python", "/p"])) == ["--backend", "opencv"]


def test_the_probe_names_every_gap() -> None:
    from harness.serving.elsewhere import problems

    assert problems({"mlserver": "1.7.0", "uvloop": "0.21.0", "missing": []}, "onnxruntime") == []
    found = problems({"mlserver": "1.6.1", "uvloop": "0.22.1", "missing": ["onnxruntime"],
                      "distributions": ["onnxruntime"]}, "onnxruntime")
    assert len(found) == 3 and "1.6.1" in found[0] and "0.22.1" in found[1] and "needs onnxruntime" in found[2]
    found = problems({"mlserver_error": "ModuleNotFoundError: No module named 'mlserver'", "uvloop": None,
                      "serve_error": "ModuleNotFoundError: No module named 'harness.serving'",
                      "backend_error": "unknown backend"}, "x")
    assert [f.split(" ")[0] for f in found] == ["its", "MLServer", "backend"]
    # a backend that declares no import names: none of its framework's distributions installed
    found = problems({"mlserver": "1.7.0", "missing": [], "no_distribution": True,
                      "distributions": ["onnxruntime", "onnxruntime-gpu"]}, "onnxruntime")
    assert found == ["backend 'onnxruntime' needs its framework, and none of onnxruntime, onnxruntime-gpu is "
                     "installed there"]


# ports ----------------------------------------------------------------------------------------------------

def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HarnessError, match=f"--grpc-port {port}: cannot listen on 127.0.0.1:{port}"):
            check_port("127.0.0.1", port, "--grpc-port")
        done = _serve("--port", str(free_port()), "--grpc-port", str(port), tmp_path=tmp_path)
        assert done.returncode == 2 and "cannot listen" in done.stderr, done.stderr
    port = free_port()
    done = _serve("--port", str(port), "--grpc-port", str(port), tmp_path=tmp_path)
    assert done.returncode == 2 and "is the HTTP port too" in done.stderr, done.stderr


# gRPC addresses and messages --------------------------------------------------------------------------------

@pytest.mark.parametrize("url, parts", [
    ("grpc://127.0.0.1:8001/ssd", ("127.0.0.1:8001", "ssd", "")),
    ("grpc://[::1]:8001/ssd/versions/2", ("[::1]:8001", "ssd", "2")),
])
def test_grpc_addresses(url: str, parts: tuple[str, str, str]) -> None:
    from harness.serving.v2_grpc import parse_grpc_endpoint

    assert parse_grpc_endpoint(url) == parts


@pytest.mark.parametrize("url", ["grpc://127.0.0.1/ssd", "grpc://127.0.0.1:8001", "grpc://127.0.0.1:8001/a/b",
                                 "grpc://127.0.0.1:8001/v2/models/ssd", "grpc://127.0.0.1:8001/ssd?x=1"])
def test_grpc_addresses_refused(url: str) -> None:
    from harness.serving.v2_grpc import parse_grpc_endpoint

    with pytest.raises(HarnessError, match="grpc://127.0.0.1:8001/ssd"):
        parse_grpc_endpoint(url)


CROSS_CHECK = r"""
import sys
import numpy as np
from harness.serving.v2_grpc import decode_infer, encode_infer, messages, pack_bytes
if sys.argv[1] == "mlserver":
    import mlserver  # noqa: F401  (registers its dataplane messages in protobuf's default pool)
    from mlserver.grpc import dataplane_pb2 as pb
else:
    from tritonclient.grpc import service_pb2 as pb
messages()
frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(1, 2, 3, 3)
request = pb.ModelInferRequest.FromString(encode_infer("ssd", "2", "frames", "UINT8", [1, 2, 3, 3], frame.tobytes()))
assert (request.model_name, request.model_version) == ("ssd", "2")
tensor = request.inputs[0]
assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("frames", "UINT8", [1, 2, 3, 3])
assert request.raw_input_contents[0] == frame.tobytes()
request = pb.ModelInferRequest.FromString(encode_infer("ssd", "", "image", "BYTES", [1], pack_bytes([b"\xff\xd8ab"])))
assert request.raw_input_contents[0] == b"\x04\x00\x00\x00\xff\xd8ab"
reply = pb.ModelInferResponse(model_name="ssd")
reply.outputs.add(name="boxes", datatype="FP32", shape=[1, 1, 4])
reply.outputs.add(name="num_detections", datatype="INT32", shape=[1])
reply.raw_output_contents.extend([np.array([1, 2, 3.5, 4], "<f4").tobytes(), np.array([1], "<i4").tobytes()])
reply.parameters["server_infer_ns"].int64_param = 1234567
reply.parameters["placement"].string_param = "cpu"
outputs, params = decode_infer(reply.SerializeToString())
assert outputs["boxes"].tolist() == [[[1, 2, 3.5, 4]]] and outputs["num_detections"].tolist() == [1]
assert params == {"server_infer_ns": 1234567, "placement": "cpu"}
typed = pb.ModelInferResponse(model_name="ssd")
out = typed.outputs.add(name="scores", datatype="FP32", shape=[1, 2])
out.contents.fp32_contents.extend([0.5, 0.25])
assert decode_infer(typed.SerializeToString())[0]["scores"].tolist() == [[0.5, 0.25]]
print("agree")
"""


@pytest.mark.parametrize("other", ["mlserver", "tritonclient"])
def test_the_grpc_messages_read_and_are_read_by_mlservers_and_tritonclients(other: str) -> None:
    """The client's messages beside either package's generated ones in one process (they collide with each
    other in protobuf's default pool, not with the client's), and the same bytes on the wire."""
    module = {"mlserver": "mlserver", "tritonclient": "tritonclient.grpc"}[other]
    if not (has_module("grpc") and has_module(module.split(".")[0])):
        pytest.skip(f"{other} is not installed")
    done = subprocess.run([sys.executable, "-c", CROSS_CHECK, other], cwd=ROOT, env=served_environ(), text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("agree"), done.stderr[-3000:]


def test_an_unreachable_grpc_server_is_one_error_before_the_first_job() -> None:
    if not has_module("grpc"):
        pytest.skip("grpcio is not installed")
    from backends.v2_client import V2Detector
    from harness.core.detector import DetectorConfig
    from harness.core.errors import ModelError

    url = f"grpc://127.0.0.1:{free_port()}/ssd"
    with pytest.raises(ModelError, match="cannot be reached") as info:
        V2Detector.preflight(DetectorConfig(model=url, options={"timeout": 5}))
    assert "harness serve" in str(info.value.fix)
