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
from vaani.errors import ServerUnreachable, UserFacingError
from vaani.serving.contract import ENSEMBLE, SAMPLING_RATE
from vaani.subtitles import CueRules, Word, cues, to_srt, to_vtt


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "transcribe",
        help="transcribe audio files with a running server",
        epilog="exit status: 0 every file transcribed; 1 the server refused a file (the error says why); "
        "2 a file could not be read, or bad options; 3 no server answers at the address",
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
        "--format",
        choices=FORMATS,
        default="text",
        help="text: the transcript; json: one object per file with its words, times, duration and "
        "latency; srt/vtt: subtitles whose cues break at pauses and at a length (--cue-max-*)",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="write <file stem>.<txt|json|srt|vtt> there for each file instead of printing",
    )
    CueRules.add_arguments(parser.add_argument_group("subtitle cues (srt, vtt)"))
    parser.add_argument("--model", default=ENSEMBLE, help="model name on the server")
    parser.add_argument(
        "--hotword",
        action="append",
        metavar="WORD",
        help="a word or phrase the beam-search decoder should favour in every file (repeatable; "
        "a greedy server refuses it)",
    )
    parser.add_argument(
        "--hotword-weight", type=float, help="how strongly to favour the hotwords (server default 10)"
    )
    live = parser.add_argument_group(
        "live recognition (--stream; docs/streaming.md)",
        "Send one FILE to `asr_stream` over gRPC (--url default localhost:8001) in chunks, as a microphone "
        "would, and print the text while it arrives: finished text, then [the partial that may still "
        "change]. A terminal rewrites one line; a pipe gets one line per change; the final text ends it.",
    )
    live.add_argument("--stream", action="store_true", help="stream FILE instead of sending it whole")
    live.add_argument(
        "--chunk-seconds",
        type=float,
        default=0.2,
        help="audio per chunk (default 0.2; from 0.1 to the server's cap)",
    )
    live.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="how fast to send, in multiples of real time (default 1: as a live speaker; 0: each chunk as "
        "soon as the previous one is answered)",
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
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="MANIFEST",
        help="one more set for --compare-decoders (repeatable), e.g. the out-of-vocabulary set",
    )
    parser.add_argument(
        "--decoders-only",
        action="store_true",
        help="with --compare-decoders: no server, only the decoder comparison on MANIFEST (and --also)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_wer)


def _compare_decoders(args: argparse.Namespace) -> None:
    from vaani.client.decoders import compare_decoders, format_decoders

    rows = compare_decoders([args.manifest, *args.also], args.compare_decoders, args.lm)
    print("\ndecoders on the FP32 reference's logits of the same audio:\n" + format_decoders(rows))


def run(args: argparse.Namespace) -> int:
    if args.stream:
        return _stream(args)
    rules = CueRules.from_args(args)  # before any request: a bad option costs no transcription
    try:
        audio = [load_audio(path) for path in args.files]
    except AudioFileError as error:
        raise UserFacingError(str(error)) from None
    probe = TranscriptionClient(args.url, args.protocol, args.model)
    live = probe.is_live()
    probe.close()
    if not live:
        raise ServerUnreachable(
            f"no server answers at {probe.url} ({args.protocol}): start one with `make serve`, or pass --url"
        )
    local = threading.local()

    def client() -> TranscriptionClient:
        if not hasattr(local, "client"):
            local.client = TranscriptionClient(args.url, args.protocol, args.model)
        return local.client

    form = "json" if args.json else args.format
    timed = form != "text"

    def one(index: int) -> dict:
        start = time.perf_counter()
        words: list[dict] | None = None
        try:
            if timed:
                ((text, words),) = client().transcribe_words(
                    audio[index][None], args.hotword, args.hotword_weight
                )
            else:
                text = client().transcribe(audio[index], args.hotword, args.hotword_weight)
            error = None
        except TranscriptionError as failure:
            text, error = None, str(failure)
        result = {
            "file": str(args.files[index]),
            "transcript": text,
            "error": error,
            "duration_s": round(len(audio[index]) / SAMPLING_RATE, 3),
            "latency_ms": round((time.perf_counter() - start) * 1000, 2),
        }
        return {**result, "words": words} if timed else result

    try:
        with ThreadPoolExecutor(max(1, args.concurrency)) as pool:
            results = list(pool.map(one, range(len(audio))))
    except Exception as error:  # connection refused and the like, before any response
        raise ServerUnreachable(
            f"cannot reach the server at {args.url or 'the default address'} ({args.protocol}): {error}"
        ) from None
    failed = 0
    for result in results:
        if result["error"]:
            failed += 1
            print(f"{result['file']}: error: {result['error']}", file=sys.stderr)
            if form != "json":
                continue
        rendered = render(result, form, rules)
        if args.output_dir is not None:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            target = args.output_dir / f"{Path(result['file']).stem}.{EXTENSIONS[form]}"
            target.write_text(rendered, encoding="utf-8")
            print(f"{result['file']} → {target}")
        elif form == "text":
            prefix = f"{result['file']}\t" if len(results) > 1 else ""
            print(prefix + rendered, end="")
        else:
            print(rendered, end="" if rendered.endswith("\n") else "\n")
    return 1 if failed else 0


def _stream(args: argparse.Namespace) -> int:
    """`vaani transcribe --stream FILE`: partials while the file plays, the final text at the end."""
    from vaani.client.streaming import DEFAULT_URL, LivePrinter, stream_audio

    if len(args.files) != 1 or args.chunk_seconds <= 0 or args.pace < 0:
        raise UserFacingError("--stream takes one FILE, --chunk-seconds above 0 and --pace of 0 or more")
    try:
        audio = load_audio(args.files[0])
    except AudioFileError as error:
        raise UserFacingError(str(error)) from None
    printer = LivePrinter()
    try:
        answers = stream_audio(
            audio, args.url or DEFAULT_URL, args.chunk_seconds, args.pace, on_answer=printer
        )
    except TimeoutError as error:
        raise UserFacingError(str(error)) from None
    except Exception as error:  # connection refused and the like
        raise ServerUnreachable(
            f"cannot stream to {args.url or DEFAULT_URL} (gRPC): {error}; start a server with `make serve`"
        ) from None
    printer.done(answers[-1].transcript if not answers[-1].error else "")
    return 1 if any(answer.error for answer in answers) else 0


FORMATS = ("text", "json", "srt", "vtt")
EXTENSIONS = {"text": "txt", "json": "json", "srt": "srt", "vtt": "vtt"}


def render(result: dict, form: str, rules: CueRules) -> str:
    """One file's result in ``form``: the transcript, a JSON object, or SRT/VTT cues from its words."""
    if form == "json":
        return json.dumps(result, ensure_ascii=False) + "\n"
    if form == "text":
        return result["transcript"] + "\n"
    timed = cues([Word.from_dict(w) for w in result["words"]], rules)
    return to_srt(timed) if form == "srt" else to_vtt(timed)


def _wer(args: argparse.Namespace) -> int:
    if args.decoders_only:
        if args.compare_decoders is None:
            raise UserFacingError("--decoders-only needs --compare-decoders MODEL_DIR")
        _compare_decoders(args)
        return 0
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
        _compare_decoders(args)
    print(f"\nwrote {args.output / 'summary.json'}, utterances.csv and report.png")
    return 0
