"""Reading audio files into what `asr` takes: mono float32 at 16 kHz."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

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


def require_complete_wav(stream: BinaryIO, size: int, name: str) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header says.

    libsndfile reads a truncated WAV without complaint (it counts the frames that are there),
    so a cut-off file would be transcribed as if it were whole. ``stream`` is at the file's start,
    ``size`` its length in bytes and ``name`` what the message calls it: the CLI reads a path, the
    gateway an upload, and both refuse the same files with the same words.
    """
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    while chunk := stream.read(8):
        if len(chunk) < 8:
            break
        chunk_size = int.from_bytes(chunk[4:], "little")
        if chunk[:4] == b"data":
            present = size - stream.tell()
            if present < chunk_size:
                raise AudioFileError(
                    f"{name} is truncated: its WAV header announces {chunk_size} bytes of audio, "
                    f"the file holds {present}"
                )
            return
        stream.seek(chunk_size + (chunk_size & 1), 1)


def load_audio(path: str | Path) -> np.ndarray:
    """WAV, FLAC, OGG, … at any rate and channel count → mono float32 at 16 kHz."""
    path = Path(path)
    if path.is_dir():
        raise AudioFileError(f"{path} is a directory, not an audio file")
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    with path.open("rb") as handle:
        require_complete_wav(handle, path.stat().st_size, str(path))
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read {path} as audio: {error}") from None
    return to_model_input(samples, rate)
