"""The v2 protocol's gRPC side, for the ``v2`` client backend: ``--model grpc://HOST:PORT/NAME``.

The messages are the KServe v2 ``GRPCInferenceService`` ones (ModelReady, ModelMetadata, ModelInfer), built
here into a **private** descriptor pool. Why not import generated ``*_pb2`` modules: MLServer's
(``mlserver.grpc.dataplane_pb2``) and tritonclient's (``tritonclient.grpc.service_pb2``) both register the
package ``inference`` in protobuf's default pool under different file names, so a process that imports one
cannot import the other ("duplicate symbol 'inference.ServerLiveRequest'"); a private pool collides with
neither, and the client needs only grpcio and protobuf (both come with the ``serve`` extra, through MLServer).

The infer call is made with bytes in and bytes out (no serializer on the channel), so the client's three
stages are timed as over HTTP: *pre* builds the request and serializes it, *infer* is the RPC alone,
*post* parses the reply. Raw frames travel as ``raw_input_contents`` (the tensor's bytes), not as JSON.
"""

from __future__ import annotations

import enum
import struct
import urllib.parse
from functools import lru_cache
from typing import Any

import numpy as np

from harness.core.errors import BackendUnavailable, HarnessError, ModelError

SERVICE = "/inference.GRPCInferenceService/"
#: what ``grpc://`` URLs look like (the model's name after the address, as tritonclient takes host and name)
EXPECTED = "give the model's gRPC address and name, e.g. --model grpc://127.0.0.1:8001/ssd"
#: numpy dtype of each v2 datatype, little-endian as the protocol's raw contents are
DTYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
          "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
#: the typed field of InferTensorContents a datatype's values are in (when not sent as raw contents)
CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
            "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def parse_grpc_endpoint(url: str) -> tuple[str, str, str]:
    """``grpc://host:port/NAME[/versions/V]`` -> (``host:port``, NAME, V or ``""``), or a :class:`HarnessError`."""
    parts = urllib.parse.urlsplit(str(url))
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "grpc" or not parts.hostname or parts.port is None or parts.query or parts.fragment \
            or len(segments) not in (1, 3) or (len(segments) == 3 and segments[1] != "versions"):
        raise HarnessError(f"--model {url!r} is not a v2 gRPC model address", EXPECTED)
    return parts.netloc, segments[0], segments[2] if len(segments) == 3 else ""


# the messages ------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def messages() -> dict[str, Any]:
    """The v2 gRPC message classes, by name, from a pool of their own (see the module docstring)."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise BackendUnavailable(f"protobuf is not installed ({exc})", "pip install -e '.[serve]'") from exc
    F = descriptor_pb2.FieldDescriptorProto
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def field(name: str, number: int, kind: int, label: int = one, type_name: str = "",
              oneof: int | None = None) -> Any:
        f = F(name=name, number=number, type=kind, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
        return f

    def message(name: str, *fields: Any, nested: tuple = ()) -> Any:
        return descriptor_pb2.DescriptorProto(name=name, field=list(fields), nested_type=list(nested))

    def params_map(owner: str, number: int) -> tuple[Any, Any]:
        """A ``map<string, InferParameter> parameters`` field of ``owner``: its entry type and the field."""
        entry = message("ParametersEntry", field("key", 1, F.TYPE_STRING),
                        field("value", 2, F.TYPE_MESSAGE, type_name=".inference.InferParameter"))
        entry.options.map_entry = True
        return entry, field("parameters", number, F.TYPE_MESSAGE, many, f".inference.{owner}.ParametersEntry")

    contents = ".inference.InferTensorContents"
    parameter = message("InferParameter", field("bool_param", 1, F.TYPE_BOOL, oneof=0),
                        field("int64_param", 2, F.TYPE_INT64, oneof=0),
                        field("string_param", 3, F.TYPE_STRING, oneof=0),
                        field("double_param", 4, F.TYPE_DOUBLE, oneof=0),
                        field("uint64_param", 5, F.TYPE_UINT64, oneof=0))
    parameter.oneof_decl.add(name="parameter_choice")
    tensor_contents = message(
        "InferTensorContents", field("bool_contents", 1, F.TYPE_BOOL, many),
        field("int_contents", 2, F.TYPE_INT32, many),
        field("int64_contents", 3, F.TYPE_INT64, many), field("uint_contents", 4, F.TYPE_UINT32, many),
        field("uint64_contents", 5, F.TYPE_UINT64, many), field("fp32_contents", 6, F.TYPE_FLOAT, many),
        field("fp64_contents", 7, F.TYPE_DOUBLE, many), field("bytes_contents", 8, F.TYPE_BYTES, many))
    name_version = (field("name", 1, F.TYPE_STRING), field("version", 2, F.TYPE_STRING))
    tensor_metadata = message("TensorMetadata", field("name", 1, F.TYPE_STRING), field("datatype", 2, F.TYPE_STRING),
                              field("shape", 3, F.TYPE_INT64, many))
    meta = ".inference.ModelMetadataResponse.TensorMetadata"

    def tensor(name: str, owner: str) -> Any:
        entry, params = params_map(owner, 4)
        return message(name, field("name", 1, F.TYPE_STRING), field("datatype", 2, F.TYPE_STRING),
                       field("shape", 3, F.TYPE_INT64, many), params,
                       field("contents", 5, F.TYPE_MESSAGE, type_name=contents), nested=(entry,))

    req_entry, req_params = params_map("ModelInferRequest", 4)
    out_entry, out_params = params_map("ModelInferRequest.InferRequestedOutputTensor", 2)
    res_entry, res_params = params_map("ModelInferResponse", 4)
    file = descriptor_pb2.FileDescriptorProto(
        name="harness/serving/v2_grpc.proto", package="inference", syntax="proto3",
        message_type=[
            parameter, tensor_contents,
            message("ModelReadyRequest", *name_version), message("ModelReadyResponse", field("ready", 1, F.TYPE_BOOL)),
            message("ModelMetadataRequest", *name_version),
            message("ModelMetadataResponse", field("name", 1, F.TYPE_STRING), field("versions", 2, F.TYPE_STRING, many),
                    field("platform", 3, F.TYPE_STRING), field("inputs", 4, F.TYPE_MESSAGE, many, meta),
                    field("outputs", 5, F.TYPE_MESSAGE, many, meta), nested=(tensor_metadata,)),
            message("ModelInferRequest", field("model_name", 1, F.TYPE_STRING),
                    field("model_version", 2, F.TYPE_STRING),
                    field("id", 3, F.TYPE_STRING), req_params,
                    field("inputs", 5, F.TYPE_MESSAGE, many, ".inference.ModelInferRequest.InferInputTensor"),
                    field("outputs", 6, F.TYPE_MESSAGE, many,
                          ".inference.ModelInferRequest.InferRequestedOutputTensor"),
                    field("raw_input_contents", 7, F.TYPE_BYTES, many),
                    nested=(req_entry, tensor("InferInputTensor", "ModelInferRequest.InferInputTensor"),
                            message("InferRequestedOutputTensor", field("name", 1, F.TYPE_STRING), out_params,
                                    nested=(out_entry,)))),
            message("ModelInferResponse", field("model_name", 1, F.TYPE_STRING),
                    field("model_version", 2, F.TYPE_STRING), field("id", 3, F.TYPE_STRING), res_params,
                    field("outputs", 5, F.TYPE_MESSAGE, many, ".inference.ModelInferResponse.InferOutputTensor"),
                    field("raw_output_contents", 6, F.TYPE_BYTES, many),
                    nested=(res_entry, tensor("InferOutputTensor", "ModelInferResponse.InferOutputTensor"))),
        ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    names = ("ModelReadyRequest", "ModelReadyResponse", "ModelMetadataRequest", "ModelMetadataResponse",
             "ModelInferRequest", "ModelInferResponse")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{n}")) for n in names}


def pack_bytes(elements: list[bytes]) -> bytes:
    """BYTES elements as raw contents: each one's length (uint32, little-endian), then the element."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def encode_infer(model: str, version: str, input_name: str, datatype: str, shape: list[int], raw: bytes) -> bytes:
    """One ModelInferRequest with one input as raw contents, serialized."""
    request = messages()["ModelInferRequest"](model_name=model, model_version=version)
    request.inputs.add(name=input_name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request.SerializeToString()


def parameter_value(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def decode_infer(body: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A serialized ModelInferResponse -> (its numeric outputs by name, its parameters)."""
    reply = messages()["ModelInferResponse"].FromString(body)
    raw = list(reply.raw_output_contents)
    outputs: dict[str, np.ndarray] = {}
    for i, out in enumerate(reply.outputs):
        shape = [int(s) for s in out.shape]
        if raw:  # the protocol: all outputs' values in raw contents, in the order of the outputs, or none
            if i >= len(raw):
                raise ModelError(f"the server's reply has {len(raw)} raw contents for {len(reply.outputs)} outputs",
                                 "the server does not follow the v2 protocol's raw contents rule")
            if out.datatype in DTYPES:
                outputs[out.name] = np.frombuffer(raw[i], dtype=DTYPES[out.datatype]).reshape(shape)
        elif out.datatype in DTYPES and out.datatype in CONTENTS:
            values = getattr(out.contents, CONTENTS[out.datatype])
            outputs[out.name] = np.asarray(values, dtype=DTYPES[out.datatype]).reshape(shape)
    return outputs, {k: parameter_value(v) for k, v in reply.parameters.items()}


# the channel ---------------------------------------------------------------------------------------------

def _import_grpc() -> Any:
    try:
        import grpc
    except ImportError as exc:
        raise BackendUnavailable(f"grpcio is not installed ({exc})", "pip install -e '.[serve]'") from exc
    return grpc


def reason(exc: Any) -> str:
    """One line of a gRPC error: its status code and details."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    shown = code.name if isinstance(code, enum.Enum) else code  # grpc.StatusCode is an Enum
    return f"{shown}: {str(details or '').splitlines()[0][:300] if details else ''}"


class GrpcEndpoint:
    """A channel to one model on a v2 gRPC server: readiness and metadata, and the bytes-in/bytes-out infer."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.target, self.model, self.version = parse_grpc_endpoint(url)
        self.timeout = timeout
        self._grpc = _import_grpc()
        # no size limit of the client's own: the server's cap decides (harness serve: --max-request-mb)
        self.channel = self._grpc.insecure_channel(self.target, options=[("grpc.max_send_message_length", -1),
                                                                         ("grpc.max_receive_message_length", -1)])
        m = messages()
        self._ready = self.channel.unary_unary(
            SERVICE + "ModelReady", request_serializer=m["ModelReadyRequest"].SerializeToString,
            response_deserializer=m["ModelReadyResponse"].FromString)
        self._metadata = self.channel.unary_unary(
            SERVICE + "ModelMetadata", request_serializer=m["ModelMetadataRequest"].SerializeToString,
            response_deserializer=m["ModelMetadataResponse"].FromString)
        self._infer = self.channel.unary_unary(SERVICE + "ModelInfer")  # bytes in, bytes out

    @property
    def base(self) -> str:
        return f"grpc://{self.target}"

    def check(self) -> dict[str, Any]:
        """The model's metadata as the REST side gives it (``inputs``/``outputs`` with name, datatype, shape),
        once the server answers and the model is ready; otherwise one :class:`ModelError`."""
        grpc = self._grpc
        m = messages()
        try:
            ready = self._ready(m["ModelReadyRequest"](name=self.model, version=self.version), timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            # MLServer 1.7 answers an unknown model's ModelReady with UNKNOWN ("... ModelNotFound ...")
            if code == grpc.StatusCode.NOT_FOUND or "not found" in str(exc.details() or "").lower():
                raise ModelError(f"the v2 gRPC server at {self.target} has no model {self.model!r} ({reason(exc)})",
                                 "check the name in the address (`harness serve` prints its gRPC address when it "
                                 "starts)") from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ModelError(f"the v2 gRPC server at {self.target} cannot be reached ({reason(exc)})",
                                 "start it (e.g. `harness serve -b onnxruntime --grpc-port 8001`), or check the "
                                 "host, port and that nothing blocks it") from None
            raise ModelError(f"the model at {self.url} cannot be asked whether it is ready ({reason(exc)})",
                             "the server must implement the v2 protocol's ModelReady") from None
        if not ready.ready:
            raise ModelError(f"the model at {self.url} is not ready",
                             "wait until the server prints that it serves the model, then run again")
        try:
            meta = self._metadata(m["ModelMetadataRequest"](name=self.model, version=self.version),
                                  timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ModelError(f"the model at {self.url} gives no metadata ({reason(exc)})",
                             "the server must implement the v2 protocol's ModelMetadata") from None

        def tensors(items: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": [int(s) for s in t.shape]} for t in items]

        return {"name": meta.name, "versions": list(meta.versions), "platform": meta.platform,
                "inputs": tensors(meta.inputs), "outputs": tensors(meta.outputs)}

    def infer(self, body: bytes) -> bytes:
        grpc = self._grpc
        try:
            return self._infer(body, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise ModelError(f"the v2 server at {self.base} stopped answering ({reason(exc)})",
                                 "see the server's log: it may have died or been stopped mid-run") from None
            raise ModelError(f"the v2 server refused a frame (gRPC {reason(exc)})",
                             "see the server's log; --opt encoding=jpeg sends smaller requests") from None

    def close(self) -> None:
        self.channel.close()
