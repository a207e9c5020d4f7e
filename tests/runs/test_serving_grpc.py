"""`harness serve --grpc-port` and the v2 client over gRPC (``--model grpc://HOST:PORT/NAME``).

A real third-party client (tritonclient's gRPC client) against `harness serve`, the harness's own client
against it box for box with in-process onnxruntime, and a run that puts the gRPC-served job beside its
in-process twin. Every server is started on 127.0.0.1 by the test and stopped by it.

tritonclient's generated messages and MLServer's share protobuf's default pool and cannot be imported into
one process; nothing here imports MLServer (the servers are other processes), and the harness's client uses
a private pool, so it lives beside either.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.registry import available_backends, create_detector
from harness.serving.server import free_port
from tests.conftest import has_module
from tests.helpers.served import ROOT, Served, served_environ

pytestmark = [pytest.mark.skipif(not (has_module("mlserver") and has_module("onnxruntime") and has_module("grpc")),
                                 reason="the serve extra (mlserver, grpcio) or onnxruntime is not installed"),
              pytest.mark.timeout(900)]

V2 = "v2" if "v2" in available_backends() else "backends.v2_client:V2Detector"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    server = Served(grpc=True)
    yield server
    assert server.stop() == 0, server.log()


def test_tritonclient_grpc_gets_metadata_readiness_and_the_in_process_boxes(served: Served, pets_frames,
                                                                           in_process) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(served.grpc_url.split("/")[2])
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("ssd")
        meta = client.get_model_metadata("ssd", as_json=True)
        assert {(i["name"], i["datatype"]) for i in meta["inputs"]} == {("image", "BYTES"), ("frames", "UINT8")}
        assert [o["name"] for o in meta["outputs"]] == ["boxes", "scores", "classes", "num_detections"]
        for frame in pets_frames[:3]:
            rgb = np.ascontiguousarray(frame[:, :, ::-1])[None]
            inp = grpcclient.InferInput("frames", list(rgb.shape), "UINT8")
            inp.set_data_from_numpy(rgb)  # raw_input_contents: the tensor's bytes
            result = client.infer("ssd", [inp])
            n = int(result.as_numpy("num_detections")[0])
            want, _ = in_process.detect(frame)
            assert n == len(want.scores) and n > 0
            np.testing.assert_array_equal(result.as_numpy("boxes")[0, :n], want.boxes)
            np.testing.assert_array_equal(result.as_numpy("scores")[0, :n], want.scores)
            np.testing.assert_array_equal(result.as_numpy("classes")[0, :n], want.class_ids)
            params = result.get_response(as_json=True)["parameters"]
            # gRPC parameters carry no floats in MLServer: the stage times arrive as integer nanoseconds
            assert int(params["server_infer_ns"]["int64_param"]) > 0
            assert params["placement"]["string_param"] == "cpu"
        # a JPEG as one BYTES element: its bytes, no base64
        import cv2

        ok, jpg = cv2.imencode(".jpg", pets_frames[0], [cv2.IMWRITE_JPEG_QUALITY, 95])
        inp = grpcclient.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([jpg.tobytes()], dtype=object))
        result = client.infer("ssd", [inp])
        want, _ = in_process.detect(cv2.imdecode(jpg, cv2.IMREAD_COLOR))
        n = int(result.as_numpy("num_detections")[0])
        np.testing.assert_array_equal(result.as_numpy("boxes")[0, :n], want.boxes)

        # refusals: a message each, and the server answers the next request
        with pytest.raises(InferenceServerException) as refused:
            client.unload_model("ssd")
        assert refused.value.status() == "StatusCode.PERMISSION_DENIED" and "only the model" in refused.value.message()
        short = grpcclient.InferInput("frames", [5], "UINT8")
        short.set_data_from_numpy(np.zeros(5, np.uint8))
        short.set_shape([1, 4, 4, 3])  # 5 bytes sent for 48 values
        with pytest.raises(InferenceServerException) as refused:
            client.infer("ssd", [short])
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and "5 values" in refused.value.message()
        assert client.is_model_ready("ssd")
        assert int(client.infer("ssd", [inp]).as_numpy("num_detections")[0]) == n
    finally:
        client.close()


def test_the_harness_client_over_grpc_gets_the_in_process_boxes(served: Served, pets_frames, in_process) -> None:
    client = create_detector(V2, DetectorConfig(model=served.grpc_url))
    client.load()
    try:
        assert client.input_name == "frames"
        for frame in pets_frames:
            got, stages = client.detect(frame)
            want, _ = in_process.detect(frame)
            assert len(want.scores) > 0
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.scores, want.scores)
            np.testing.assert_array_equal(got.class_ids, want.class_ids)
            columns = got.extra["columns"]
            assert columns["server_infer_ms"] > 0 and columns["net_ms"] >= 0  # the server's work fits in the request
            assert stages.infer_ns / 1e6 == pytest.approx(
                columns["net_ms"] + sum(columns[k] for k in columns if k.startswith("server_")), abs=0.01)
        assert client.placement().actual == f"cpu (remote, grpc://127.0.0.1:{served.grpc_port})"
    finally:
        client.close()
    jpeg = create_detector(V2, DetectorConfig(model=served.grpc_url, options={"encoding": "jpeg", "quality": 95}))
    jpeg.load()
    try:
        assert jpeg.input_name == "image" and len(jpeg.detect(pets_frames[0])[0].scores) > 0
    finally:
        jpeg.close()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_grpc_served_job_beside_its_in_process_twin(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "harness", "run", "-b", "onnxruntime", "-b", V2, "--model",
                           served.grpc_url, "--video", "pets09-s2l1", "--frames", "10", "--warmup", "1",
                           "--threads", "1", "--out", str(out)], cwd=ROOT, env=served_environ(), text=True,
                          capture_output=True, timeout=600)
    assert (out / "runs.csv").is_file(), done.stderr[-3000:]
    runs = {r["backend"]: r for r in _rows(out / "runs.csv")}
    assert all(r["status"] == "ok" for r in runs.values()) and set(runs) == {"onnxruntime", V2}, runs
    assert runs[V2]["model"] == served.grpc_url and runs[V2]["device_actual"].startswith("cpu (remote, grpc://")
    pair = _rows(out / "serving.csv")[0]
    assert (pair["served_job"], pair["twin_job"]) == (runs[V2]["job_id"], runs["onnxruntime"]["job_id"])
    assert float(pair["agreement"]) == 1.0 and float(pair["net_ms"]) >= 0
    frames = [r for r in _rows(out / "frames.csv") if r["job_id"] == runs[V2]["job_id"]]
    assert len(frames) == 10 and all(float(r["net_ms"]) >= 0 and float(r["server_infer_ms"]) > 0 for r in frames)


def test_the_grpc_client_names_an_unknown_model_and_an_unreachable_server(served: Served) -> None:
    from harness.core.errors import ModelError

    other = create_detector(V2, DetectorConfig(model=served.grpc_url.replace("/ssd", "/other")))
    with pytest.raises(ModelError, match="has no model 'other'"):
        other.load()
    nobody = create_detector(V2, DetectorConfig(model=f"grpc://127.0.0.1:{free_port()}/ssd",
                                                options={"timeout": 5}))
    with pytest.raises(ModelError, match="cannot be reached"):
        nobody.load()


def test_no_grpc_port_is_opened_unless_asked(served_http: Served) -> None:
    """The session's plain server (tests/helpers/served.py), started without --grpc-port, listens on its HTTP
    port only."""
    import psutil

    server = served_http
    procs = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
    listening = {c.laddr.port for p in procs for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {server.port}, (listening, server.log())
