"""Uploaded bytes → what `asr` takes (mono float32 at 16 kHz), with ffmpeg for what soundfile cannot read.

soundfile (libsndfile) reads WAV, FLAC and OGG in process, which is fast and needs nothing else;
browsers record WebM/Opus or MP4/AAC and phones send M4A and MP3, which only ffmpeg reads here.
So soundfile comes first and ffmpeg, when installed, second. Both run in a worker thread: decoding
must not stall the event loop that is waiting on other uploads' transcripts.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from vaani.audio import AudioFileError, to_model_input
from vaani.serving.contract import SAMPLING_RATE

FFMPEG_SECONDS = 120
"""Longest an ffmpeg decode may run: a stuck decoder must not hold a worker thread forever."""


def decode(data: bytes, filename: str = "upload") -> np.ndarray:
    """Any audio soundfile or ffmpeg reads → mono float32 at 16 kHz; `AudioFileError` names the problem."""
    if not data:
        raise AudioFileError(f"{filename} is empty")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AudioFileError(
                f"cannot read {filename} as audio ({error}); WAV, FLAC and OGG are read directly, "
                "other formats (MP3, M4A, WebM) need ffmpeg on the gateway's PATH"
            ) from None
        return _ffmpeg(ffmpeg, data, filename)
    audio = to_model_input(samples, rate)
    if audio.size == 0:
        raise AudioFileError(f"{filename} holds no audio samples")
    return audio


def _ffmpeg(ffmpeg: str, data: bytes, filename: str) -> np.ndarray:
    """Decode with ffmpeg: mixed down to mono, resampled to 16 kHz, raw float32 out.

    The input goes through a temporary file, not a pipe: MP4/M4A files often keep their index at
    the end, which ffmpeg can only reach by seeking.
    """
    with tempfile.NamedTemporaryFile(prefix="vaani-upload-") as source:
        source.write(data)
        source.flush()
        command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", source.name]
        command += ["-vn", "-ac", "1", "-ar", str(SAMPLING_RATE), "-f", "f32le", "pipe:1"]
        try:
            result = subprocess.run(command, capture_output=True, timeout=FFMPEG_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise AudioFileError(f"decoding {filename} took over {FFMPEG_SECONDS} s; gave up") from None
        stderr = result.stderr.decode("utf-8", "replace").replace(f"{source.name}: ", "")
    audio = np.frombuffer(result.stdout, dtype="<f4")
    if result.returncode != 0 or audio.size == 0:
        reason = stderr.strip().splitlines()
        detail = reason[-1] if reason else "no audio stream"
        raise AudioFileError(f"cannot read {filename} as audio: {detail}")
    return np.ascontiguousarray(audio, dtype=np.float32)


async def decode_async(data: bytes, filename: str = "upload") -> np.ndarray:
    """`decode` in a worker thread."""
    return await asyncio.to_thread(decode, data, filename)
