"""`vaani corpus`: write a synthetic Hindi speech corpus (audio + NeMo-style manifests)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from vaani.errors import UserFacingError
from vaani.recipe.corpus import hindi_text, synth

DEFAULT_SIZES = {"train": 40_000, "validation": 400, "test": 400}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corpus",
        help="write a synthetic Hindi speech corpus with espeak-ng",
        description=(
            "Write synthetic Hindi speech (espeak-ng, several voices, random speed and pitch) and "
            "one NeMo-style JSONL manifest per split (audio_filepath, text, duration, plus the "
            "synthesis parameters). Same seed and sizes give the same corpus, so "
            "`vaani corpus --split test --output DIR` regenerates the bundled model's test set."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", type=Path, required=True, help="corpus directory (created)")
    parser.add_argument(
        "--split",
        action="append",
        choices=hindi_text.SPLITS,
        default=argparse.SUPPRESS,
        help="split to write; repeat for several (default: all three)",
    )
    for split, size in DEFAULT_SIZES.items():
        parser.add_argument(f"--{split}-size", type=int, default=size, help=f"utterances in {split}")
    parser.add_argument("--seed", type=int, default=0, help="seed of sentences, voices, speeds and pitches")
    parser.add_argument(
        "--plan",
        type=Path,
        help="speak the utterances of this plan/manifest JSONL instead of drawing new ones "
        "(with exactly one --split, which names the output)",
    )
    parser.add_argument("--format", choices=("flac", "wav"), default="flac", help="audio file format")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parallel espeak-ng processes"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    splits = getattr(args, "split", None) or list(hindi_text.SPLITS)
    if args.plan is not None and len(splits) != 1:
        raise UserFacingError("--plan needs exactly one --split (the name of the output manifest)")
    sizes = {}
    for split in splits:
        size = getattr(args, f"{split}_size")
        if args.plan is None and size < 1:
            raise UserFacingError(f"--{split}-size must be at least 1; got {size}")
        utterances = synth.read_plan(args.plan) if args.plan else synth.plan(split, size, args.seed)
        write_split(split, utterances, args.output, args.format, max(1, args.workers))
        sizes[split] = len(utterances)
    describe(args, sizes)
    return 0


def describe(args: argparse.Namespace, sizes: dict[str, int]) -> None:
    """``corpus.json``: how the corpus was made, for model cards and for regenerating it."""
    command = ["vaani", "corpus", "--output", str(args.output)]
    for split in sizes:
        command += ["--split", split]
        if args.plan is None:
            command += [f"--{split}-size", str(sizes[split])]
    command += ["--plan", str(args.plan)] if args.plan else ["--seed", str(args.seed)]
    info = {
        "command": shlex.join(command),
        "seed": args.seed,
        "sizes": sizes,
        "voices": list(synth.VOICES),
        "speed_wpm": list(synth.SPEED_WPM),
        "pitch": list(synth.PITCH),
        "espeak_ng": synth.espeak_version(),
    }
    (args.output / "corpus.json").write_text(
        json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )


def write_split(
    split: str, utterances: list[synth.Utterance], output: Path, audio_format: str, workers: int
) -> Path:
    """Speak one split and write ``output/<split>.jsonl`` next to ``output/<split>/``."""
    from tqdm import tqdm

    started = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    manifest = output / f"{split}.jsonl"
    seconds = 0.0
    spoken = synth.speak_all(utterances, output / split, audio_format, workers)
    with manifest.open("w", encoding="utf-8") as out:
        for utterance, path, duration in tqdm(spoken, total=len(utterances), desc=split, unit="utt"):
            relative = Path(path).relative_to(manifest.parent.resolve())  # the corpus folder can move
            out.write(synth.manifest_line(utterance, str(relative), duration) + "\n")
            seconds += duration
    print(
        f"{split}: {len(utterances)} utterances, {seconds / 3600:.2f} h of audio → {manifest} "
        f"({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Run `vaani corpus` without the rest of the CLI (machines with only the training deps)."""
    root = argparse.ArgumentParser(prog="python -m vaani.recipe.corpus.commands")
    sub = root.add_subparsers(dest="command", required=True)
    register(sub)
    args = root.parse_args(["corpus", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except UserFacingError as error:
        print(f"vaani corpus: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
