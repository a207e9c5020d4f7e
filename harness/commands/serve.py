"""``harness serve``: one backend, model, device and precision behind a KServe v2 endpoint (MLServer).

The hosted model is a real backend instance loaded as ``harness run`` loads it; the endpoint takes JPEG/PNG
(``image``, BYTES, base64 in JSON) or raw RGB frames (``frames``, UINT8 [N,H,W,3]) and answers the canonical
detections with the server's own stage times as response parameters (docs/serving.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.core.errors import HarnessError
from harness.serving.protocol import DEFAULT_MAX_REQUEST_MB

EPILOG = """\
Examples:
  harness serve -b onnxruntime --port 8000          the reference SSD at http://127.0.0.1:8000/v2/models/ssd
  harness serve -b onnxruntime --grpc-port 8001     ... and over gRPC at grpc://127.0.0.1:8001/ssd
  harness serve -b torch --model mb1-ssd.pth --env torch-gpu --device gpu --workers 2
  harness serve -b openvino --precision int8 --name ssd-int8
  harness run -b v2 --model http://127.0.0.1:8000/v2/models/ssd --video pets09-s2l1
  harness run -b v2 --model grpc://127.0.0.1:8001/ssd --video pets09-s2l1

It listens on 127.0.0.1 unless --host says otherwise, serves only this model, refuses bodies over
--max-request-mb, and stops on Ctrl-C / SIGTERM. Once ready it prints `serving URL` on one line (and
`serving grpc://...` on the next when --grpc-port is given).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="host a backend behind a KServe v2 (Open Inference Protocol) endpoint",
                              description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", "-b", required=True, help="the backend to host (any registered one but v2)")
    p.add_argument("--model", default=None, help="model file or asset name (default: the backend's reference SSD)")
    p.add_argument("--device", default="cpu", help="cpu | gpu | gpu:N ... as for harness run")
    p.add_argument("--precision", "-p", default=None, help="fp32 | fp16 | bf16 | int8 as for harness run")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per worker (default: the framework's)")
    p.add_argument("--opt", action="append", default=None, metavar="KEY=VALUE", help="backend option (repeatable)")
    p.add_argument("--env", default=None, metavar="NAME",
                   help="serve from this environment (harness env create; 'gpu-layout' picks the backend's GPU "
                        "one when built): the server runs in its interpreter")
    p.add_argument("--python", default=None, metavar="PATH",
                   help="serve from this existing interpreter (it must import harness and mlserver)")
    p.add_argument("--name", default="ssd", help="the model's name in the URL (default: ssd)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=None,
                   help="serve the v2 gRPC protocol on this port too (default: no gRPC; 0: a free port)")
    p.add_argument("--workers", type=int, default=1,
                   help="backend instances, each in its own process (MLServer's parallel workers; default 1)")
    p.add_argument("--max-request-mb", type=float, default=DEFAULT_MAX_REQUEST_MB,
                   help=f"largest request body accepted, in MB (default {DEFAULT_MAX_REQUEST_MB:g}; a raw 1080p "
                        "frame is ~15 MB as JSON)")
    p.set_defaults(func=run)
    return p


#: the flags that choose where the server runs, not what it serves: not passed on to the server itself
WHERE = ("env", "python")


def forwarded_args(args: argparse.Namespace) -> list[str]:
    """``args`` as the command line of the server in the other interpreter: every option that differs from
    its default, ``--env``/``--python`` left out (so a harness there that predates an option not used here
    still takes the command)."""
    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    out: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest in (*WHERE, "help"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        for item in value if isinstance(action, argparse._AppendAction) else [value]:
            out += [flag, str(item)]
    return out


def run(args: argparse.Namespace) -> int:
    from harness.core.device import Device
    from harness.core.precision import parse_precision
    from harness.core.registry import backend_class
    from harness.serving.server import ServeOptions, serve
    from harness.core.settings import parse_options

    if args.backend == "v2":
        raise HarnessError("harness serve cannot host the v2 client backend", "name the backend that runs the model")
    if args.env is not None or args.python is not None:
        from harness.serving.elsewhere import check_can_serve, exec_serve, resolve

        interp, resolver = resolve(args.env, args.python, args.backend)
        if interp is not None:  # None: --env default, this interpreter
            check_can_serve(interp, resolver, args.backend)
            exec_serve(interp, resolver, forwarded_args(args))
    cls = backend_class(args.backend)  # an unknown backend or one not installed: its error, before the server starts
    options = parse_options(args.opt or [])
    cls.validate_options(options)
    missing = cls.missing_modules()
    if missing:
        raise HarnessError(f"backend {args.backend!r} needs {', '.join(missing)}, which is not installed",
                           "pip install -e '.[all]' (README: Install)")
    opts = ServeOptions(backend=args.backend, model=args.model, device=Device(args.device),
                        precision=parse_precision(args.precision) if args.precision else None, threads=args.threads,
                        options=options, name=args.name, host=args.host, port=args.port, grpc_port=args.grpc_port,
                        workers=args.workers, max_request_mb=args.max_request_mb)
    return serve(opts)
