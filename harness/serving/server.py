"""Start MLServer with one harness model and the harness's safety defaults.

MLServer implements the v2 protocol (REST and gRPC), its errors and its worker processes; what is added here
is what MLServer leaves to the deployer (docs/serving.md: Security defaults): it listens on 127.0.0.1, its
model repository is an empty folder and its repository API (load/unload other models: ``/v2/repository``
over REST, the ``Repository*`` methods over gRPC) is closed, so it serves only the model it was started
with; a request body over the cap is refused with 413 before it is read (gRPC: the same cap on a message);
metrics are off, and the gRPC port is opened only when ``--grpc-port`` asks for it. Once the model answers
``ready`` it prints ``serving http://HOST:PORT/v2/models/NAME`` on one line (and, with gRPC,
``serving grpc://HOST:GRPC_PORT/NAME`` on the next); SIGINT/SIGTERM stop it (MLServer's own stop: workers
first, then the gRPC and HTTP servers), after the requests being answered have finished; a request that
arrives while it stops gets 503 (gRPC: UNAVAILABLE) with a message.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from harness.core.errors import HarnessError
from harness.serving.protocol import DEFAULT_MAX_REQUEST_MB, FRAMES_INPUT, IMAGE_INPUT

ASGIApp = Callable[..., Awaitable[None]]


@dataclass
class ServeOptions:
    """Everything ``harness serve`` was asked for."""

    backend: str
    model: str | None = None
    device: str = "cpu"
    precision: str | None = None
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    name: str = "ssd"
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None  # None: no gRPC server; 0: a free port
    workers: int = 1
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v2/models/{self.name}"

    @property
    def grpc_url(self) -> str | None:
        """The gRPC address as the ``v2`` client takes it (``--model grpc://HOST:PORT/NAME``), None without gRPC."""
        if self.grpc_port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc://{host}:{self.grpc_port}/{self.name}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (tests and ``--grpc-port 0`` use it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int, flag: str) -> None:
    """One clear error, before anything starts, when ``port`` cannot be listened on (taken, or privileged)."""
    if not 0 < port < 65536:
        raise HarnessError(f"{flag} {port}: not a port number", "give a port from 1 to 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # as the servers will: a port whose last connections wait out TIME_WAIT is free to listen on
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise HarnessError(f"{flag} {port}: cannot listen on {host}:{port} ({exc.strerror or exc})",
                               f"stop what uses it, or choose another port ({flag} ...)") from None


class _TooLarge(Exception):
    pass


@dataclass
class ServerState:
    """What the request guard and the signal handler share: whether the server is stopping, and how many
    requests are being answered (a stop waits for them)."""

    stopping: bool = False
    in_flight: int = 0


class RequestGuard:
    """ASGI middleware: refuse bodies over the cap (413, by Content-Length or while streaming) and the model
    repository API (403), each with a v2 ``{"error": ...}`` message. MLServer has no body limit of its own."""

    def __init__(self, app: ASGIApp, max_bytes: int, state: ServerState) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        if scope.get("path", "").startswith("/v2/repository"):
            await _drain(receive, self.max_bytes)
            return await _error(send, 403, "the model repository API is closed: this server serves only the "
                                           "model it was started with (start another `harness serve` for another)")
        if self.state.stopping:
            await _drain(receive, self.max_bytes)
            return await _error(send, 503, "the server is stopping (SIGINT/SIGTERM): it answers the requests it "
                                           "had and takes no new ones; send this one to another server")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _drain(receive, int(length))
            return await _error(send, 413, self._too_large(int(length)))
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        self.state.in_flight += 1
        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if not started:
                await _error(send, 413, self._too_large(seen))
        finally:
            self.state.in_flight -= 1

    def _too_large(self, size: int) -> str:
        return (f"request body of {size / 1e6:.1f} MB is over this server's cap of {self.max_bytes / 1e6:.1f} MB: "
                "send JPEG (BYTES input 'image') or smaller frames, or start the server with a larger --max-request-mb")


#: what is read and thrown away of a refused body, so that the client, still sending, reads the 413 rather
#: than a reset connection; past it the connection is simply closed
DRAIN_LIMIT = 256 * 1024 * 1024


async def _drain(receive: Callable, length: int) -> None:
    """Read (and drop, chunk by chunk: nothing is kept) a refused body of ``length`` bytes, up to the limit."""
    seen = 0
    while seen < min(length, DRAIN_LIMIT):
        message = await receive()
        if message.get("type") != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _error(send: Callable, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def grpc_guard(state: ServerState) -> Any:
    """The gRPC side of :class:`RequestGuard`, a ``grpc.aio`` server interceptor: the repository methods are
    refused with PERMISSION_DENIED, new calls while the server stops with UNAVAILABLE, and the calls being
    answered are counted so that a stop waits for them. (Size: the server's max message length.)"""
    from grpc import aio

    class GrpcGuard(aio.ServerInterceptor):
        async def intercept_service(self, continuation: Callable, details: Any) -> Any:
            return await _guard_call(state, continuation, details)

    return GrpcGuard()


async def _guard_call(state: ServerState, continuation: Callable, details: Any) -> Any:
    import grpc

    method = str(details.method or "")
    if method.rsplit("/", 1)[-1].startswith("Repository"):
        return _grpc_refusal(grpc.StatusCode.PERMISSION_DENIED,
                             "the model repository API is closed: this server serves only the model it was "
                             "started with (start another `harness serve` for another)")
    handler = await continuation(details)
    if handler is None or handler.unary_unary is None:
        return handler  # unknown methods (UNIMPLEMENTED) and streams, as MLServer answers them
    if state.stopping:
        return _grpc_refusal(grpc.StatusCode.UNAVAILABLE,
                             "the server is stopping (SIGINT/SIGTERM): it answers the requests it had and takes "
                             "no new ones; send this one to another server")
    inner = handler.unary_unary

    async def counted(request: Any, context: Any) -> Any:
        state.in_flight += 1
        try:
            return await inner(request, context)
        finally:
            state.in_flight -= 1

    return grpc.unary_unary_rpc_method_handler(counted, request_deserializer=handler.request_deserializer,
                                               response_serializer=handler.response_serializer)


def _grpc_refusal(code: Any, message: str) -> Any:
    import grpc

    async def refuse(request: Any, context: Any) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)  # the request is not even parsed (bytes)


def guard_grpc(server: Any, state: ServerState, host: str, port: int) -> None:
    """Make MLServer's gRPC server with :func:`grpc_guard` in front. MLServer builds its ``grpc.aio`` server
    inside ``GRPCServer._create_server`` with no way to add an interceptor, so this does what that method
    does (MLServer 1.7: the inference and model repository services, its options, one insecure port) with
    the guard; the address is bracketed for IPv6, which MLServer's own does not."""
    from concurrent.futures import ThreadPoolExecutor

    from grpc import aio
    from mlserver.grpc.dataplane_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
    from mlserver.grpc.model_repository import ModelRepositoryServicer
    from mlserver.grpc.model_repository_pb2_grpc import add_ModelRepositoryServiceServicer_to_server
    from mlserver.grpc.server import DefaultGrpcWorkers
    from mlserver.grpc.servicers import InferenceServicer

    grpc_server = server._grpc_server

    def create() -> Any:
        g = grpc_server
        g._inference_servicer = InferenceServicer(g._data_plane, g._model_repository_handlers)
        g._model_repository_servicer = ModelRepositoryServicer(g._model_repository_handlers)
        g._server = aio.server(ThreadPoolExecutor(max_workers=DefaultGrpcWorkers), interceptors=[grpc_guard(state)],
                               options=g._get_options())
        add_GRPCInferenceServiceServicer_to_server(g._inference_servicer, g._server)
        add_ModelRepositoryServiceServicer_to_server(g._model_repository_servicer, g._server)
        g._server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return g._server

    grpc_server._create_server = create


def keep_raw_uint8_binary() -> None:
    """Over gRPC, MLServer turns each raw tensor (``raw_input_contents``) into a Python list of its values
    (``mlserver.raw.unpack``): 1.3 million ints for one PETS frame, which then cross to the worker process
    by pickle and back into an array, tens of milliseconds for bytes that arrived ready. UINT8 tensors (the
    ``frames`` input) keep their bytes instead (bytes, not an array: pydantic tries an array as a list,
    element by element, before it takes it as it is); a wrong length is then the model's "N values for
    shape" 400 rather than a struct error. Other datatypes are unpacked as MLServer does."""
    from mlserver import raw

    if getattr(raw.unpack, "harness_uint8", False):
        return
    unpack = raw.unpack

    def unpack_uint8_as_bytes(elem: Any, data: bytes) -> Any:
        if elem.datatype == "UINT8":
            return bytes(data)
        return unpack(elem, data)

    unpack_uint8_as_bytes.harness_uint8 = True  # type: ignore[attr-defined]
    raw.unpack = unpack_uint8_as_bytes  # inject_raw looks the name up in its module at each call


class NoGrpc:
    """Stands in for MLServer's gRPC server when ``--grpc-port`` is not given: MLServer always starts one,
    and a port nobody asked for (with its own repository API) is not opened."""

    def __init__(self) -> None:
        self._stopped: asyncio.Event | None = None

    async def start(self) -> None:
        self._stopped = self._stopped or asyncio.Event()
        await self._stopped.wait()

    async def stop(self, sig: int | None = None) -> None:
        self._stopped = self._stopped or asyncio.Event()
        self._stopped.set()


def model_settings(opts: ServeOptions) -> Any:
    from mlserver.settings import ModelParameters, ModelSettings
    from mlserver.types import MetadataTensor

    from harness.serving.runtime import HarnessModel

    extra = {"backend": opts.backend, "model": opts.model, "device": opts.device, "precision": opts.precision,
             "threads": opts.threads, "options": opts.options}
    return ModelSettings(
        name=opts.name, implementation=HarnessModel, parameters=ModelParameters(extra=extra),
        inputs=[MetadataTensor(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
                MetadataTensor(name=FRAMES_INPUT, datatype="UINT8", shape=[-1, -1, -1, 3])],
        outputs=[MetadataTensor(name="boxes", datatype="FP32", shape=[-1, -1, 4]),
                 MetadataTensor(name="scores", datatype="FP32", shape=[-1, -1]),
                 MetadataTensor(name="classes", datatype="INT64", shape=[-1, -1]),
                 MetadataTensor(name="num_detections", datatype="INT32", shape=[-1])],
    )


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


async def _announce(opts: ServeOptions, servers: asyncio.Future) -> bool:
    """Print the model's URL (and gRPC address) once it answers ready and the gRPC port takes connections;
    False if the server stopped first (the load failed)."""
    local = ServeOptions(**{**opts.__dict__, "host": "127.0.0.1" if opts.host in ("0.0.0.0", "") else
                            "::1" if opts.host == "::" else opts.host})
    while not servers.done():
        if await asyncio.to_thread(_ready, local.url) and (
                opts.grpc_port is None or await asyncio.to_thread(_listening, local.host, opts.grpc_port)):
            print(f"serving {opts.url}", flush=True)
            if opts.grpc_url:
                print(f"serving {opts.grpc_url}", flush=True)
            return True
        await asyncio.sleep(0.1)
    return False


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
#: how long a stop waits for the requests being answered
STOP_GRACE_S = 30.0


async def _stop(server: Any, state: ServerState, sig: int) -> None:
    """Refuse new requests (503), let the ones being answered finish, then stop MLServer (workers, gRPC, HTTP)."""
    if state.stopping:
        return
    state.stopping = True
    deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
    while state.in_flight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    await server.stop(sig)


async def _serve(opts: ServeOptions) -> int:
    from mlserver import MLServer
    from mlserver.settings import Settings

    with tempfile.TemporaryDirectory(prefix="harness-serve-") as empty_repo:
        settings = Settings(
            host=opts.host, http_port=opts.port, grpc_port=opts.grpc_port or 0,
            grpc_max_message_length=int(opts.max_request_mb * 1e6), parallel_workers=max(opts.workers, 1),
            metrics_endpoint=None, debug=False, load_models_at_startup=False, model_repository_root=empty_repo,
            server_name="harness-serve",
        )
        server = MLServer(settings)
        state = ServerState()
        rest_app = server._rest_server._app  # MLServer exposes no hook for ASGI middleware; added before it starts
        rest_app.add_middleware(RequestGuard, max_bytes=int(opts.max_request_mb * 1e6), state=state)
        if opts.grpc_port is None:
            server._grpc_server = NoGrpc()
        else:
            guard_grpc(server, state, opts.host, opts.grpc_port)
            keep_raw_uint8_binary()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:  # replaces MLServer's handlers, which stop its workers under running requests
            loop.add_signal_handler(sig, lambda s=sig: asyncio.ensure_future(_stop(server, state, s)))
        servers = asyncio.ensure_future(server.start([model_settings(opts)]))
        announced = asyncio.ensure_future(_announce(opts, servers))
        try:
            await servers
        except Exception as exc:  # one of MLServer's servers did not start (a port taken since it was checked)
            print(f"harness serve: the server failed to start ({type(exc).__name__}: {exc}); stopping",
                  file=sys.stderr, flush=True)
            await _stop(server, state, signal.SIGTERM)  # or the other one, and the workers, would run on
            announced.cancel()
            return 1
        ready = await announced
    if not ready:
        print(f"harness serve: the model {opts.name!r} ({opts.backend}) did not load; the server's log above "
              "says why", file=sys.stderr)
        return 1
    return 0


def serve(opts: ServeOptions) -> int:
    """Run the server until SIGINT/SIGTERM; 0 after a clean stop, 1 when the model could not be loaded."""
    if opts.workers < 1:
        raise HarnessError(f"--workers {opts.workers}: expected 1 or more", "--workers 2 runs two backend instances")
    if opts.max_request_mb <= 0:
        raise HarnessError(f"--max-request-mb {opts.max_request_mb}: expected a positive size",
                           f"the default is {DEFAULT_MAX_REQUEST_MB:g}")
    check_port(opts.host, opts.port, "--port")
    if opts.grpc_port is not None:
        if opts.grpc_port == opts.port:
            raise HarnessError(f"--grpc-port {opts.grpc_port} is the HTTP port too", "give the two different ports")
        if opts.grpc_port == 0:
            opts = ServeOptions(**{**opts.__dict__, "grpc_port": free_port(opts.host)})
        check_port(opts.host, opts.grpc_port, "--grpc-port")
    try:
        import mlserver  # noqa: F401
    except ImportError as exc:
        raise HarnessError(f"harness serve needs MLServer ({exc})", "pip install -e '.[serve]'") from exc
    return asyncio.run(_serve(opts))
