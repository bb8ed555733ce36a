"""`vaani transcribe FILE...` (one request per file, transcripts in order) and `vaani wer MANIFEST`."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vaani.audio import AudioFileError, load_audio
from vaani.client.api import PROTOCOLS, TranscriptionClient, TranscriptionError
from vaani.errors import UserFacingError
from vaani.serving.contract import ENSEMBLE, SAMPLING_RATE


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
    parser.add_argument("--model", default=ENSEMBLE, help="model name on the server")
    parser.add_argument(
        "--hotword",
        action="append",
        metavar="WORD",
        help="a word or phrase the beam-search decoder should favour in every file (repeatable)",
    )
    parser.add_argument(
        "--hotword-weight", type=float, help="how strongly to favour the hotwords (server default 10)"
    )
    parser.set_defaults(func=run)
    parser = subcommands.add_parser(
        "wer",
        help="word and character error rate of the running server on a manifest",
        description="Transcribe every file of a NeMo-style JSONL manifest (audio_filepath, text, duration) "
        "with the running server, score the transcripts with jiwer after Hindi normalization (as the "
        "Vistaar benchmark does), and write summary.json, utterances.csv and report.png into --output.",
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument(
        "--url", help="server address host:port (default localhost:8000, gRPC localhost:8001)"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    parser.add_argument("--output", type=Path, default=Path("results/wer"), help="folder for the reports")
    parser.add_argument("--model", default=ENSEMBLE, help="model name on the server")
    parser.add_argument(
        "--model-name",
        help="what to call the served model in the summary (default: the server's `source_model` "
        "config parameter of the model, else its Triton name)",
    )
    parser.add_argument(
        "--published",
        metavar="MODEL",
        help="print this model's published WERs beside the measured one, e.g. indicwav2vec-hindi "
        "(default: detected from the model name)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="MODEL_DIR",
        help="also transcribe the same audio with this save_pretrained model in FP32 PyTorch and "
        "report its WER/CER and how many transcripts are identical to the served ones",
    )
    parser.add_argument(
        "--compare-decoders",
        type=Path,
        metavar="MODEL_DIR",
        help="also decode this save_pretrained model's FP32 logits of the same audio greedily, with beam "
        "search and with beam search + its language_model/ (or --lm): WER, CER and decoder time",
    )
    parser.add_argument(
        "--lm", type=Path, help="KenLM .arpa/.bin or language_model/ folder for --compare-decoders"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_wer)


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
            text, error = client().transcribe(audio[index], args.hotword, args.hotword_weight), None
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


def _wer(args: argparse.Namespace) -> int:
    # Imported here so that `vaani` starts without the eval extra (jiwer, matplotlib) installed.
    from vaani.client.wer import evaluate, format_summary

    summary = evaluate(
        args.manifest,
        args.output,
        url=args.url,
        protocol=args.protocol,
        model=args.model,
        concurrency=args.concurrency,
        model_name=args.model_name,
        published=args.published,
        progress=not args.no_progress,
        reference_model=args.reference,
    )
    print(format_summary(summary))
    if args.compare_decoders is not None:
        from vaani.client.decoders import compare_decoders, format_decoders

        rows = compare_decoders(args.manifest, args.compare_decoders, args.lm)
        print("\ndecoders on the FP32 reference's logits of the same audio:\n" + format_decoders(rows))
    print(f"\nwrote {args.output / 'summary.json'}, utterances.csv and report.png")
    return 0
