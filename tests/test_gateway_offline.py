"""The gateway's parts that need no Triton: decoding uploads, and the answers when Triton is away."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from vaani.audio import AudioFileError
from vaani.gateway.app import GatewaySettings, create_app
from vaani.gateway.decoding import decode
from vaani.server.process import free_port
from vaani.serving.contract import SAMPLING_RATE


def _tone(rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _encoded(audio: np.ndarray, rate: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt)
    return buffer.getvalue()


SOUNDFILE_CASES = [("WAV", 22050, 2), ("FLAC", 16000, 1), ("OGG", 48000, 1)]


@pytest.mark.parametrize(("fmt", "rate", "channels"), SOUNDFILE_CASES)
def test_soundfile_formats_become_mono_16k(fmt, rate, channels):
    audio = decode(_encoded(_tone(rate, channels=channels), rate, fmt), f"x.{fmt.lower()}")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLING_RATE) <= 0.01 * SAMPLING_RATE


@pytest.mark.parametrize("container", ["mp3", "m4a", "webm"])
def test_ffmpeg_formats(tmp_path, container):
    wav = tmp_path / "tone.wav"
    sf.write(wav, _tone(44100), 44100)
    encoded = tmp_path / f"tone.{container}"
    subprocess.run([shutil.which("ffmpeg"), "-loglevel", "error", "-i", wav, encoded], check=True)
    audio = decode(encoded.read_bytes(), encoded.name)
    assert abs(len(audio) - SAMPLING_RATE) <= 0.1 * SAMPLING_RATE
    assert 0.1 < float(np.abs(audio).max()) < 0.5


@pytest.mark.parametrize(("data", "says"), [(b"", "is empty"), (b"not audio", "cannot read notes.txt")])
def test_what_is_not_audio_is_refused_by_name(data, says):
    with pytest.raises(AudioFileError, match=says):
        decode(data, "notes.txt")


def test_without_triton_requests_get_503_and_health_says_unavailable():
    app = create_app(GatewaySettings(triton_url=f"127.0.0.1:{free_port()}"))
    wav = _encoded(_tone(SAMPLING_RATE), SAMPLING_RATE, "WAV")
    with TestClient(app) as client:
        assert client.get("/health").status_code == 503
        upload = {"files": {"file": ("a.wav", wav)}, "data": {"model": "x"}}
        response = client.post("/v1/audio/transcriptions", **upload)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "server_error" and "unavailable" in error["message"]
        assert set(error) == {"message", "type", "param", "code"}
        assert client.get("/v1/models").json()["data"][0]["id"] == "vaani"
        assert client.get("/docs").status_code == 200
        assert "vaani" in client.get("/").text


def test_uploads_over_the_limit_get_413_also_without_a_content_length():
    """A chunked body declares no size: the limit counts bytes as they arrive."""
    app = create_app(GatewaySettings(triton_url=f"127.0.0.1:{free_port()}", max_upload_bytes=50_000))

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(20):
            yield b"\0" * 10_000

    with TestClient(app) as client:
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        response = client.post("/v1/audio/transcriptions", content=chunks(), headers=headers)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["param"] == "file"
