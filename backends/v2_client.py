"""``v2``: a client for any KServe v2 (Open Inference Protocol) server; the model is the endpoint's URL.

``--model http://HOST:PORT/v2/models/NAME`` (``/versions/V`` too) for the REST protocol, or
``--model grpc://HOST:PORT/NAME`` for the gRPC one (:mod:`harness.serving.v2_grpc`). At load the client reads
the model's metadata (input names, datatypes, shapes) and readiness; an unreachable server or a model that is
not ready is a :class:`HarnessError` (the run's preflight asks before the first job, :meth:`V2Detector.preflight`).

Each frame is sent as raw RGB pixels (``--opt encoding=raw``, the default: a UINT8 [1,H,W,3] input) or as a
JPEG/PNG (``encoding=jpeg|png``, ``quality=``: a BYTES input, base64 in JSON). Over gRPC both travel as the
tensor's bytes (``raw_input_contents``), not as JSON. The three stages are timed as a client sees them, the
same way on both protocols: *pre* = encoding the frame and serializing the request body, *infer* = the request
(send, the server's work, receive), *post* = parsing the response into canonical detections. When the server
reports its own stage times as response parameters (``harness serve`` does), they go into per-frame columns
``server_*_ms``, and ``net_ms`` = infer minus the server's total: transfer, HTTP/gRPC and the server
framework's own overhead. Outputs are read by name: ``boxes/scores/classes`` (pixels x1,y1,x2,y2,
``harness serve``) or the OD API's ``detection_boxes/detection_scores/detection_classes/num_detections``
(normalized y1,x1,y2,x2, an SSD exported whole). Placement is what the server reports (``placement``
parameter), marked remote.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any, ClassVar

import numpy as np

from harness.core.detections import Detections, convert_boxes
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings
from harness.core.errors import BackendUnavailable, HarnessError, ModelError
from harness.serving.protocol import SERVER_STAGES, server_stage_times

ENCODINGS = ("raw", "jpeg", "png")
CANONICAL = ("boxes", "scores", "classes")
OD_API = ("detection_boxes", "detection_scores", "detection_classes")


def parse_endpoint(url: str | None) -> tuple[str, str]:
    """``http://host:port/v2/models/NAME[/versions/V]`` -> (base URL ``http://host:port``, model path), or a
    :class:`HarnessError` showing the expected form."""
    expected = ("give the model's v2 URL, e.g. --model http://127.0.0.1:8000/v2/models/ssd (or its gRPC address, "
                "grpc://127.0.0.1:8001/ssd)")
    if not url:
        raise HarnessError("backend v2 needs the endpoint as --model", expected)
    parts = urllib.parse.urlsplit(str(url))
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or not parts.netloc or segments[:2] != ["v2", "models"] \
            or len(segments) not in (3, 5) or (len(segments) == 5 and segments[3] != "versions"):
        raise HarnessError(f"--model {url!r} is not a v2 model URL", expected)
    return f"{parts.scheme}://{parts.netloc}", "/" + "/".join(segments)


def _import_urllib3() -> Any:
    try:
        import urllib3
    except ImportError as exc:
        raise BackendUnavailable(f"urllib3 is not installed ({exc})", "pip install -e '.[serve]'") from exc
    return urllib3


def _get(pool: Any, url: str, timeout: float) -> tuple[int, bytes]:
    urllib3 = _import_urllib3()
    try:
        resp = pool.request("GET", url, timeout=urllib3.Timeout(total=timeout), retries=False)
    except urllib3.exceptions.HTTPError as exc:
        raise ModelError(f"the v2 server at {url} cannot be reached ({type(exc).__name__}: {_reason(exc)})",
                         "start it (e.g. `harness serve -b onnxruntime`), or check the host, port and that "
                         "nothing blocks it") from None
    return resp.status, resp.data


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc).split(": ", 1)[-1][:200]


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data.get("error") or data.get("detail") or data)[:300]
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")


def is_grpc(url: str | None) -> bool:
    return str(url or "").lower().startswith("grpc://")


def check_endpoint(url: str | None, timeout: float = 10.0, pool: Any = None) -> dict[str, Any]:
    """The model's metadata, once the server answers and says the model is ready; otherwise one
    :class:`ModelError` naming which of the two failed and how to fix it."""
    if is_grpc(url):
        from harness.serving.v2_grpc import GrpcEndpoint

        endpoint = GrpcEndpoint(str(url), timeout)
        try:
            return endpoint.check()
        finally:
            endpoint.close()
    base, path = parse_endpoint(url)
    pool = pool or _import_urllib3().PoolManager(maxsize=1)
    status, body = _get(pool, base + path + "/ready", timeout)
    if status == 404:
        raise ModelError(f"the v2 server at {base} has no model {path.rsplit('/', 1)[-1]!r} ({_error_text(body)})",
                         f"check the name in the URL (GET {base}/v2/models lists nothing by the protocol; "
                         "`harness serve` prints its model's URL when it starts)")
    if status != 200:
        raise ModelError(f"the model at {url} is not ready (HTTP {status}: {_error_text(body)})",
                         "wait until the server prints that it serves the model, then run again")
    status, body = _get(pool, base + path, timeout)
    if status != 200:
        raise ModelError(f"the model at {url} gives no metadata (HTTP {status}: {_error_text(body)})",
                         "the server must implement GET /v2/models/NAME (the v2 protocol's model metadata)")
    return json.loads(body)


class V2Detector(Detector):
    name = "v2"
    remote: ClassVar[bool] = True
    # grpc:// models need grpcio and protobuf too; both come with the serve extra (MLServer), as these two do
    distributions: ClassVar[tuple[str, ...]] = ("urllib3", "orjson")
    modules: ClassVar[tuple[str, ...]] = ("urllib3", "orjson")
    known_options: ClassVar[dict[str, str]] = {
        "encoding": "how frames travel: raw (UINT8 RGB tensor, default) | jpeg | png (BYTES, base64 in JSON)",
        "quality": "JPEG quality 1-100 (default 90)",
        "input": "the input tensor to fill (default: the first one of the encoding's datatype in the metadata)",
        "timeout": "seconds one request may take (default 60)",
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.grpc: Any = None  # the GrpcEndpoint of a grpc:// model, once loaded
        if is_grpc(config.model):
            from harness.serving.v2_grpc import parse_grpc_endpoint

            target, name, version = parse_grpc_endpoint(str(config.model))
            self.base, self.path = f"grpc://{target}", "/" + name + (f"/versions/{version}" if version else "")
        else:
            self.base, self.path = parse_endpoint(config.model)
        self.encoding = str(config.option("encoding", "raw")).lower()
        if self.encoding not in ENCODINGS:
            raise HarnessError(f"--opt encoding={self.encoding}: unknown", f"use one of {', '.join(ENCODINGS)}")
        self.quality = int(config.option("quality", 90))
        if not 1 <= self.quality <= 100:
            raise HarnessError(f"--opt quality={self.quality}: expected 1-100", "90 is the default")
        self.timeout = float(config.option("timeout", 60))
        self.metadata: dict[str, Any] = {}
        self.input_name = ""
        self.last_params: dict[str, Any] = {}
        self._pool: Any = None

    @classmethod
    def preflight(cls, config: DetectorConfig) -> None:
        """Before the first job: the server answers and the model is ready (else one :class:`ModelError`)."""
        check_endpoint(config.model, timeout=float(config.option("timeout", 10)))

    def load(self) -> None:
        if is_grpc(self.config.model):
            from harness.serving.v2_grpc import GrpcEndpoint

            self.grpc = GrpcEndpoint(str(self.config.model), self.timeout)
            self.metadata = self.grpc.check()
        else:
            urllib3 = _import_urllib3()
            self._pool = urllib3.PoolManager(maxsize=1, headers={"Content-Type": "application/json"})
            self.metadata = check_endpoint(self.config.model, self.timeout, self._pool)
        self.input_name = self._choose_input(self.metadata.get("inputs") or [])

    def _choose_input(self, inputs: list[dict[str, Any]]) -> str:
        wanted = "UINT8" if self.encoding == "raw" else "BYTES"
        named = self.config.option("input")
        fits = [i for i in inputs if i.get("datatype") == wanted and (named is None or i.get("name") == named)]
        if wanted == "UINT8":
            fits = [i for i in fits if len(i.get("shape") or []) == 4 and i["shape"][3] in (3, -1)]
        if not fits:
            offered = ", ".join(f"{i.get('name')} {i.get('datatype')} {i.get('shape')}" for i in inputs) or "none"
            other = "--opt encoding=jpeg" if self.encoding == "raw" else "--opt encoding=raw"
            raise ModelError(f"the model at {self.config.model} has no {wanted} input for encoding={self.encoding}"
                             + (f" named {named!r}" if named else "") + f" (its inputs: {offered})",
                             f"try {other}, or --opt input=NAME")
        shape = fits[0].get("shape") or []
        if wanted == "UINT8" and any(int(s) > 0 for s in shape[1:3]):
            raise ModelError(f"the model's input {fits[0]['name']} has a fixed size {shape}",
                             "the v2 client sends whole frames: serve a model that takes any size (or resize "
                             "the source to that size)")
        return str(fits[0]["name"])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()
        if self.grpc is not None:
            self.grpc.close()

    # the three timed stages ------------------------------------------------------------------------------
    def preprocess(self, frame_bgr: np.ndarray) -> bytes:
        import orjson

        if self.encoding == "raw":
            rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
            if self.grpc is not None:  # the tensor's bytes, not JSON numbers
                from harness.serving.v2_grpc import encode_infer

                return encode_infer(self.grpc.model, self.grpc.version, self.input_name, "UINT8", [1, *rgb.shape],
                                    rgb.tobytes())
            tensor = {"name": self.input_name, "datatype": "UINT8", "shape": [1, *rgb.shape], "data": rgb.reshape(-1)}
        else:
            import cv2

            params = [cv2.IMWRITE_JPEG_QUALITY, self.quality] if self.encoding == "jpeg" else []
            ok, buf = cv2.imencode("." + self.encoding.replace("jpeg", "jpg"), frame_bgr, params)
            if not ok:
                raise ModelError(f"OpenCV could not encode a frame as {self.encoding}", "use --opt encoding=raw")
            if self.grpc is not None:  # the encoded image as one BYTES element, no base64
                from harness.serving.v2_grpc import encode_infer, pack_bytes

                return encode_infer(self.grpc.model, self.grpc.version, self.input_name, "BYTES", [1],
                                    pack_bytes([buf.tobytes()]))
            tensor = {"name": self.input_name, "datatype": "BYTES", "shape": [1],
                      "data": [base64.b64encode(buf.tobytes()).decode("ascii")]}
        return orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)

    def infer(self, inputs: bytes) -> bytes:
        if self.grpc is not None:
            return self.grpc.infer(inputs)
        urllib3 = _import_urllib3()
        url = self.base + self.path + "/infer"
        try:
            resp = self._pool.request("POST", url, body=inputs, timeout=urllib3.Timeout(total=self.timeout),
                                      retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ModelError(f"the v2 server at {self.base} stopped answering ({type(exc).__name__}: {_reason(exc)})",
                             "see the server's log: it may have died or been stopped mid-run") from None
        if resp.status != 200:
            raise ModelError(f"the v2 server refused a frame (HTTP {resp.status}: {_error_text(resp.data)})",
                             "see the server's log; --opt encoding=jpeg sends smaller requests")
        return resp.data

    def postprocess(self, raw: bytes, frame_size: tuple[int, int]) -> Detections:
        if self.grpc is not None:
            from harness.serving.v2_grpc import decode_infer

            arrays, params = decode_infer(raw)
            outputs: dict[str, Any] = {name: {"data": a, "shape": a.shape} for name, a in arrays.items()}
        else:
            import orjson

            reply = orjson.loads(raw)
            outputs = {o["name"]: o for o in reply.get("outputs") or []}
            params = dict(reply.get("parameters") or {})
        self.last_params = params

        def tensor(name: str, dtype: Any) -> np.ndarray:
            out = outputs[name]
            return np.asarray(out["data"], dtype=dtype).reshape([int(s) for s in out["shape"]])

        if all(k in outputs for k in CANONICAL):
            boxes = tensor("boxes", np.float32).reshape(-1, 4)
            scores, classes = tensor("scores", np.float32).reshape(-1), tensor("classes", np.float64).reshape(-1)
        elif all(k in outputs for k in OD_API):
            boxes = convert_boxes(tensor("detection_boxes", np.float32).reshape(-1, 4), "yxyx", "xyxy",
                                  frame_size=frame_size, src_normalized=True)
            scores = tensor("detection_scores", np.float32).reshape(-1)
            classes = tensor("detection_classes", np.float64).reshape(-1)
        else:
            raise ModelError(f"the model's outputs {sorted(outputs)} are not detections the v2 client reads",
                             "serve boxes/scores/classes (harness serve) or the OD API's detection_* outputs")
        count = len(scores)
        for name in ("num_detections",):
            if name in outputs:
                count = int(tensor(name, np.float64).reshape(-1)[0])
        dets = Detections(boxes[:count], scores[:count], classes[:count], frame_size,
                          label_space=str(params.get("label_space", "coco")))
        server = server_stage_times(params)
        if server is not None:
            dets.extra["columns"] = {k: round(v, 4) for k, v in server.items()}
        return dets

    def detect(self, frame_bgr: np.ndarray) -> tuple[Detections, Any]:
        dets, stages = super().detect(frame_bgr)
        columns = dets.extra.get("columns")
        if columns is not None:  # what the request cost beyond the server's own work
            columns["net_ms"] = round(stages.infer_ns / 1e6 - sum(columns[k] for k in SERVER_STAGES), 4)
        return dets, stages

    # reporting ---------------------------------------------------------------------------------------------
    def placement(self) -> Placement:
        where = self.last_params.get("placement")
        evidence = self.last_params.get("placement_evidence")
        actual = f"{where} (remote, {self.base})" if where else f"remote ({self.base}, not reported)"
        return Placement(self.config.device, actual,
                         f"reported by the server in its response parameters: {evidence}" if evidence
                         else "the server reports no placement parameter")

    def thread_settings(self) -> ThreadSettings:
        return ThreadSettings()

    def model_details(self) -> dict[str, Any]:
        return {"endpoint": self.base + self.path, "input": self.input_name, "encoding": self.encoding,
                "quality": self.quality if self.encoding == "jpeg" else None,
                "server_backend": self.last_params.get("backend"), "metadata": self.metadata}
