"""The gateway's parts that need no Triton: decoding uploads, and the answers when Triton is away."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import threading
import time
from typing import ClassVar

import numpy as np
import pytest
import requests
import soundfile as sf
import srt
from fastapi.testclient import TestClient

from vaani.audio import AudioFileError
from vaani.gateway.app import GatewaySettings, create_app
from vaani.gateway.decoding import decode
from vaani.gateway.triton import Transcript
from vaani.server.process import free_port
from vaani.serving.contract import SAMPLING_RATE
from vaani.subtitles import Word

from .browser import chromium


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
        stream = {"model": "x", "stream": "true"}
        streamed = client.post("/v1/audio/transcriptions", files=upload["files"], data=stream)
        assert streamed.status_code == 503, "a stream that cannot start is refused before it starts"
        assert streamed.json()["error"]["type"] == "server_error"
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


WORDS = (Word("एक", 0.10, 0.40), Word("दो", 0.50, 0.80), Word("तीन", 2.00, 2.30), Word("चार", 2.40, 2.70))


class FakeTriton:
    """Stands in for Triton with word times (what `asr` answers once it gives them), and records
    whether each request asked for them."""

    asked: ClassVar[list[bool]] = []

    def __init__(self, url: str) -> None:
        self.url = url

    async def transcribe(self, audio: np.ndarray, with_words: bool = True) -> Transcript:
        FakeTriton.asked.append(with_words)
        return Transcript(" ".join(w.word for w in WORDS), WORDS if with_words else None)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def test_word_times_make_words_segments_and_cues():
    app = create_app(GatewaySettings(), connect=FakeTriton)
    upload = {"files": {"file": ("a.wav", _encoded(_tone(SAMPLING_RATE, 3.0), SAMPLING_RATE, "WAV"))}}
    url = "/v1/audio/transcriptions"
    with TestClient(app) as client:
        FakeTriton.asked.clear()
        assert client.post(url, **upload, data={"model": "m"}).json()["text"] == "एक दो तीन चार"
        fields = {
            "model": "m",
            "response_format": "verbose_json",
            "timestamp_granularities[]": ["word", "segment"],
        }
        body = client.post(url, **upload, data=fields).json()
        subrip = client.post(url, **upload, data={"model": "m", "response_format": "srt"}).text
    assert FakeTriton.asked == [False, True, True], "json needs no word times and must not ask for them"
    assert body["words"] == [w.as_dict() for w in WORDS]
    assert [(s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (0.1, 0.8, "एक दो"),
        (2.0, 2.7, "तीन चार"),
    ]
    assert body["duration"] == 3.0
    assert [c.content for c in srt.parse(subrip)] == ["एक दो", "तीन चार"]


def _events(body: str) -> list[dict]:
    """The JSON payloads of a server-sent event stream, in order."""
    return [
        json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: ")
    ]


def test_stream_sends_a_delta_per_word_then_done_and_refuses_formats_with_times():
    app = create_app(GatewaySettings(), connect=FakeTriton)
    upload = {"files": {"file": ("a.wav", _encoded(_tone(SAMPLING_RATE, 3.0), SAMPLING_RATE, "WAV"))}}
    url = "/v1/audio/transcriptions"
    text = " ".join(w.word for w in WORDS)
    with TestClient(app) as client:
        for fmt in ("json", "text"):
            response = client.post(
                url, **upload, data={"model": "m", "stream": "true", "response_format": fmt}
            )
            assert response.headers["content-type"].startswith("text/event-stream"), fmt
            events = _events(response.text)
            assert events[:-1] == [
                {"type": "transcript.text.delta", "delta": delta} for delta in ("एक", " दो", " तीन", " चार")
            ]
            assert events[-1] == {"type": "transcript.text.done", "text": text}
        assert client.post(url, **upload, data={"model": "m", "stream": "false"}).json()["text"] == text
        for fmt in ("srt", "vtt", "verbose_json"):
            refused = client.post(
                url, **upload, data={"model": "m", "stream": "true", "response_format": fmt}
            )
            error = refused.json()["error"]
            assert refused.status_code == 400 and error["param"] == "response_format", fmt
            assert f"'{fmt}' cannot be streamed" in error["message"]


@pytest.fixture
def fake_gateway():
    """The gateway with the stand-in Triton, served by uvicorn in a thread."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(GatewaySettings(), connect=FakeTriton), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_page_lists_timed_words_and_highlights_the_one_playing(fake_gateway, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wav = tmp_path / "tone.wav"
    sf.write(wav, _tone(SAMPLING_RATE, 3.0), SAMPLING_RATE)
    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(f"{fake_gateway}/")
        driver.find_element(By.ID, "file").send_keys(str(wav))
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#words li"))
        items = driver.find_elements(By.CSS_SELECTOR, "#words li")
        assert [item.find_element(By.CLASS_NAME, "word").text for item in items] == [w.word for w in WORDS]
        assert "2.00 s – 2.30 s" in items[2].text
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.getElementById('player').duration > 0")
        )
        driver.execute_script("const p = document.getElementById('player'); p.currentTime = 2.1;")
        current = (By.CSS_SELECTOR, ".current")
        WebDriverWait(driver, 30).until(
            lambda d: [e.text.split()[0] for e in d.find_elements(*current)] == ["तीन"] * 2
        )
        driver.save_screenshot(str(tmp_path / "page-words.png"))


def _references(html: str) -> list[str]:
    """Every script, stylesheet and icon a page loads."""
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize(("page", "script"), [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
def test_api_docs_load_everything_from_the_gateway(fake_gateway, page, script):
    """Swagger UI and ReDoc come from the installed package, not a CDN: the docs work offline."""
    html = requests.get(f"{fake_gateway}{page}", timeout=10).text
    assert "http://" not in html and "https://" not in html, html
    references = _references(html)
    assert references and all(ref.startswith("/") for ref in references), references
    served = {ref: requests.get(f"{fake_gateway}{ref}", timeout=10) for ref in references}
    assert all(response.status_code == 200 for response in served.values()), served
    scripts = [response for ref, response in served.items() if ref.endswith(".js")]
    assert scripts and all("javascript" in response.headers["content-type"] for response in scripts)
    assert any(script in response.text for response in scripts)


def test_swagger_ui_renders_the_api_in_headless_chromium(fake_gateway, tmp_path):
    """The page a user opens from the "API docs" link, on this machine that reaches no CDN."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(f"{fake_gateway}/docs")
        operations = (By.CSS_SELECTOR, ".opblock-summary-path")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(*operations))
        paths = {element.text.replace("\u200b", "") for element in driver.find_elements(*operations)}
        assert "/v1/audio/transcriptions" in paths, paths
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(fake_gateway) for url in loaded), loaded
        driver.save_screenshot(str(tmp_path / "docs.png"))
