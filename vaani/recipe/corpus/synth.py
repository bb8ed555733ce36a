"""Synthetic Hindi speech from `espeak-ng`: single utterances and whole corpora.

A corpus is planned before it is spoken: each utterance's text, voice, speed and pitch
come from seeded generators, so a plan (a small JSONL file) pins down the audio exactly
for one espeak-ng version. The bundled model's test set is committed as such a plan and
regenerated on demand instead of committing audio.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from vaani.errors import UserFacingError
from vaani.recipe.corpus import hindi_text
from vaani.serving.contract import SAMPLING_RATE

# espeak-ng's Hindi voice and variants of it (different formant sets and genders).
VOICES = (
    "hi",
    "hi+m1",
    "hi+m2",
    "hi+m3",
    "hi+m4",
    "hi+m5",
    "hi+m6",
    "hi+m7",
    "hi+f1",
    "hi+f2",
    "hi+f3",
    "hi+f4",
    "hi+f5",
    "hi+klatt",
    "hi+klatt2",
    "hi+klatt4",
)
SPEED_WPM = (135, 195)  # espeak-ng's default is 175
PITCH = (25, 75)  # 0-99, default 50


@dataclass(frozen=True)
class Utterance:
    """Everything needed to speak one utterance again."""

    id: str
    text: str
    voice: str
    speed: int
    pitch: int

    @classmethod
    def from_json(cls, line: str) -> Utterance:
        record = json.loads(line)
        return cls(**{key: record[key] for key in ("id", "text", "voice", "speed", "pitch")})

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def espeak_binary() -> str:
    """Path of `espeak-ng`, or a message that says which package provides it."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise UserFacingError(
            "espeak-ng is not installed: install the Debian/Ubuntu package `espeak-ng` "
            "(`sudo apt-get install espeak-ng`, which `make setup` does)"
        )
    return binary


def espeak_version() -> str:
    """espeak-ng's version line: output is deterministic only within one version."""
    result = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=False)
    return result.stdout.split("Data at:")[0].strip()


def synthesize(text: str, voice: str = "hi", speed: int = 175, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` with espeak-ng: mono float32 samples at 16 kHz in [-1, 1]."""
    import soundfile
    import soxr

    command = [espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {message or 'no audio'}")
    audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate != SAMPLING_RATE:
        audio = soxr.resample(audio, rate, SAMPLING_RATE, quality="HQ")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def plan(split: str, count: int, seed: int = 0) -> list[Utterance]:
    """``count`` utterances of ``split``: sentences, voices, speeds and pitches from ``seed``."""
    rng = random.Random(f"vaani-voices:{seed}:{split}")
    return [
        Utterance(
            id=f"{split}-{index:06d}",
            text=text,
            voice=rng.choice(VOICES),
            speed=rng.randint(*SPEED_WPM),
            pitch=rng.randint(*PITCH),
        )
        for index, text in enumerate(hindi_text.sentences(split, count, seed))
    ]


def read_plan(path: Path) -> list[Utterance]:
    """Utterances of a plan or manifest file (extra fields such as `audio_filepath` are ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UserFacingError(f"cannot read plan {path}: {error.strerror}") from error
    try:
        return [Utterance.from_json(line) for line in lines if line.strip()]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise UserFacingError(
            f"{path} is not a plan: each line needs id, text, voice, speed, pitch"
        ) from error


def write_plan(utterances: Iterable[Utterance], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(u.to_json() + "\n" for u in utterances), encoding="utf-8")


def _speak_to_file(job: tuple[Utterance, str]) -> tuple[Utterance, str, float]:
    import soundfile

    utterance, path = job
    audio = synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)
    soundfile.write(path, audio, SAMPLING_RATE)
    return utterance, path, len(audio) / SAMPLING_RATE


def speak_all(
    utterances: list[Utterance], audio_dir: Path, audio_format: str = "flac", workers: int = 1
) -> Iterator[tuple[Utterance, str, float]]:
    """Write each utterance to ``audio_dir/<id>.<format>``; yields (utterance, path, seconds) in order."""
    espeak_binary()
    audio_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(u, str((audio_dir / f"{u.id}.{audio_format}").resolve())) for u in utterances]
    if workers <= 1:
        yield from map(_speak_to_file, jobs)
        return
    with Pool(workers) as pool:
        yield from pool.imap(_speak_to_file, jobs, chunksize=16)


def manifest_line(utterance: Utterance, path: str, seconds: float) -> str:
    """A NeMo-style manifest record; the synthesis parameters ride along so it doubles as a plan."""
    record = {
        "audio_filepath": path,
        "text": utterance.text,
        "duration": round(seconds, 4),
        **asdict(utterance),
    }
    return json.dumps(record, ensure_ascii=False)
