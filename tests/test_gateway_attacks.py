"""Untrusted traffic at the gateway (issue 20), on a real gateway process in front of a real tritonserver:
decompression bombs, a truncated file, held and slow connections, a full queue. Each is refused with
its status and an OpenAI error object, and the gateway stays small and keeps serving.

Memory is the gateway's peak resident set (``VmHWM`` in /proc): before these limits the ten-hour FLAC
below took it from 0.1 to 11 GB.
"""

from __future__ import annotations

import io
import os
import select
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from vaani.audio import AudioFileError, load_audio
from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.gateway import limits
from vaani.gateway.front_door import LOG_BURST
from vaani.gateway.process import GatewayProcess
from vaani.recipe.corpus import synth
from vaani.serving import contract
from vaani.supervision.process import Ports, TritonProcess, free_port

from .conftest import BUNDLED_MODEL

MAX_AUDIO_SECONDS = 300  # the session server's (conftest's test_settings)
MAX_CONNECTIONS = 4
HEADER_SECONDS = 5
UPLOAD_SECONDS = 2
PEAK_GROWTH_MB = 100
HOURS = 3600


def test_the_gateway_limit_is_the_servers_default():
    """The gateway refuses what `asr` would refuse, and no more."""
    assert RepositorySettings().max_audio_seconds == limits.MAX_AUDIO_SECONDS


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gateway-attacks") / "gateway.log"


@pytest.fixture(scope="module")
def gateway(triton, test_settings, gateway_log):
    assert test_settings.max_audio_seconds == MAX_AUDIO_SECONDS
    extra = ["--max-audio-seconds", MAX_AUDIO_SECONDS, "--max-connections", MAX_CONNECTIONS]
    extra += ["--header-timeout-s", HEADER_SECONDS, "--upload-timeout-s", UPLOAD_SECONDS]
    with (
        gateway_log.open("wb") as log,
        GatewayProcess(triton.grpc_url, free_port(), extra_args=tuple(map(str, extra)), log=log) as process,
    ):
        process.wait_ready()
        yield process


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    (utterance,) = synth.plan("test", 1, seed=2020)
    audio = synth.synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, audio, contract.SAMPLING_RATE)
    return path


def _ffmpeg(*arguments: object, stdout: Path | None = None) -> None:
    command = [shutil.which("ffmpeg"), "-y", "-loglevel", "error", *map(str, arguments)]
    if stdout is None:
        subprocess.run(command, check=True)
    else:
        with stdout.open("wb") as file:
            subprocess.run(command, check=True, stdout=file)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Silence in a few MB that decodes to hours, made in seconds: each file → what its refusal must
    cite (the header's word, or a decode cut off at the limit)."""
    folder = tmp_path_factory.mktemp("bombs")
    flac = folder / "ten-hours.flac"  # 1.4 MB; 1.2 GB as float32 at 8 kHz, 2.3 GB at 16 kHz
    with sf.SoundFile(flac, "w", 8000, 1, format="FLAC") as file:
        block = np.zeros(8000 * 600, np.int16)
        for _ in range(10 * HOURS // 600):
            file.write(block)
    streamed = folder / "ten-hours-streamed.flac"  # no length in its header, as when written to a pipe
    streamed.write_bytes(_without_length(flac.read_bytes()))
    minute_mp3, minute_webm = folder / "minute.mp3", folder / "minute.webm"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", 60, "-b:a", "8k", minute_mp3)
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono",
        "-t",
        60,
        "-c:a",
        "libopus",
        "-b:a",
        "6k",
        minute_webm,
    )
    mp3, webm, lying = folder / "six-hours.mp3", folder / "six-hours.webm", folder / "hour-says-minute.webm"
    _ffmpeg("-stream_loop", 6 * 60 - 1, "-i", minute_mp3, "-c", "copy", mp3)  # 21.6 MB, as in the issue
    _ffmpeg("-stream_loop", 6 * 60 - 1, "-i", minute_webm, "-c", "copy", webm)  # ffmpeg's path
    # Written to a pipe, the WebM keeps the first minute's duration in its header: a header that lies.
    _ffmpeg("-stream_loop", 59, "-i", minute_webm, "-c", "copy", "-f", "webm", "pipe:1", stdout=lying)
    header, decoded = "its header says", "decoding ran past it"
    return {
        "ten-hours.flac": (flac, header),
        "ten-hours-streamed.flac": (streamed, decoded),
        "six-hours.mp3": (mp3, header),
        "six-hours.webm": (webm, header),
        "hour-says-minute.webm": (lying, decoded),
    }


def _without_length(flac: bytes) -> bytes:
    """``flac`` with STREAMINFO's sample count (the low 36 bits of bytes 18–25) set to 0, "unknown"."""
    packed = int.from_bytes(flac[18:26], "big") & ~((1 << 36) - 1)
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]


def _peak_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def _upload(gateway, name: str, data: bytes) -> requests.Response:
    files = {"file": (name, data)}
    return requests.post(
        f"{gateway.url}/v1/audio/transcriptions", files=files, data={"model": "vaani"}, timeout=120
    )


def _error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


def test_bombs_are_refused_on_their_headers_or_at_the_limit_and_stay_small(gateway, bombs, speech):
    good = _upload(gateway, "speech.wav", speech.read_bytes())
    assert good.status_code == 200 and good.json()["text"]
    before = _peak_mb(gateway.process.pid)
    for name, (path, evidence) in bombs.items():
        error = _error(_upload(gateway, name, path.read_bytes()), 400)
        assert error["param"] == "file" and error["type"] == "invalid_request_error", error
        limit = f"{name} is longer than the gateway's limit of {MAX_AUDIO_SECONDS} s (--max-audio-seconds)"
        assert error["message"].startswith(f"{limit}: {evidence}"), error
    growth = _peak_mb(gateway.process.pid) - before
    assert growth < PEAK_GROWTH_MB, f"the gateway's peak memory grew by {growth:.0f} MB"
    assert _upload(gateway, "speech.wav", speech.read_bytes()).json() == good.json()


def test_a_truncated_wav_is_refused_as_the_cli_refuses_it(gateway, speech, tmp_path):
    """The gateway used to answer a cut-off WAV with 200 and the transcript of what was there."""
    cut = tmp_path / "cut.wav"
    whole = speech.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AudioFileError) as cli:
        load_audio(cut)
    error = _error(_upload(gateway, "cut.wav", cut.read_bytes()), 400)
    assert error["message"] == str(cli.value).replace(str(cut), "cut.wav")
    assert "is truncated: its WAV header announces" in error["message"] and error["param"] == "file"


def _connect(gateway) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    parts = []
    while part := connection.recv(65536):
        parts.append(part)
    return b"".join(parts)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _readable(connection: socket.socket) -> bool:
    return bool(select.select([connection], [], [], 0)[0])


def test_held_connections_are_capped_cut_and_do_not_flood_the_log(gateway, gateway_log, speech):
    pid = gateway.process.pid
    time.sleep(0.5)  # earlier tests' connections are closed by now
    fds, log_size = _open_fds(pid), gateway_log.stat().st_size
    started = time.monotonic()  # before the gateway accepts the held ones: their deadline runs from there
    held = [_connect(gateway) for _ in range(MAX_CONNECTIONS)]
    for _ in range(50):  # until the gateway has accepted them all
        if _open_fds(pid) >= fds + MAX_CONNECTIONS:
            break
        time.sleep(0.05)
    refusals = []
    for _ in range(200):
        with _connect(gateway) as extra:
            refusals.append(_answer(extra))
        assert _open_fds(pid) <= fds + MAX_CONNECTIONS + 2, "a refused connection kept its descriptor"
    assert time.monotonic() - started < HEADER_SECONDS, "too slow to test the cap: the held ones timed out"
    assert not any(_readable(connection) for connection in held), "a connection under the cap was refused"
    head, body = refusals[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head.split(b"\r\n")
    assert b"--max-connections" in body and all(refusal == refusals[0] for refusal in refusals)
    for connection in held:  # each is cut at the head deadline, with a 408
        with connection:
            assert _answer(connection).startswith(b"HTTP/1.1 408 ")
    assert HEADER_SECONDS <= time.monotonic() - started < HEADER_SECONDS + 5
    logged = gateway_log.read_bytes()[log_size:].decode().splitlines()
    assert len(logged) <= LOG_BURST, f"{len(logged)} log lines for {len(refusals)} refused connections"
    assert _upload(gateway, "speech.wav", speech.read_bytes()).status_code == 200


def _trickle(connection: socket.socket, data: bytes, every: float = 0.1) -> None:
    """Send ``data`` a byte at a time until the server answers (or it is all sent)."""
    for byte in data:
        if _readable(connection):
            return
        try:
            connection.sendall(bytes([byte]))
        except OSError:  # the server closed the connection: its answer is waiting to be read
            return
        time.sleep(every)


def test_slow_heads_and_slow_uploads_are_cut_with_408_while_others_are_served(gateway, speech):
    head = b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: vaani\r\n"
    endless_head = head + b"X-Slow: a\r\n" * 20  # never the blank line that ends a head
    upload = head + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    upload += b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\n'
    with ThreadPoolExecutor(2) as pool, _connect(gateway) as slow_head, _connect(gateway) as slow_upload:
        cut_head = pool.submit(_trickle, slow_head, endless_head)
        slow_upload.sendall(upload)
        cut_upload = pool.submit(_trickle, slow_upload, b"\0" * 1000)
        served = _upload(gateway, "speech.wav", speech.read_bytes())
        cut_head.result()
        cut_upload.result()
        late_head, late_upload = _answer(slow_head), _answer(slow_upload)
    assert served.status_code == 200 and served.json()["text"]
    assert late_head.startswith(b"HTTP/1.1 408 ") and b"--header-timeout-s" in late_head
    assert late_upload.startswith(b"HTTP/1.1 408 "), late_upload
    assert b"connection: close" in late_upload.lower() and b"--upload-timeout-s" in late_upload
    assert f"within {UPLOAD_SECONDS} s".encode() in late_upload


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory):
    """A server whose steps queue one request each, and the gateway in front of it."""
    repository = tmp_path_factory.mktemp("small_queue_repository")
    settings = RepositorySettings(max_batch_size=1, threads=1, queue_delay_us=0, max_queue_size=1)
    build(str(BUNDLED_MODEL), repository, settings)
    ports = Ports(free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("small_queue_logs") / "tritonserver.log"
    with TritonProcess(repository, ports, log_file=log) as server:
        server.wait_ready()
        with GatewayProcess(server.grpc_url, free_port()) as process:
            process.wait_ready()
            yield process


@pytest.mark.server
def test_a_full_queue_is_429_with_retry_after(small_queue):
    """Triton refuses what its queues cannot hold ("Exceeds maximum queue size", UNAVAILABLE): the
    client is told to come back (429 and Retry-After, which OpenAI's client honours), not that the
    server is down (503)."""
    noise = (0.1 * np.random.default_rng(3).standard_normal(10 * contract.SAMPLING_RATE)).astype(np.float32)
    wav = io.BytesIO()
    sf.write(wav, noise, contract.SAMPLING_RATE, format="WAV")
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: _upload(small_queue, "noise.wav", wav.getvalue()), range(16)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 429:
            error = _error(response, 429)
            assert response.headers["Retry-After"] == "1"
            assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
            assert "Exceeds maximum queue size" in error["message"]
    assert requests.get(f"{small_queue.url}/health", timeout=10).status_code == 200
