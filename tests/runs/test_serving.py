"""`harness serve` (MLServer) and the v2 client backend, against real servers and a real third-party client.

Every server here is started on 127.0.0.1 on a free port by the test and stopped by it (SIGTERM, then a
check that it exited). The hosted model is the reference SSD's ONNX conversion (onnxruntime, 1 thread).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.registry import available_backends, create_detector
from harness.serving.server import free_port
from tests.helpers.agreement import agreement
from tests.helpers.served import ROOT, Served, served_environ
from tests.conftest import has_module

pytestmark = [pytest.mark.skipif(not (has_module("mlserver") and has_module("onnxruntime")),
                                 reason="the serve extra (mlserver) or onnxruntime is not installed"),
              pytest.mark.timeout(900)]

#: the registered name once the project is (re)installed; the class path works from a source tree too
V2 = "v2" if "v2" in available_backends() else "backends.v2_client:V2Detector"


@pytest.fixture
def served(served_http: Served) -> Served:
    """The session's plain server (tests/helpers/served.py): these tests talk to it and leave it serving."""
    return served_http


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text or b"{}")
        except ValueError:
            return exc.code, {"not_json": text[:300].decode("utf-8", "replace")}


def _frames_body(frame_bgr: np.ndarray) -> bytes:
    rgb = frame_bgr[:, :, ::-1]
    return json.dumps({"inputs": [{"name": "frames", "datatype": "UINT8", "shape": [1, *rgb.shape],
                                   "data": rgb.reshape(-1).tolist()}]}).encode()


# a real v2 client this project did not write ---------------------------------------------------------------

def test_tritonclient_reads_metadata_and_gets_the_in_process_boxes(served: Served, pets_frames, in_process) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("ssd")
        meta = client.get_model_metadata("ssd")
        assert {(i["name"], i["datatype"]) for i in meta["inputs"]} == {("image", "BYTES"), ("frames", "UINT8")}
        assert [o["name"] for o in meta["outputs"]] == ["boxes", "scores", "classes", "num_detections"]
        for frame in pets_frames[:4]:
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            inp = httpclient.InferInput("frames", [1, *rgb.shape], "UINT8")
            inp.set_data_from_numpy(rgb[None], binary_data=False)
            result = client.infer("ssd", [inp])
            n = int(result.as_numpy("num_detections")[0])
            want, _ = in_process.detect(frame)
            assert n == len(want.scores) and n > 0
            np.testing.assert_array_equal(result.as_numpy("boxes")[0, :n], want.boxes)
            np.testing.assert_array_equal(result.as_numpy("scores")[0, :n], want.scores)
            np.testing.assert_array_equal(result.as_numpy("classes")[0, :n], want.class_ids)
            params = result.get_response()["parameters"]
            assert params["placement"] == "cpu" and params["backend"] == "onnxruntime"
            assert params["server_infer_ms"] > 0 and params["server_decode_ms"] >= 0
        # a JPEG as a BYTES element, base64 in JSON, as serverless detector functions take it
        import cv2

        ok, jpg = cv2.imencode(".jpg", pets_frames[0], [cv2.IMWRITE_JPEG_QUALITY, 95])
        inp = httpclient.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([base64.b64encode(jpg.tobytes())], dtype=object), binary_data=False)
        result = client.infer("ssd", [inp])
        want, _ = in_process.detect(cv2.imdecode(jpg, cv2.IMREAD_COLOR))
        n = int(result.as_numpy("num_detections")[0])
        np.testing.assert_array_equal(result.as_numpy("boxes")[0, :n], want.boxes)
    finally:
        client.close()


# the harness's client against a v2 server this project did not write --------------------------------------

def test_v2_client_agrees_with_onnxruntime_through_mlserver_start(tmp_path: Path, pets_video: Path, in_process) -> None:
    from harness.data.video import open_source

    folder = tmp_path / "models"
    (folder / "ssd").mkdir(parents=True)
    port = free_port()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_endpoint": None,
        "parallel_workers": 0, "debug": False}))
    (folder / "ssd" / "model-settings.json").write_text(json.dumps({
        "name": "ssd", "implementation": "tests.helpers.v2_server.OnnxSSD",
        "parameters": {"uri": str(in_process.model_file())},
        "inputs": [{"name": "image_tensor", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]}))
    mlserver = Path(sys.executable).with_name("mlserver")
    proc = subprocess.Popen([str(mlserver), "start", str(folder)], cwd=ROOT, env=served_environ(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v2/models/ssd"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(url + "/ready", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        else:
            pytest.fail("mlserver start did not get the model ready in 180 s")
        client = create_detector(V2, DetectorConfig(model=url))
        client.load()
        frames = [f.image for f in open_source(pets_video).frames(20)]
        served = [client.detect(f)[0] for f in frames]
        local = [in_process.detect(f)[0] for f in frames]
        client.close()
        stats = agreement(local, served, iou=0.95, min_score=0.3)
        print(f"v2 client via mlserver start vs in-process onnxruntime, 20 PETS frames: {stats}")
        assert stats["ref_boxes"] > 20
        assert stats["ref_matched"] >= 0.99 and stats["other_matched"] >= 0.99
        assert "not reported" in client.placement().actual  # that server reports no placement: said so
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# served vs in-process, through `harness run` ---------------------------------------------------------------

def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "run", *args], cwd=ROOT, env=served_environ(), text=True,
                          capture_output=True, timeout=timeout)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_served_equals_in_process_on_200_frames_and_the_columns_add_up(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _run("-b", "onnxruntime", "-b", V2, "--model", served.url, "--video", "pets09-s2l1", "--frames", "200",
                "--warmup", "2", "--threads", "1", "--out", str(out))
    runs = {r["backend"]: r for r in _rows(out / "runs.csv")}
    assert set(runs) == {"onnxruntime", V2}, done.stderr[-3000:]
    assert all(r["status"] == "ok" for r in runs.values()), runs
    assert runs[V2]["model"] == served.url and runs["onnxruntime"]["model"] != served.url  # its in-process twin
    assert runs[V2]["device_actual"].startswith("cpu (remote")
    pair = _rows(out / "agreement.csv")[0]
    assert int(pair["frames"]) == 200 and int(pair["boxes_a"]) > 200
    assert float(pair["matched_share_a"]) == float(pair["matched_share_b"]) == 1.0, pair
    assert float(pair["mean_iou"]) == pytest.approx(1.0, abs=1e-6)
    served_row = _rows(out / "serving.csv")[0]  # the served job beside its twin, as the report shows it
    assert (served_row["served_job"], served_row["twin_job"]) == (runs[V2]["job_id"], runs["onnxruntime"]["job_id"])
    assert float(served_row["agreement"]) == 1.0 and float(served_row["net_ms"]) > 0
    frames = [r for r in _rows(out / "frames.csv") if r["job_id"] == runs[V2]["job_id"]]
    assert len(frames) == 200
    server = ("server_decode_ms", "server_pre_ms", "server_infer_ms", "server_post_ms")
    for r in frames:
        e2e = float(r["pre_ms"]) + float(r["infer_ms"]) + float(r["post_ms"])
        parts = float(r["pre_ms"]) + float(r["net_ms"]) + sum(float(r[k]) for k in server) + float(r["post_ms"])
        assert parts == pytest.approx(e2e, rel=0.05)
        # the server's own work fits inside the request the client timed: its times are not made up
        assert float(r["net_ms"]) >= 0 and float(r["server_infer_ms"]) > 0


def test_server_scenario_with_two_workers_reports_the_qps_answer(tmp_path: Path) -> None:
    server = Served("--workers", "2")
    try:
        out = tmp_path / "run"
        # 6 queries a rate: each rate's row and the answer need some, not many (at 1 qps each query is a second)
        done = _run("-b", V2, "--model", server.url, "--video", "pets09-s2l1", "--scenario", "server",
                    "--qps", "1,2", "--instances", "2", "--latency-bound", "10s", "--frames", "6", "--warmup", "1",
                    "--out", str(out))
        assert (out / "scenarios.csv").is_file(), done.stderr[-3000:]
        rows = _rows(out / "scenarios.csv")
        assert rows, done.stderr[-3000:]
        text = (out / "scenarios.csv").read_text()
        assert "p99" in text and "qps" in text
        runs = _rows(out / "runs.csv")
        assert len(runs) == 2 and all(r["status"] == "ok" for r in runs), runs
        print((out / "scenarios.csv").read_text())
    finally:
        assert server.stop() == 0


# hostile requests ------------------------------------------------------------------------------------------

def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(served: Served, pets_frames) -> None:
    infer = served.url + "/infer"
    small = pets_frames[0][:64, :64]
    bad = {
        "malformed JSON": b'{"inputs": [',
        "wrong dtype": json.dumps({"inputs": [{"name": "frames", "datatype": "FP32", "shape": [1, 2, 2, 3],
                                               "data": [0.5] * 12}]}).encode(),
        "wrong shape": json.dumps({"inputs": [{"name": "frames", "datatype": "UINT8", "shape": [1, 2, 2],
                                               "data": [0] * 4}]}).encode(),
        "too few values": json.dumps({"inputs": [{"name": "frames", "datatype": "UINT8", "shape": [1, 4, 4, 3],
                                                  "data": [0] * 5}]}).encode(),
        "not an image": json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                                "data": [base64.b64encode(b"hello").decode()]}]}).encode(),
        "unknown input": json.dumps({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1],
                                                 "data": [0]}]}).encode(),
    }
    for what, body in bad.items():
        status, reply = _post(infer, body)
        assert 400 <= status < 500, (what, status, reply)
        assert reply.get("error") or reply.get("detail"), (what, reply)
        assert _post(infer, _frames_body(small))[0] == 200, f"no answer after {what}"
    status, reply = _post(infer, b"x" * (50 * 1024 * 1024))
    assert status == 413 and "cap" in reply["error"]
    status, reply = _post(served.url.replace("/ssd", "/other") + "/infer", _frames_body(small))
    assert status == 404 and "other" in reply["error"]
    status, reply = _post(f"http://127.0.0.1:{served.port}/v2/repository/models/ssd/unload", b"{}")
    assert status == 403 and "only the model" in reply["error"]
    assert _post(infer, _frames_body(small))[0] == 200


def test_a_stop_answers_the_requests_it_had_refuses_new_ones_and_exits_cleanly(pets_frames) -> None:
    import http.client

    server = Served()
    # three raw frames in one request: seconds of work, so that the stop surely comes while it is answered
    rgb = np.stack([f[:, :, ::-1] for f in pets_frames[:3]])
    body = json.dumps({"inputs": [{"name": "frames", "datatype": "UINT8", "shape": list(rgb.shape),
                                   "data": rgb.reshape(-1).tolist()}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        # returns once the whole body is sent: megabytes more than a socket buffers, so the server is reading it
        conn.request("POST", "/v2/models/ssd/infer", body, {"Content-Type": "application/json"})
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the server says it is stopping
            status, reply = _get(f"http://127.0.0.1:{server.port}/v2/health/live")
            if status == 503:
                break
            time.sleep(0.05)
        assert status == 503 and "stopping" in reply["error"], (status, reply)
        status, reply = _post(server.url + "/infer", _frames_body(pets_frames[0][:64, :64]))  # one more, while it stops
        answered = conn.getresponse()
        assert answered.status == 200, answered.read()[:300]  # the request it had is answered
        assert json.loads(answered.read())["outputs"][3]["data"]
    finally:
        conn.close()
        code = server.stop(signal.SIGTERM)
    assert status == 503 and "stopping" in reply["error"], (status, reply)  # a new one is refused with a reason
    assert code == 0, "".join(server.lines[-30:])


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# the client's failures -------------------------------------------------------------------------------------

def test_an_unreachable_server_is_one_error_before_the_first_job(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v2/models/ssd"
    done = _run("-b", V2, "--model", url, "--video", "pets09-s2l1", "--frames", "3", "--out", str(tmp_path / "r"),
                timeout=300)
    assert done.returncode == 2, done.stderr
    assert "cannot be reached" in done.stderr and "no job was started" in done.stderr
    assert done.stderr.count("cannot be reached") == 1
    assert not (tmp_path / "r" / "runs.csv").exists()


def test_a_server_that_dies_mid_run_fails_that_job_only(tmp_path: Path) -> None:
    server = Served()
    out = tmp_path / "run"
    # 30 frames: a served frame takes over 100 ms (raw pixels as JSON), so the kill 1.5 s into timing lands with
    # most of them still to come; the in-process job after it, which must still be ok, runs them all
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "-b", V2, "-b", "onnxruntime", "--model",
                             server.url, "--video", "pets09-s2l1", "--frames", "30", "--warmup", "1",
                             "--threads", "1", "--out", str(out)],
                            cwd=ROOT, env=served_environ(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen = ""
        assert proc.stdout is not None
        # the run says when the served job starts timing (a line per step when its output is not a terminal)
        timing = re.compile(r"(v2|V2Detector)_ssd_pets09-s2l1_cpu: loading .*timing 30 frames")
        while proc.poll() is None and not timing.search(seen[-400:]):
            seen += proc.stdout.read(1)
        time.sleep(1.5)  # a few frames answered; 30 take far longer
        os.killpg(server.proc.pid, signal.SIGKILL)  # the server and its worker die without a word
        server.proc.wait(30)
        rest, _ = proc.communicate(timeout=600)
        seen += rest
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = {r["backend"]: r for r in _rows(out / "runs.csv")}
    assert runs[V2]["status"] == "failed", seen[-2000:]
    assert "stopped answering" in runs[V2]["cause"]
    assert runs["onnxruntime"]["status"] == "ok", runs["onnxruntime"]
