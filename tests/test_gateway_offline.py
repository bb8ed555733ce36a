"""The gateway's parts that need no Triton: decoding uploads, and the answers when Triton is away."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import tempfile
import threading
import time
from typing import ClassVar

import numpy as np
import pytest
import requests
import soundfile as sf
import srt
from fastapi.testclient import TestClient

from vaani.audio import AudioFileError, load_audio
from vaani.gateway.app import GatewaySettings, create_app
from vaani.gateway.decoding import decode
from vaani.gateway.front_door import LOG_BURST, LOG_PER_MINUTE, TRACEBACK_CHARS, LogRateLimit
from vaani.gateway.triton import Transcript
from vaani.serving.contract import SAMPLING_RATE
from vaani.subtitles import Word
from vaani.supervision.process import free_port

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
    audio = decode(io.BytesIO(_encoded(_tone(rate, channels=channels), rate, fmt)), f"x.{fmt.lower()}")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLING_RATE) <= 0.01 * SAMPLING_RATE


@pytest.mark.parametrize("container", ["mp3", "m4a", "webm"])
def test_ffmpeg_formats(tmp_path, container):
    wav = tmp_path / "tone.wav"
    sf.write(wav, _tone(44100), 44100)
    encoded = tmp_path / f"tone.{container}"
    subprocess.run([shutil.which("ffmpeg"), "-loglevel", "error", "-i", wav, encoded], check=True)
    with encoded.open("rb") as upload:
        audio = decode(upload, encoded.name)
    assert abs(len(audio) - SAMPLING_RATE) <= 0.1 * SAMPLING_RATE
    assert 0.1 < float(np.abs(audio).max()) < 0.5


@pytest.mark.parametrize(("data", "says"), [(b"", "is empty"), (b"not audio", "cannot read notes.txt")])
def test_what_is_not_audio_is_refused_by_name(data, says):
    with pytest.raises(AudioFileError, match=says):
        decode(io.BytesIO(data), "notes.txt")


def _flac_claiming(data: bytes, frames: int) -> bytes:
    """``data``, a FLAC file, with STREAMINFO's sample count (the low 36 bits of bytes 18–25: STREAMINFO
    is always the first metadata block) replaced by ``frames``; 0 means "not known"."""
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | frames
    return data[:18] + packed.to_bytes(8, "big") + data[26:]


def test_a_header_over_the_limit_is_refused_before_anything_is_decoded(monkeypatch):
    """A 1 s FLAC whose header claims ten hours: refused on the header's word, with no block read."""
    flac = _flac_claiming(_encoded(_tone(SAMPLING_RATE), SAMPLING_RATE, "FLAC"), 10 * 3600 * SAMPLING_RATE)
    monkeypatch.setattr(sf.SoundFile, "read", lambda *_, **__: pytest.fail("decoded a refused file"))
    with pytest.raises(
        AudioFileError, match=r"bomb\.flac is longer than .* 300 s .*its header says 36000\.0 s"
    ):
        decode(io.BytesIO(flac), "bomb.flac", max_seconds=300)


def test_a_file_of_unknown_length_is_cut_off_at_the_limit():
    """A FLAC that does not say its length (as ffmpeg writes one to a pipe) is decoded until it runs
    past the limit, and read whole when it ends before."""
    flac = _flac_claiming(_encoded(np.zeros(30 * SAMPLING_RATE, np.float32), SAMPLING_RATE, "FLAC"), 0)
    with pytest.raises(
        AudioFileError, match=r"longer than the gateway's limit of 10 s .*: decoding ran past it"
    ):
        decode(io.BytesIO(flac), "stream.flac", max_seconds=10)
    assert len(decode(io.BytesIO(flac), "stream.flac", max_seconds=60)) == 30 * SAMPLING_RATE


def test_many_channels_at_a_high_rate_are_refused_by_the_work_they_would_take():
    """1 s of 8 channels at 192 kHz is 1.5 million samples to decode: more than 10 s of 48 kHz stereo."""
    flac = _encoded(np.zeros((192_000, 8), np.float32), 192_000, "FLAC")
    with pytest.raises(AudioFileError, match="8 channels at 192000 Hz"):
        decode(io.BytesIO(flac), "wide.flac", max_seconds=10)
    assert len(decode(io.BytesIO(flac), "wide.flac", max_seconds=60)) == SAMPLING_RATE


def test_decoding_in_blocks_gives_what_the_cli_reads(tmp_path):
    """Downmixed and resampled block by block: the same samples as `load_audio` on the whole file."""
    path = tmp_path / "stereo.flac"
    stereo = np.random.default_rng(7).uniform(-0.5, 0.5, (3 * 44_100 + 123, 2)).astype(np.float32)
    sf.write(path, stereo, 44_100)
    with path.open("rb") as upload:
        np.testing.assert_array_equal(decode(upload, path.name), load_audio(path))


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_files_are_refused_as_the_cli_refuses_them(tmp_path, fmt):
    """libsndfile reads a cut-off WAV without complaint and the gateway used to answer it with a partial
    transcript; the gateway and `vaani transcribe` now refuse the same files with the same words."""
    whole = _encoded(_tone(SAMPLING_RATE, 2.0), SAMPLING_RATE, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AudioFileError) as cli:
        load_audio(path)
    with pytest.raises(AudioFileError) as gateway:
        decode(io.BytesIO(path.read_bytes()), str(path))
    assert str(gateway.value) == str(cli.value)
    assert ("is truncated" if fmt == "WAV" else "cannot read") in str(cli.value)


def _looped_webm(tmp_path, seconds: float, loops: int) -> tuple[bytes, bytes]:
    """WebM/Opus (ffmpeg's path) of ``loops`` copies of a ``seconds`` tone, twice: written to a file,
    whose header has the whole duration, and to a pipe, whose header keeps the first copy's."""
    ffmpeg = [shutil.which("ffmpeg"), "-y", "-loglevel", "error"]
    one, whole = tmp_path / "one.webm", tmp_path / "whole.webm"
    subprocess.run([*ffmpeg, "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", one], check=True)
    loop = [*ffmpeg, "-stream_loop", str(loops - 1), "-i", one, "-c", "copy", "-f", "webm"]
    subprocess.run([*loop, whole], check=True)
    piped = subprocess.run([*loop, "pipe:1"], check=True, capture_output=True).stdout
    return whole.read_bytes(), piped


def test_ffmpeg_formats_are_refused_on_their_header_or_once_decoding_passes_the_limit(tmp_path):
    honest, lying = _looped_webm(tmp_path, 2.0, 4)
    with pytest.raises(AudioFileError, match=r"limit of 5 s .*: its header says 8\.\d s"):
        decode(io.BytesIO(honest), "honest.webm", max_seconds=5)
    with pytest.raises(AudioFileError, match=r"limit of 5 s .*: decoding ran past it"):
        decode(io.BytesIO(lying), "lying.webm", max_seconds=5)
    assert abs(len(decode(io.BytesIO(lying), "lying.webm", max_seconds=60)) - 8 * SAMPLING_RATE) < 1600


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


def test_an_uploaded_playlist_finds_nothing_to_read(tmp_path, monkeypatch):
    """ffmpeg follows an ffconcat or HLS playlist to the files beside it: an upload that is one must
    not read what lies in the temporary folder (here a WAV placed there)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sf.write(tmp_path / "beside.wav", _tone(SAMPLING_RATE), SAMPLING_RATE)
    with pytest.raises(AudioFileError, match=r"cannot read playlist\.txt as audio"):
        decode(io.BytesIO(b"ffconcat version 1.0\nfile beside.wav\n"), "playlist.txt")


def _record(message: str, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, message, (), exc_info)


def test_the_log_lets_a_burst_through_then_a_few_a_minute_and_says_how_many_it_dropped(caplog):
    """Thousands of held or refused connections must not grow the log without bound: one budget for
    every record, and a line that counts what was dropped."""
    now = [0.0]
    limit = LogRateLimit(clock=lambda: now[0])
    assert sum(limit.filter(_record(f"held {i}")) for i in range(LOG_BURST + 500)) == LOG_BURST
    now[0] += 60 / LOG_PER_MINUTE  # time for one more
    with caplog.at_level(logging.WARNING, logger="vaani.gateway"):
        assert limit.filter(_record("after the flood"))
    assert [r.getMessage() for r in caplog.records] == [
        f"500 log records dropped (over {LOG_PER_MINUTE} a minute)"
    ]
    assert not limit.filter(_record("no time for this one"))


def test_the_log_keeps_the_tail_of_a_long_traceback():
    """An exception can carry what a client sent (h11 quotes a bad header line): only its tail is kept."""
    try:
        raise ValueError("x" * 10_000 + " the end")
    except ValueError as error:
        record = _record("Exception in ASGI application", (type(error), error, error.__traceback__))
    assert LogRateLimit().filter(record)
    assert len(record.exc_text) == TRACEBACK_CHARS and record.exc_text.endswith("x the end")


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

    async def serves_streams(self) -> bool:
        """No `asr_stream` here: ``stream=true`` takes the whole-file path (`render_stream`)."""
        return False

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
