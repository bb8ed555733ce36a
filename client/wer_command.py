"""`vaani wer MANIFEST`: WER/CER, RTF and latency of the running server on a NeMo manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaani.client.api import PROTOCOLS


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add the `wer` subcommand (called by `vaani.cli`)."""
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
    parser.add_argument("--model", default="asr", help="model name on the server")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    print(f"\nwrote {args.output / 'summary.json'}, utterances.csv and report.png")
    return 0
