"""Uploaded files → what `asr` takes (mono float32 at 16 kHz), decoding no more than the limit allows.

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3 in process, which is fast and needs nothing else;
browsers record WebM/Opus or MP4/AAC and phones send M4A, which only ffmpeg reads here. So soundfile
comes first and ffmpeg, when installed, second. Both run in a few worker threads of their own:
decoding must not stall the event loop that is waiting on other uploads' transcripts.

An upload is untrusted, and compressed audio is a decompression bomb waiting to happen: 1.9 MB of
FLAC holds ten hours of silence, 2.3 GB as float32. So the length is known before more than a
bounded amount is decoded. The header's word (soundfile's frame count, ffprobe's duration) is
checked against ``max_seconds`` first; then decoding stops as soon as the audio runs past the limit,
whatever the header said: soundfile's in blocks of 4 MB, ffmpeg's into a file it stops writing at
the limit. Memory holds the model's input (16 kHz mono), never what a header claims.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from vaani.audio import AudioFileError, require_complete_wav
from vaani.gateway.limits import MAX_AUDIO_SECONDS
from vaani.serving.contract import SAMPLING_RATE

FFMPEG_SECONDS = 120
"""Longest an ffmpeg decode may run: a stuck decoder must not hold a worker thread forever."""

PROBE_SECONDS = 10
"""Longest ffprobe may take to read a header; it reads a few MB at most."""

BLOCK_SAMPLES = 1 << 20
"""Samples (all channels together) decoded at a time, 4 MB: what one step of decoding holds."""

SAMPLES_PER_SECOND = 96_000
"""Decoding work allowed per second of the limit, in samples of all channels: 48 kHz stereo. Real
recordings under the upload limit never come near it; a FLAC of silence at 655 kHz with 8 channels
packs billions of samples into a few MB, minutes of CPU to decode."""

DECODERS = ThreadPoolExecutor(4, thread_name_prefix="vaani-decode")
"""Uploads decoded at once. Each holds at most the model's input up to the limit (230 MB for an
hour, twice that while soundfile's blocks are joined), so this, not the number of connections,
bounds the memory that decoding takes."""

UNKNOWN_FRAMES = sys.maxsize
"""libsndfile's frame count when the header does not say (a FLAC that ffmpeg wrote to a pipe): it
then fails at the file's end, so such files go to ffmpeg."""

ESTIMATED = "Estimating duration from bitrate"
"""ffprobe's warning when it guessed a duration from the file size: then it proves nothing."""


@dataclass(frozen=True)
class Header:
    """What a file says about itself before it is decoded."""

    frames: int
    rate: int
    channels: int


def decode(upload: BinaryIO, filename: str = "upload", max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Any audio soundfile or ffmpeg reads → mono float32 at 16 kHz; `AudioFileError` names the problem
    (not audio, truncated, longer than ``max_seconds``).

    ``upload`` is a seekable file (the one the upload was spooled to): it is read where it lies,
    never copied whole into memory.
    """
    upload.seek(0, io.SEEK_END)
    size = upload.tell()
    if not size:
        raise AudioFileError(f"{filename} is empty")
    upload.seek(0)
    require_complete_wav(upload, size, filename)
    upload.seek(0)
    try:
        sound = sf.SoundFile(upload)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        why = str(error)
    else:
        with sound:
            if sound.frames != UNKNOWN_FRAMES:
                return _nonempty(_soundfile(sound, filename, max_seconds), filename)
        why = "its header does not say its length"
    return _nonempty(_ffmpeg(upload, filename, max_seconds, why), filename)


def _nonempty(audio: np.ndarray, filename: str) -> np.ndarray:
    if audio.size == 0:
        raise AudioFileError(f"{filename} holds no audio samples")
    return audio


def _check_header(header: Header, filename: str, max_seconds: float) -> None:
    """Refuse what the header already shows to be over the limit, before anything is decoded."""
    if header.frames > max_seconds * header.rate:
        seconds = header.frames / header.rate
        raise _too_long(filename, max_seconds, f"its header says {seconds:.1f} s")
    if header.frames * header.channels > max_seconds * SAMPLES_PER_SECOND:
        raise AudioFileError(
            f"{filename} holds {header.channels} channels at {header.rate} Hz: more samples than the "
            f"gateway decodes for {max_seconds:g} s of audio (that of 48 kHz stereo)"
        )


def _max_frames(header: Header, max_seconds: float) -> int:
    """The most frames decoding may produce before the file is refused, whatever its header says."""
    return math.floor(min(max_seconds * header.rate, max_seconds * SAMPLES_PER_SECOND / header.channels))


def _too_long(filename: str, max_seconds: float, evidence: str) -> AudioFileError:
    return AudioFileError(
        f"{filename} is longer than the gateway's limit of {max_seconds:g} s (--max-audio-seconds): "
        f"{evidence}"
    )


class _ModelInput:
    """Blocks of decoded audio → 16 kHz mono as they come, so that what is kept is the model's input,
    not the file's samples (48 kHz stereo would be six times as much). Same result as
    `vaani.audio.to_model_input` on the whole file: soxr's stream resampler is exact."""

    def __init__(self, rate: int) -> None:
        self.parts: list[np.ndarray] = []
        self.resampler = None
        if rate != SAMPLING_RATE:
            self.resampler = soxr.ResampleStream(rate, SAMPLING_RATE, 1, dtype="float32", quality="HQ")

    def add(self, block: np.ndarray) -> None:
        """``block`` is ``[frames, channels]`` and may be reused by the caller afterwards."""
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()
        self.parts.append(mono if self.resampler is None else self.resampler.resample_chunk(mono))

    def finish(self) -> np.ndarray:
        if self.resampler is not None:
            self.parts.append(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def _soundfile(sound: sf.SoundFile, filename: str, max_seconds: float) -> np.ndarray:
    """Decode in blocks of at most `BLOCK_SAMPLES`, stopping once past the limit.

    libsndfile stops at the frame count of the header (WAV, FLAC, MP3), so the count checked there
    is what decoding finds; the count of decoded frames is checked all the same, so that the bound
    does not rest on each format's reader. An error after the header was read means a damaged file
    (a FLAC cut short loses sync): it is refused, as `vaani transcribe` refuses it, rather than handed
    to ffmpeg, which would decode what is there.
    """
    header = Header(sound.frames, sound.samplerate, sound.channels)
    _check_header(header, filename, max_seconds)
    limit = _max_frames(header, max_seconds)
    buffer = np.empty((max(1, BLOCK_SAMPLES // sound.channels), sound.channels), dtype=np.float32)
    output = _ModelInput(sound.samplerate)
    decoded = 0
    try:
        while len(block := sound.read(out=buffer)):
            decoded += len(block)
            if decoded > limit:
                raise _too_long(filename, max_seconds, "decoding ran past it")
            output.add(block)
    except sf.LibsndfileError as error:
        raise AudioFileError(f"cannot read {filename} as audio: {error}") from None
    return output.finish()


def _ffmpeg(upload: BinaryIO, filename: str, max_seconds: float, why: str) -> np.ndarray:
    """Decode with ffmpeg (``why``: what soundfile could not do): mixed down to mono, resampled to
    16 kHz, raw float32 out.

    The input goes through a temporary file, not a pipe: MP4/M4A files often keep their index at
    the end, which ffmpeg can only reach by seeking. It lies alone in a folder of its own, because
    ffmpeg follows playlists (HLS, ffconcat) to files beside them: an upload that is a playlist
    must find nothing there to read.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioFileError(
            f"cannot read {filename} as audio ({why}); WAV, FLAC, OGG and MP3 are read directly, "
            "other formats (M4A, WebM) need ffmpeg on the gateway's PATH"
        )
    with tempfile.TemporaryDirectory(prefix="vaani-upload-") as folder:
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as source:
            upload.seek(0)
            shutil.copyfileobj(upload, source)
        header = _probe(source.name)
        if header is not None:
            _check_header(header, filename, max_seconds)
        return _ffmpeg_bounded(ffmpeg, source.name, filename, max_seconds)


def _probe(path: str) -> Header | None:
    """The first audio stream's length, rate and channels as ffprobe reads them from the header; None
    where ffprobe is missing or the header does not say. A duration that ffprobe estimated from the
    bitrate is no evidence (a VBR file's guess can be far off either way) and counts as unknown."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    command = [ffprobe, "-v", "warning", "-select_streams", "a:0", "-of", "json"]
    command += ["-show_entries", "format=duration:stream=sample_rate,channels", path]
    try:
        result = subprocess.run(command, capture_output=True, timeout=PROBE_SECONDS, check=False)
        found = json.loads(result.stdout or b"{}")
        stream = found["streams"][0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
        duration = float(found["format"]["duration"])
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None
    if ESTIMATED.encode() in result.stderr or rate <= 0 or channels <= 0:
        return None
    return Header(math.ceil(duration * rate), rate, channels)


def _ffmpeg_bounded(ffmpeg: str, path: str, filename: str, max_seconds: float) -> np.ndarray:
    """Decode into a file that ffmpeg stops writing once past the limit (``-fs``): a file whose header
    lies or says nothing costs at most ``max_seconds`` of 16 kHz mono, on disk, and `FFMPEG_SECONDS`
    of decoding; memory holds the audio only once it is known to be within the limit."""
    limit = math.floor(max_seconds * SAMPLING_RATE) * 4
    beside = os.path.dirname(path)  # the upload's own folder
    with tempfile.NamedTemporaryFile(dir=beside) as decoded, tempfile.TemporaryFile() as log:
        command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-vn", "-ac", "1"]
        command += ["-ar", str(SAMPLING_RATE), "-f", "f32le", "-fs", str(limit + 4), "-y", decoded.name]
        try:
            # stderr to a file, not a pipe: a corrupt stream can log more than a pipe holds.
            result = subprocess.run(command, stderr=log, timeout=FFMPEG_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise AudioFileError(f"decoding {filename} took over {FFMPEG_SECONDS} s; gave up") from None
        size = os.fstat(decoded.fileno()).st_size
        if size > limit:
            raise _too_long(filename, max_seconds, "decoding ran past it")
        if result.returncode != 0 or size == 0:
            detail = _last_line(log).replace(f"{path}: ", "") or "no audio stream"
            raise AudioFileError(f"cannot read {filename} as audio: {detail}")
        return np.fromfile(decoded, dtype="<f4").astype(np.float32, copy=False)


def _last_line(log: BinaryIO) -> str:
    """The last line of ffmpeg's log, which names the problem; read from the end, whatever its size."""
    size = log.seek(0, io.SEEK_END)
    log.seek(max(0, size - 4096))
    lines = log.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


async def decode_async(
    upload: BinaryIO, filename: str = "upload", max_seconds: float = MAX_AUDIO_SECONDS
) -> np.ndarray:
    """`decode` in one of `DECODERS`' threads; uploads wait for a free one on disk, where they were
    spooled, not in memory."""
    return await asyncio.get_running_loop().run_in_executor(DECODERS, decode, upload, filename, max_seconds)
