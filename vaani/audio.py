"""Reading audio files into what `asr` takes: mono float32 at 16 kHz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from vaani.serving.contract import SAMPLING_RATE


class AudioFileError(ValueError):
    """The file cannot be read as audio; the message names the file and the reason."""


def to_model_input(samples: np.ndarray, rate: int) -> np.ndarray:
    """Downmix ``[frames, channels]`` or ``[frames]`` to mono and resample to 16 kHz (soxr, high quality)."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    if rate != SAMPLING_RATE:
        audio = soxr.resample(audio, rate, SAMPLING_RATE, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """WAV, FLAC, OGG, … at any rate and channel count → mono float32 at 16 kHz."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read {path} as audio: {error}") from None
    return to_model_input(samples, rate)
