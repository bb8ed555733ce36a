"""`vaani serve`: build the repository if it is out of date, then run tritonserver in the foreground."""

from __future__ import annotations

import argparse
import signal

from vaani.build.commands import add_model_arguments, add_settings_arguments, settings_from_args
from vaani.build.engine_builds import ENGINE_BUILDS
from vaani.build.pipeline import build
from vaani.gateway.commands import DEFAULT_PORT as GATEWAY_PORT
from vaani.gateway.process import GatewayProcess
from vaani.server.process import Ports, TritonProcess


def register(subcommands) -> None:
    serve = subcommands.add_parser(
        "serve",
        help="build the repository if needed and run tritonserver in the foreground",
        description="Build the Triton repository for --model if it is out of date, then run the "
        "tritonserver of the nvidia-pytriton wheel on it, bound to localhost. Ctrl-C stops it.",
    )
    add_model_arguments(serve)
    serve.add_argument("--http-port", type=int, default=Ports.http)
    serve.add_argument("--grpc-port", type=int, default=Ports.grpc)
    serve.add_argument("--metrics-port", type=int, default=Ports.metrics)
    serve.add_argument(
        "--gateway-port",
        type=int,
        default=GATEWAY_PORT,
        help="port of the OpenAI-compatible gateway and web page started beside Triton (0: none)",
    )
    serve.add_argument("--skip-build", action="store_true", help="serve the repository as it is")
    add_settings_arguments(serve)
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    ENGINE_BUILDS[args.engine].check_servable(args.repository)
    if not args.skip_build:
        build(args.model, args.repository, settings_from_args(args))
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    server = TritonProcess(args.repository, ports)

    def forward_sigterm(*_: object) -> None:
        """SIGTERM (docker stop, systemd) stops the server the same way Ctrl-C does."""
        server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward_sigterm)
    gateway = None
    try:
        server.wait_ready()
        gateway_line = ""
        if args.gateway_port:
            gateway = GatewayProcess(server.grpc_url, args.gateway_port)
            gateway_line = f"  gateway  {gateway.url}/ (OpenAI API: /v1/audio/transcriptions)\n"
        print(
            f"\nvaani is serving `asr` from {args.repository}\n"
            f"  HTTP     http://{server.http_url}/v2/models/asr/infer\n"
            f"  gRPC     {server.grpc_url}\n"
            f"  metrics  http://127.0.0.1:{ports.metrics}/metrics\n"
            f"{gateway_line}"
            f"  try:     .venv/bin/vaani transcribe some.wav\n"
            "Ctrl-C stops the server.",
            flush=True,
        )
        return server.process.wait()
    except KeyboardInterrupt:
        print("\nstopping tritonserver …", flush=True)
        return 0
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()
