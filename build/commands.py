"""`vaani build`, `vaani engine` (its TensorRT form) and `vaani clean`."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from vaani.build import accuracy_gate
from vaani.build.pipeline import build, clean
from vaani.build.repository import DECODERS, ENGINES, RepositorySettings
from vaani.build.tensorrt.precision import PRECISIONS
from vaani.build.tensorrt.route import DEFAULT_MANIFEST, DEFAULT_WORK_DIR, PlanOptions

DEFAULT_MODEL = "ai4bharat/indicwav2vec-hindi"
DEFAULT_REPOSITORY = Path("model_repository")

_HELP = {
    "engine": "engine of the wav2vec2 step (the acoustic model's runtime)",
    "max_batch_size": "largest batch (utterances) one execution takes",
    "max_audio_seconds": "longest recording accepted (cut into windows inside the server); longer is refused",
    "queue_delay_us": "how long wav2vec2's (and asr_stream's) dynamic batcher waits to fill a batch (µs)",
    "host_steps_queue_delay_us": "the same for preprocess, ctc_decoder and windows (-1: --queue-delay-us; "
    "0: a request goes at once, for a fast engine: docs/load-tests.md)",
    "threads": "ONNX Runtime intra-op threads (0: one per core)",
    "acoustic_instances": "instances of the wav2vec2 step",
    "python_instances": "instances of the preprocess and ctc_decoder steps",
    "max_padding": "fraction of padding allowed when requests of different lengths share a run",
    "bucket_seconds": "pad audio to multiples of this many seconds (0: no buckets)",
    "profile_opt_batch": "TensorRT optimization profile: the batch size tuned for",
    "profile_opt_seconds": "TensorRT optimization profile: the audio length (s) tuned for",
    "max_queue_size": "requests each step queues; more are refused at once (UNAVAILABLE, HTTP 503)",
    "request_timeout_s": "a request queued longer is dropped before it runs (a request's own timeout wins)",
    "max_batch_audio_seconds": "audio one engine call takes at most: bounds the peak memory of an execution",
    "turn_audio_seconds": "audio of each request wav2vec2 runs per round (one window at least), so a long "
    "recording takes turns with other requests (0: all its windows in one round)",
    "window_seconds": "longest stretch of speech one window holds (longer speech is cut, with context)",
    "context_seconds": "audio a window reaches past a cut on each side; only its own frames are kept",
    "pause_seconds": "a silence this long cuts a long recording into windows (0: cut every window-seconds)",
    "windows_in_flight": "with a TensorRT plan: windows of one request out to the plan at once",
    "memory_arena": "keep ONNX Runtime's CPU memory arena (faster repeats, but holds its peak)",
    "quantize": "onnxruntime engine: INT8 matrix products (conv encoder stays FP32), gated on --manifest",
    "gpus": "torch engine: one wav2vec2 instance group per GPU 0..N-1 (0: Triton uses every GPU it sees)",
    "decoder": "CTC decoder: auto (beam with the model's language_model/ or --lm, else greedy), greedy, beam",
    "lm": "KenLM n-gram LM for beam search: an .arpa/.bin file or a language_model/ folder (HF layout)",
    "beam_width": "beams kept per frame by the beam-search decoder",
    "lm_alpha": "LM weight (default: the LM's attrs.json)",
    "lm_beta": "word insertion bonus (default: the LM's attrs.json)",
    "decoder_instances": "ctc_decoder instances, decoding batches in parallel (0: python_instances)",
    "stream_max_chunk_seconds": "asr_stream: longest chunk a stream may send (from 0.1 s); longer is refused",
    "stream_segment_seconds": "asr_stream: a segment with no pause finishes at this length, its text fixed",
    "max_streams": "asr_stream: live streams at most; one more is refused with a message",
    "stream_idle_seconds": "asr_stream: a stream with no chunk for this long is dropped",
    "stream_instances": "asr_stream: instances (executions in flight), each holds its share of --max-streams",
    "stream_partial_seconds": "asr_stream: least new audio between two recomputations of a stream's partial; "
    "chunks in between get the standing partial at once (0: every chunk with speech)",
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per `RepositorySettings` field: the dataclass is the single source of truth."""
    group = parser.add_argument_group("repository settings")
    for field in fields(RepositorySettings):
        option = "--" + field.name.replace("_", "-")
        kwargs = {"type": type(field.default), "default": field.default, "help": _HELP.get(field.name, "")}
        if isinstance(field.default, bool):
            kwargs = {"action": argparse.BooleanOptionalAction, **kwargs}
            del kwargs["type"]
        if field.name == "engine":
            kwargs["choices"] = ENGINES
        if field.name == "decoder":
            kwargs["choices"] = DECODERS
        group.add_argument(option, **kwargs)


def settings_from_args(args: argparse.Namespace) -> RepositorySettings:
    return RepositorySettings(**{f.name: getattr(args, f.name) for f in fields(RepositorySettings)})


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Hugging Face model id or local save_pretrained directory (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="Triton model repository")


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only a TensorRT plan reads (`PlanOptions`)."""
    group = parser.add_argument_group("TensorRT plan (engine tensorrt)")
    group.add_argument("--precision", choices=PRECISIONS, default=PlanOptions.precision)
    group.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help=f"evaluation manifest for the accuracy gate of a plan or --quantize (default "
        f"{DEFAULT_MANIFEST}, from `make testset`)",
    )
    group.add_argument(
        "--max-cer-increase",
        type=float,
        default=accuracy_gate.DEFAULT_MAX_CER_INCREASE,
        help="largest CER rise over FP32 PyTorch, as a fraction (default 0.002 = 0.2 percentage points)",
    )
    group.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="intermediate files")
    group.add_argument(
        "--workspace-gib", type=float, default=0.0, help="TensorRT workspace limit (0: default)"
    )


def plan_from_args(args: argparse.Namespace) -> PlanOptions:
    return PlanOptions(
        args.precision, args.manifest, args.max_cer_increase, args.work_dir, args.workspace_gib
    )


def register(subcommands) -> None:
    build_parser = subcommands.add_parser(
        "build",
        help="export the model, gate it against PyTorch, write the Triton repository",
        description="Install the wav2vec2 step's engine for a Wav2Vec2ForCTC (ONNX export, the torch "
        "engine's weights, or a TensorRT plan), gate it on parity with FP32 PyTorch, and generate every "
        "config.pbtxt of the `asr` ensemble. Cached: unchanged inputs make it a no-op.",
    )
    add_model_arguments(build_parser)
    build_parser.add_argument(
        "--force", action="store_true", help="rebuild even when the cache says up to date"
    )
    add_settings_arguments(build_parser)
    add_plan_arguments(build_parser)
    build_parser.set_defaults(func=_build)

    engine = subcommands.add_parser(
        "engine",
        help="`vaani build --engine tensorrt`: the TensorRT plan, gated on transcripts (make engine)",
        description="Build the TensorRT plan of the wav2vec2 step (here with TensorRT and a GPU, or in "
        "the NGC TensorRT image through Docker), gate its transcripts against FP32 PyTorch on --manifest, "
        "install it and write the configs for `docker compose up`.",
    )
    add_model_arguments(engine)
    engine.add_argument("--force", action="store_true", help="rebuild even when the cache says up to date")
    add_settings_arguments(engine)
    add_plan_arguments(engine)
    engine.set_defaults(func=_build, engine="tensorrt", bucket_seconds=1.0)

    clean_parser = subcommands.add_parser(
        "clean", help="remove what `vaani build` generated from the repository (keeps the model.py files)"
    )
    clean_parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    clean_parser.set_defaults(func=_clean)


def _build(args: argparse.Namespace) -> int:
    build(args.model, args.repository, settings_from_args(args), force=args.force, plan=plan_from_args(args))
    return 0


def _clean(args: argparse.Namespace) -> int:
    clean(args.repository)
    print(f"removed generated files from {args.repository}")
    return 0
