"""`vaani lm`: the bundled model's KenLM n-gram LM, built from the training sentences and tuned."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lm",
        help="build a KenLM n-gram LM from the training sentences into MODEL/language_model/",
        description=(
            "Run KenLM's lmplz and build_binary over the synthetic corpus' training sentences (never "
            "validation or test), write MODEL/language_model/ in Hugging Face's Wav2Vec2ProcessorWithLM "
            "layout, and choose alpha and beta on validation utterances synthesized with espeak-ng, "
            "among those no worse than greedy decoding on the out-of-vocabulary plan (--oov-plan)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=Path("models/tiny-hindi"), help="model folder")
    parser.add_argument("--order", type=int, default=3, help="n-gram order")
    parser.add_argument(
        "--kenlm-bin", type=Path, help="folder holding lmplz and build_binary (default: PATH)"
    )
    parser.add_argument("--validation-size", type=int, default=60, help="utterances to tune alpha/beta on")
    parser.add_argument("--beam-width", type=int, default=64)
    parser.add_argument(
        "--oov-plan",
        type=Path,
        default=Path("benchmarks/oov-plan.jsonl"),
        help="plan of sentences outside the training text: no chosen setting may decode them worse "
        "than greedy decoding ('none' to choose on validation alone)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaani.recipe import language_model

    folder = language_model.build_lm(args.model, args.order, args.kenlm_bin)
    print(
        f"wrote {folder}: {', '.join(f'{p.name} {p.stat().st_size // 1024} KiB' for p in folder.iterdir())}"
    )
    texts, logits, spec = language_model.validation_logits(args.model, args.validation_size)
    guard = None
    if str(args.oov_plan) != "none":
        from vaani.recipe.corpus import synth

        oov_texts, oov_logits, _ = language_model.plan_logits(args.model, synth.read_plan(args.oov_plan))
        guard = (oov_texts, oov_logits)
    language_model.tune(folder, texts, logits, spec, args.beam_width, guard)
    return 0
