"""`vaani serve`: build the repository if it is out of date, then run tritonserver in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from vaani.build.commands import add_model_arguments, add_settings_arguments, settings_from_args
from vaani.build.engine_builds import ENGINE_BUILDS
from vaani.build.pipeline import build
from vaani.errors import UserFacingError
from vaani.gateway.commands import DEFAULT_PORT as GATEWAY_PORT
from vaani.gateway.process import GatewayProcess
from vaani.serving.contract import ENSEMBLE
from vaani.supervision.admin import ADMIN_HEADER, ADMIN_KEY_VARIABLE, resolve_admin_key
from vaani.supervision.process import Ports, TritonProcess, _end_with_parent

MAX_RESTARTS = 5  # within RESTART_WINDOW_S: a server that cannot stay up is a fault to report
RESTART_WINDOW_S = 60
# Model versions a server may hold for step processes that died with a request in flight before a
# fresh server replaces it: the python backend never releases them, and each keeps ~36 threads and
# its shared memory (measured: +36 threads, +0.75 MB per `[1, 2^62]` request), for the server's life.
LEAKED_VERSIONS_LIMIT = 8


def register(subcommands) -> None:
    serve = subcommands.add_parser(
        "serve",
        help="build the repository if needed and run tritonserver in the foreground",
        description="Build the Triton repository for --model if it is out of date, then run the "
        "tritonserver of the nvidia-pytriton wheel on it, bound to localhost, supervised: a step whose "
        "process dies is reloaded (readiness says not-ready meanwhile), a server that exits is started "
        "again, model control/shared memory/logging/trace need the admin key (TRITON_ADMIN_KEY), and "
        "Ctrl-C or SIGTERM drains in-flight requests before stopping.",
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
    serve.add_argument(
        "--address",
        default="127.0.0.1",
        help="address the server binds (default localhost only; 0.0.0.0 in a container)",
    )
    serve.add_argument(
        "--exit-timeout",
        type=int,
        default=30,
        help="seconds in-flight requests get to finish on Ctrl-C/SIGTERM",
    )
    add_settings_arguments(serve)
    serve.set_defaults(func=_serve)


class _Stop(Exception):
    """SIGTERM (docker stop, systemd): stop the way Ctrl-C does."""


def _raise_stop(*_: object) -> None:
    raise _Stop


def _serve(args: argparse.Namespace) -> int:
    ENGINE_BUILDS[args.engine].check_servable(args.repository)
    if not args.skip_build:
        build(args.model, args.repository, settings_from_args(args))
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    key, generated = resolve_admin_key()
    if generated:
        print(
            f"admin key for model control, shared memory, logging and trace (HTTP header "
            f"`{ADMIN_HEADER}`), random for this start: {key}\n(set {ADMIN_KEY_VARIABLE} to choose it)",
            flush=True,
        )
    # Restored on return: a caller that runs `main(["serve", ...])` in its own process (the tests do)
    # keeps its handler, and processes it forks later do not inherit this one (a pool worker that
    # raised _Stop inside a queue's lock left the lock held, and the pool's join hung for good).
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    restarts: list[float] = []
    announced = False
    gateway: GatewayProcess | None = None
    try:
        while True:
            server = TritonProcess(
                args.repository, ports, address=args.address, admin_key=key, exit_timeout=args.exit_timeout
            )
            try:
                server.wait_ready()
                if args.gateway_port and gateway is None:  # started once; it reconnects across restarts
                    gateway = GatewayProcess(
                        server.grpc_url,
                        args.gateway_port,
                        host=args.address,
                        # the gateway refuses what `asr` would refuse, before decoding it
                        extra_args=("--max-audio-seconds", str(args.max_audio_seconds)),
                        preexec_fn=_end_with_parent,
                    )
                if not announced:
                    _banner(args.repository, server, gateway)
                    announced = True
                code = _until_exit_or_leaky(server)
            except (KeyboardInterrupt, _Stop):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the drain short
                print("\nstopping: the ensemble refuses new requests, those in flight finish …", flush=True)
                server.stop()
                return 0
            except BaseException:
                server.stop()
                raise
            server.stop()
            if code is None:
                print(
                    f"vaani serve: tritonserver held {len(server.supervisor.leaked)} model versions of step "
                    "processes that died with a request in flight (they never unload); starting a fresh one",
                    flush=True,
                )
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(restarts) > MAX_RESTARTS:
                raise UserFacingError(
                    f"tritonserver exited {len(restarts)} times within {RESTART_WINDOW_S} s "
                    f"(last code {code}); giving up: its log above says why"
                )
            print(f"vaani serve: tritonserver exited with code {code}; starting it again", flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if gateway is not None:
            gateway.stop()


def _until_exit_or_leaky(server: TritonProcess) -> int | None:
    """The server's exit code once it exits, or None once it holds too many leaked model versions
    (the supervisor counts them; only a fresh server frees them)."""
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return server.process.wait(timeout=1)
        if server.supervisor is not None and len(server.supervisor.leaked) >= LEAKED_VERSIONS_LIMIT:
            return None


def _banner(repository: Path, server: TritonProcess, gateway: GatewayProcess | None) -> None:
    gateway_line = f"  gateway  {gateway.url}/ (OpenAI API: /v1/audio/transcriptions)\n" if gateway else ""
    print(
        f"\nvaani is serving `{ENSEMBLE}` from {repository}\n"
        f"  HTTP     http://{server.http_url}/v2/models/{ENSEMBLE}/infer\n"
        f"  gRPC     {server.grpc_url}\n"
        f"  metrics  http://{server.local_host}:{server.ports.metrics}/metrics\n"
        f"{gateway_line}"
        f"  try:     {_transcribe_hint(server)}\n"
        "Ctrl-C stops the server.",
        flush=True,
    )


def _transcribe_hint(server: TritonProcess) -> str:
    """The command that reaches this server as started: its address, and the `vaani` of this environment."""
    vaani = Path(sys.executable).absolute().parent / "vaani"
    if vaani.is_relative_to(Path.cwd()):
        vaani = vaani.relative_to(Path.cwd())
    return f"{vaani} transcribe some.wav --url {server.http_url}"
