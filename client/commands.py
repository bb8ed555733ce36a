"""`vaani transcribe FILE...`: one request per file, transcripts printed in order."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vaani.acoustic import SAMPLING_RATE
from vaani.audio import AudioFileError, load_audio
from vaani.client.api import PROTOCOLS, TranscriptionClient, TranscriptionError
from vaani.errors import UserFacingError


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "transcribe",
        help="transcribe audio files with a running server",
        description="Read audio files (WAV, FLAC, OGG; any rate and channel count), downmix and resample "
        "them to 16 kHz mono, send one request per file to the `asr` ensemble, print the transcripts.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument(
        "--url", help="server address host:port (default localhost:8000, gRPC localhost:8001)"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per file with duration and latency"
    )
    parser.add_argument("--model", default="asr", help="model name on the server")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        audio = [load_audio(path) for path in args.files]
    except AudioFileError as error:
        raise UserFacingError(str(error)) from None
    local = threading.local()

    def client() -> TranscriptionClient:
        if not hasattr(local, "client"):
            local.client = TranscriptionClient(args.url, args.protocol, args.model)
        return local.client

    def one(index: int) -> dict:
        start = time.perf_counter()
        try:
            text, error = client().transcribe(audio[index]), None
        except TranscriptionError as failure:
            text, error = None, str(failure)
        return {
            "file": str(args.files[index]),
            "transcript": text,
            "error": error,
            "duration_s": round(len(audio[index]) / SAMPLING_RATE, 3),
            "latency_ms": round((time.perf_counter() - start) * 1000, 2),
        }

    try:
        with ThreadPoolExecutor(max(1, args.concurrency)) as pool:
            results = list(pool.map(one, range(len(audio))))
    except Exception as error:  # connection refused and the like, before any response
        raise UserFacingError(
            f"cannot reach the server at {args.url or 'the default address'}: {error}"
        ) from None
    failed = 0
    for result in results:
        if result["error"]:
            failed += 1
            print(f"{result['file']}: error: {result['error']}", file=sys.stderr)
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        elif not result["error"]:
            prefix = f"{result['file']}\t" if len(results) > 1 else ""
            print(prefix + result["transcript"])
    return 1 if failed else 0
