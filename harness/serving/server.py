"""Start MLServer with one harness model and the harness's safety defaults.

MLServer implements the v2 protocol (REST and gRPC), its errors and its worker processes; what is added here
is what MLServer leaves to the deployer (docs/serving.md: Security defaults): it listens on 127.0.0.1, its
model repository is an empty folder and its ``/v2/repository`` API (load/unload other models) is closed, so
it serves only the model it was started with; a request body over the cap is refused with 413 before it is
read; metrics are off (no third port). Once the model answers ``ready`` it prints one line,
``serving http://HOST:PORT/v2/models/NAME``; SIGINT/SIGTERM stop it (MLServer's own handlers: workers
first, then the gRPC and HTTP servers), after the requests being answered have finished; a request that
arrives while it stops gets 503 with a message.
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
    grpc_port: int | None = None  # None: a free port
    workers: int = 1
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v2/models/{self.name}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (tests and the gRPC side use it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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


async def _announce(opts: ServeOptions, servers: asyncio.Future) -> bool:
    """Print the model's URL once it answers ready; False if the server stopped first (the load failed)."""
    local = ServeOptions(**{**opts.__dict__, "host": "127.0.0.1" if opts.host in ("0.0.0.0", "") else opts.host})
    while not servers.done():
        if await asyncio.to_thread(_ready, local.url):
            print(f"serving {opts.url}", flush=True)
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
            host=opts.host, http_port=opts.port, grpc_port=opts.grpc_port or free_port(opts.host),
            grpc_max_message_length=int(opts.max_request_mb * 1e6), parallel_workers=max(opts.workers, 1),
            metrics_endpoint=None, debug=False, load_models_at_startup=False, model_repository_root=empty_repo,
            server_name="harness-serve",
        )
        server = MLServer(settings)
        state = ServerState()
        rest_app = server._rest_server._app  # MLServer exposes no hook for ASGI middleware; added before it starts
        rest_app.add_middleware(RequestGuard, max_bytes=int(opts.max_request_mb * 1e6), state=state)
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:  # replaces MLServer's handlers, which stop its workers under running requests
            loop.add_signal_handler(sig, lambda s=sig: asyncio.ensure_future(_stop(server, state, s)))
        servers = asyncio.ensure_future(server.start([model_settings(opts)]))
        announced = asyncio.ensure_future(_announce(opts, servers))
        await servers
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
    try:
        import mlserver  # noqa: F401
    except ImportError as exc:
        raise HarnessError(f"harness serve needs MLServer ({exc})", "pip install -e '.[serve]'") from exc
    return asyncio.run(_serve(opts))
