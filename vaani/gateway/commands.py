"""`vaani gateway`: the OpenAI-compatible API and the web page, in front of a running Triton."""

from __future__ import annotations

import argparse

from vaani.subtitles import CueRules

DEFAULT_PORT = 8080


def register(subcommands) -> None:
    gateway = subcommands.add_parser(
        "gateway",
        help="serve OpenAI's /v1/audio/transcriptions and a web page in front of Triton",
        description="Run the gateway (FastAPI + uvicorn): POST /v1/audio/transcriptions as OpenAI "
        "documents it, GET /v1/models, GET /health, OpenAPI docs at /docs and a page at / to try "
        "the model in a browser. It forwards every upload to Triton's `asr` over gRPC.",
    )
    gateway.add_argument("--triton-url", default="localhost:8001", help="Triton's gRPC address")
    gateway.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    gateway.add_argument("--port", type=int, default=DEFAULT_PORT)
    gateway.add_argument(
        "--max-upload-mb", type=float, default=25.0, help="largest upload accepted, MiB (OpenAI's limit: 25)"
    )
    gateway.add_argument("--language", default="hindi", help="the language `verbose_json` reports")
    CueRules.add_arguments(gateway.add_argument_group("segments and subtitle cues (srt, vtt, verbose_json)"))
    gateway.set_defaults(func=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from vaani.gateway.app import GatewaySettings, create_app

    settings = GatewaySettings(
        triton_url=args.triton_url,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        language=args.language,
        cue_rules=CueRules.from_args(args),
    )
    print(
        f"vaani gateway: http://{args.host}:{args.port}/ (API /v1/audio/transcriptions, docs /docs), "
        f"Triton gRPC at {args.triton_url}",
        flush=True,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0
