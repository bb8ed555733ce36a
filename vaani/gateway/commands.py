"""`vaani gateway`: the OpenAI-compatible API and the web page, in front of a running Triton."""

from __future__ import annotations

import argparse

from vaani.gateway import limits
from vaani.subtitles import CueRules

DEFAULT_PORT = 8080


def register(subcommands) -> None:
    gateway = subcommands.add_parser(
        "gateway",
        help="serve OpenAI's /v1/audio/transcriptions and a web page in front of Triton",
        description="Run the gateway (FastAPI + uvicorn): POST /v1/audio/transcriptions as OpenAI "
        "documents it, OpenAI's Realtime transcription WebSocket at /v1/realtime?intent=transcription, "
        "GET /v1/models, GET /health, OpenAPI docs at /docs and a page at / to try "
        "the model in a browser. It forwards every upload to Triton's `asr` over gRPC.",
    )
    gateway.add_argument("--triton-url", default="localhost:8001", help="Triton's gRPC address")
    gateway.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    gateway.add_argument("--port", type=int, default=DEFAULT_PORT)
    gateway.add_argument(
        "--max-upload-mb",
        type=float,
        default=limits.MAX_UPLOAD_BYTES / 2**20,
        help="largest upload accepted, MiB (OpenAI's limit: 25); larger is 413",
    )
    gateway.add_argument(
        "--max-audio-seconds",
        type=float,
        default=limits.MAX_AUDIO_SECONDS,
        help="longest audio accepted, known from the file's header or while decoding; longer is refused "
        "(400) before it is decoded (the server's --max-audio-seconds)",
    )
    gateway.add_argument("--language", default="hindi", help="the language `verbose_json` reports")
    door = gateway.add_argument_group("the front door: connections from untrusted clients")
    door.add_argument(
        "--max-connections",
        type=int,
        default=limits.MAX_CONNECTIONS,
        help="open connections, and requests in progress; more are answered 503 with Retry-After",
    )
    door.add_argument(
        "--header-timeout-s",
        type=float,
        default=limits.HEADER_SECONDS,
        help="time for a connection to send a complete request head; later is 408 and closed",
    )
    door.add_argument(
        "--upload-timeout-s",
        type=float,
        default=limits.UPLOAD_SECONDS,
        help="time for a whole upload to arrive; later is 408 and closed",
    )
    live = gateway.add_argument_group("live transcription: the realtime WebSocket (/v1/realtime)")
    live.add_argument(
        "--max-realtime-sessions",
        type=int,
        default=limits.MAX_REALTIME_SESSIONS,
        help="realtime sessions open at once; one more gets an error event and is closed (1013)",
    )
    live.add_argument(
        "--realtime-idle-s",
        type=float,
        default=limits.REALTIME_IDLE_SECONDS,
        help="a realtime session that sends nothing this long gets an error event and is closed",
    )
    live.add_argument(
        "--max-message-mb",
        type=float,
        default=limits.MAX_MESSAGE_BYTES / 2**20,
        help="largest WebSocket message, MiB; larger closes the socket (1009)",
    )
    CueRules.add_arguments(gateway.add_argument_group("segments and subtitle cues (srt, vtt, verbose_json)"))
    gateway.set_defaults(func=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    from vaani.gateway.app import GatewaySettings, create_app
    from vaani.gateway.front_door import FrontDoor, serve
    from vaani.gateway.realtime import RealtimeSettings

    settings = GatewaySettings(
        triton_url=args.triton_url,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        upload_seconds=args.upload_timeout_s,
        max_audio_seconds=args.max_audio_seconds,
        language=args.language,
        cue_rules=CueRules.from_args(args),
        realtime=RealtimeSettings(max_sessions=args.max_realtime_sessions, idle_seconds=args.realtime_idle_s),
    )
    door = FrontDoor(
        max_connections=args.max_connections,
        header_seconds=args.header_timeout_s,
        max_message_bytes=int(args.max_message_mb * 2**20),
    )
    print(
        f"vaani gateway: http://{args.host}:{args.port}/ (API /v1/audio/transcriptions, docs /docs), "
        f"Triton gRPC at {args.triton_url}",
        flush=True,
    )
    serve(create_app(settings), args.host, args.port, door)
    return 0
