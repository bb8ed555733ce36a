"""`vaani build` and `vaani make-tiny-model`."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from vaani.build.repository import ENGINES, RepositorySettings
from vaani.errors import UserFacingError

DEFAULT_MODEL = "ai4bharat/indicwav2vec-hindi"
DEFAULT_REPOSITORY = Path("model_repository")

_HELP = {
    "engine": "engine of the wav2vec2 step",
    "max_batch_size": "largest batch (utterances) one execution takes",
    "max_audio_seconds": "longer audio is refused with an error naming the limit",
    "queue_delay_us": "how long the dynamic batcher waits to fill a batch (microseconds)",
    "threads": "ONNX Runtime intra-op threads (0: one per core)",
    "acoustic_instances": "instances of the wav2vec2 step",
    "python_instances": "instances of the preprocess and ctc_decoder steps",
    "max_padding": "fraction of padding allowed when requests of different lengths share a run",
    "bucket_seconds": "pad audio to multiples of this many seconds (0: no buckets)",
    "profile_opt_batch": "TensorRT optimization profile: the batch size tuned for",
    "profile_opt_seconds": "TensorRT optimization profile: the audio length (s) tuned for",
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per `RepositorySettings` field: the dataclass is the single source of truth."""
    group = parser.add_argument_group("repository settings")
    for field in fields(RepositorySettings):
        option = "--" + field.name.replace("_", "-")
        kwargs = {"type": type(field.default), "default": field.default, "help": _HELP.get(field.name, "")}
        if field.name == "engine":
            kwargs["choices"] = ENGINES
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


def register(subcommands) -> None:
    build = subcommands.add_parser(
        "build",
        help="export the model to ONNX, check parity with PyTorch, write the Triton repository",
        description="Export a Wav2Vec2ForCTC to ONNX, gate it on parity with PyTorch, and generate every "
        "config.pbtxt of the `asr` ensemble. Cached: unchanged inputs make it a no-op.",
    )
    add_model_arguments(build)
    build.add_argument("--force", action="store_true", help="rebuild even when the cache says up to date")
    add_settings_arguments(build)
    build.set_defaults(func=_build)

    clean = subcommands.add_parser(
        "clean", help="remove what `vaani build` generated from the repository (keeps the model.py files)"
    )
    clean.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    clean.set_defaults(func=_clean)

    tiny = subcommands.add_parser(
        "make-tiny-model",
        help="write a small randomly initialised Hindi wav2vec2 CTC model (save_pretrained layout)",
    )
    tiny.add_argument("output", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny)


def _build(args: argparse.Namespace) -> int:
    from vaani.build.pipeline import build

    if args.engine == "tensorrt":
        raise UserFacingError(
            "the TensorRT plan needs a GPU, a precision and an evaluation set for its accuracy gate: "
            "build it with `vaani engine` (`make engine PRECISION=fp16`), which also writes the configs"
        )
    build(args.model, args.repository, settings_from_args(args), force=args.force)
    return 0


def _clean(args: argparse.Namespace) -> int:
    from vaani.build.pipeline import clean

    clean(args.repository)
    print(f"removed generated files from {args.repository}")
    return 0


def _tiny(args: argparse.Namespace) -> int:
    from vaani.build.tiny_model import make_untrained

    print(f"wrote {make_untrained(args.output, seed=args.seed)}")
    return 0
