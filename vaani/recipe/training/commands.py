"""`vaani train` (the bundled model), `vaani reference-eval` (its CER/WER), `vaani make-tiny-model`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from vaani.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    from vaani.recipe.training.train import Architecture, Settings

    defaults = Settings(corpus=Path(), output=Path())
    architecture = Architecture()
    train = subparsers.add_parser(
        "train",
        help="train the small wav2vec2 CTC model on a `vaani corpus` directory",
        description=(
            "Train a small Wav2Vec2ForCTC from scratch with CTC on CORPUS/{train,validation,test}.jsonl "
            "(written by `vaani corpus`), with speed/noise augmentation and time masking; report the "
            "validation CER periodically, keep the best checkpoint, and write OUTPUT in save_pretrained "
            "layout with tokenizer and feature-extractor files, the test plan (testset.jsonl), "
            "training.json and a model card (README.md) with the test CER/WER."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--corpus", type=Path, required=True, help="corpus directory from `vaani corpus`")
    train.add_argument("--output", type=Path, default=Path("models/tiny-hindi"), help="model directory")
    train.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over train")
    train.add_argument(
        "--max-minutes",
        type=float,
        default=defaults.max_minutes,
        help="wall-clock budget of the training loop; the learning-rate schedule ends with it",
    )
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="peak AdamW rate")
    train.add_argument(
        "--batch-seconds", type=float, default=defaults.batch_seconds, help="padded audio per batch"
    )
    train.add_argument(
        "--eval-every", type=int, default=defaults.eval_every, help="steps between validations"
    )
    train.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of weights, batches, augmentation"
    )
    train.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    train.add_argument(
        "--init",
        type=Path,
        help="start from this saved model instead of random weights (architecture options ignored)",
    )
    for item in fields(architecture):
        train.add_argument(
            f"--{item.name.replace('_', '-')}",
            type=int,
            default=getattr(architecture, item.name),
            help=f"model {item.name.replace('_', ' ')}",
        )
    train.set_defaults(func=run_train)

    reference = subparsers.add_parser(
        "reference-eval",
        help="CER/WER of a saved model on a manifest, in PyTorch (the reference for the server)",
        description=(
            "Transcribe a NeMo-style manifest with a save_pretrained model through its own feature "
            "extractor and tokenizer (greedy CTC, FP32) and print CER/WER (jiwer) as JSON."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    reference.add_argument("manifest", type=Path, help="JSONL with audio_filepath and text")
    reference.add_argument("--model", type=Path, default=Path("models/tiny-hindi"), help="model directory")
    reference.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    reference.add_argument("--output", type=Path, help="also write the JSON here")
    reference.set_defaults(func=run_reference)

    tiny = subparsers.add_parser(
        "make-tiny-model",
        help="write a small randomly initialised Hindi wav2vec2 CTC model (save_pretrained layout)",
    )
    tiny.add_argument("output", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny)


def settings_from(args: argparse.Namespace):
    from vaani.recipe.training.train import Architecture, Settings

    return Settings(
        corpus=args.corpus,
        output=args.output,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        learning_rate=args.learning_rate,
        batch_seconds=args.batch_seconds,
        eval_every=args.eval_every,
        seed=args.seed,
        device=args.device,
        init=args.init,
        architecture=Architecture(**{f.name: getattr(args, f.name) for f in fields(Architecture)}),
    )


def command_line(args: argparse.Namespace) -> str:
    """The `vaani train` command that reproduces this run, written into the model card."""
    words = ["vaani", "train", "--corpus", str(args.corpus), "--output", str(args.output)]
    for name in ("epochs", "max_minutes", "learning_rate", "batch_seconds", "seed", "device"):
        words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.init:
        words += ["--init", str(args.init)]
    return shlex.join(words)


def run_train(args: argparse.Namespace) -> int:
    from vaani.recipe.training import model_card
    from vaani.recipe.training.train import train

    if args.epochs < 1 or args.max_minutes <= 0:
        raise UserFacingError("--epochs must be at least 1 and --max-minutes above 0")
    report = train(settings_from(args))
    corpus_info = args.corpus / "corpus.json"
    corpus = json.loads(corpus_info.read_text(encoding="utf-8")) if corpus_info.is_file() else None
    (args.output / "training.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=1) + "\n", "utf-8"
    )
    (args.output / "README.md").write_text(model_card.render(report, command_line(args), corpus), "utf-8")
    print(json.dumps({"cer": report["test"]["cer"], "wer": report["test"]["wer"]}))
    return 0


def run_reference(args: argparse.Namespace) -> int:
    from vaani.recipe.training.evaluate import evaluate_manifest

    if not (args.model / "config.json").is_file():
        raise UserFacingError(f"{args.model} has no config.json: not a save_pretrained model directory")
    result = json.dumps(
        evaluate_manifest(args.model, args.manifest, args.device), ensure_ascii=False, indent=1
    )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(result + "\n", encoding="utf-8")
    print(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m vaani.recipe.training.commands train|reference-eval ...` without the rest of the CLI."""
    root = argparse.ArgumentParser(prog="python -m vaani.recipe.training.commands")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(argv)
    try:
        return args.func(args)
    except UserFacingError as error:
        print(f"vaani {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


def _tiny(args: argparse.Namespace) -> int:
    from vaani.recipe.tiny_model import make_untrained

    print(f"wrote {make_untrained(args.output, seed=args.seed)}")
    return 0
