"""Mixed-length test clips (2–15 s) for load tests, perf_analyzer and the bench.

Real traffic mixes short commands with long dictations, and a server that only ever sees one
length hides its batching costs. The corpus sentences are 1–4 s long, so a clip is several
utterances of the synthetic corpus joined with short pauses until it reaches its planned
length; the lengths are spread evenly over the range and shuffled by a seed, so every run
(and every system in the bench) gets the same clips.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vaani.errors import UserFacingError
from vaani.manifest import read_manifest
from vaani.serving.contract import SAMPLING_RATE

PAUSE_SECONDS = 0.25
CLIPS_INFO = "clips.json"


@dataclass(frozen=True)
class Clip:
    """One clip of a manifest, loaded: samples in memory so timing never includes disk reads."""

    path: str
    text: str
    audio: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLING_RATE


@dataclass(frozen=True)
class ClipPlan:
    """What a clip folder was made from; a folder with the same plan is reused as it is."""

    count: int = 24
    min_seconds: float = 2.0
    max_seconds: float = 15.0
    seed: int = 0
    source: str = "synthetic"

    def lengths(self) -> list[float]:
        """Evenly spread target lengths, shuffled so any prefix of the clips still mixes lengths."""
        if self.count < 1 or not 0 < self.min_seconds <= self.max_seconds:
            raise UserFacingError("clips need count >= 1 and 0 < min-seconds <= max-seconds")
        step = (self.max_seconds - self.min_seconds) / max(1, self.count - 1)
        lengths = [self.min_seconds + i * step for i in range(self.count)]
        random.Random(self.seed).shuffle(lengths)
        return lengths


def _utterances(plan: ClipPlan) -> Iterator[tuple[str, np.ndarray]]:
    """Endless (text, audio) pairs: the source manifest's files in order, or freshly synthesized speech."""
    from vaani.audio import load_audio

    if plan.source != "synthetic":
        entries = read_manifest(Path(plan.source))
        while True:
            for entry in entries:
                yield entry.text, load_audio(entry.audio_path)
    from vaani.recipe.corpus import synth

    index = 0
    while True:
        for utterance in synth.plan("test", 64, seed=plan.seed + index):
            audio = synth.synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)
            yield utterance.text, audio
        index += 1


def make_clips(directory: Path, plan: ClipPlan) -> Path:
    """Write the clips and ``manifest.jsonl`` (NeMo style) into ``directory``; reused if the plan matches."""
    import soundfile
    from tqdm import tqdm

    manifest = directory / "manifest.jsonl"
    info = directory / CLIPS_INFO
    if manifest.exists() and info.exists() and json.loads(info.read_text()) == asdict(plan):
        return manifest
    directory.mkdir(parents=True, exist_ok=True)
    pause = np.zeros(round(PAUSE_SECONDS * SAMPLING_RATE), dtype=np.float32)
    source = _utterances(plan)
    lines = []
    for index, target in enumerate(tqdm(plan.lengths(), desc="clips", unit="clip")):
        texts: list[str] = []
        parts: list[np.ndarray] = []
        while sum(len(p) for p in parts[:-1]) < target * SAMPLING_RATE:  # the last part is a pause
            text, audio = next(source)
            texts.append(text)
            parts += [audio, pause]
        audio = np.concatenate(parts[:-1])[: round(plan.max_seconds * SAMPLING_RATE)]
        path = directory / f"clip-{index:03d}.wav"
        soundfile.write(path, audio, SAMPLING_RATE, subtype="FLOAT")
        record = {
            "audio_filepath": path.name,
            "text": " ".join(texts),
            "duration": len(audio) / SAMPLING_RATE,
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info.write_text(json.dumps(asdict(plan)))
    return manifest


def load_clips(manifest: Path) -> list[Clip]:
    """Every clip of a manifest, decoded to 16 kHz mono float32."""
    from vaani.audio import load_audio

    return [
        Clip(str(entry.audio_path), entry.text, load_audio(entry.audio_path))
        for entry in read_manifest(manifest)
    ]


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--manifest`` or the options that make clips, shared by `vaani loadtest`, `perf` and `bench`."""
    group = parser.add_argument_group("clips (mixed lengths, made once and reused)")
    group.add_argument(
        "--manifest",
        type=Path,
        help="NeMo JSONL manifest of the clips to send (default: make --clips clips of the synthetic "
        "corpus under OUTPUT/clips)",
    )
    group.add_argument("--clips", type=int, default=ClipPlan.count, help="number of clips to make")
    group.add_argument("--min-seconds", type=float, default=ClipPlan.min_seconds, help="shortest clip")
    group.add_argument("--max-seconds", type=float, default=ClipPlan.max_seconds, help="longest clip")
    group.add_argument(
        "--corpus-manifest",
        type=Path,
        help="join utterances of this corpus manifest (`vaani corpus`) instead of synthesizing new ones",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the clip lengths and sentences")


def manifest_from_args(args: argparse.Namespace, output: Path) -> Path:
    """The manifest named by ``--manifest``, or the one made (or reused) under ``output/clips``."""
    if args.manifest is not None:
        return args.manifest
    plan = ClipPlan(
        count=args.clips,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        seed=args.seed,
        source=str(args.corpus_manifest.resolve()) if args.corpus_manifest else "synthetic",
    )
    return make_clips(output / "clips", plan)
