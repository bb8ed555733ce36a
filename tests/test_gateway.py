"""The gateway on a real Triton: the official OpenAI client, bad uploads, shared batches, the page."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
import soundfile as sf
import srt
import tritonclient.http as httpclient
import webvtt

from vaani.audio import load_audio
from vaani.client.api import TranscriptionClient
from vaani.gateway.process import GatewayProcess
from vaani.recipe.corpus import synth
from vaani.serving import contract
from vaani.subtitles import CueRules, Word, cues
from vaani.supervision.process import free_port

from .browser import chromium

LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"
MAX_UPLOAD_MB = 1
PAUSE_SECONDS = 0.8  # longer than the default cue pause: every sentence starts a new cue


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Three new synthetic sentences with pauses between them, as a float WAV file."""
    parts = []
    for utterance in synth.plan("test", 3, seed=1414):
        parts += [synth.synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)]
        parts += [np.zeros(int(PAUSE_SECONDS * contract.SAMPLING_RATE), dtype=np.float32)]
    path = tmp_path_factory.mktemp("gateway") / "speech.wav"
    sf.write(path, np.concatenate(parts), contract.SAMPLING_RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def gateway(triton):
    extra = ("--max-upload-mb", str(MAX_UPLOAD_MB))
    with GatewayProcess(triton.grpc_url, free_port(), extra_args=extra) as process:
        process.wait_ready()
        yield process


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="not-needed", max_retries=0, timeout=120)


def _triton(triton, audio: np.ndarray) -> tuple[str, list[dict]]:
    """What Triton's `asr` answers for ``audio``: the transcript and the words with their times."""
    ((text, words),) = TranscriptionClient(triton.grpc_url, "grpc").transcribe_words(audio.reshape(1, -1))
    return text, words


@pytest.fixture(scope="module")
def expected(triton, speech):
    text, words = _triton(triton, load_audio(speech))
    assert len(text.split()) >= 3, "the comparison needs real speech"
    assert " ".join(w["word"] for w in words) == text
    return text, words


def test_json_and_text(client, speech, expected):
    with speech.open("rb") as file:
        assert client.audio.transcriptions.create(file=file, model="vaani").text == expected[0]
    with speech.open("rb") as file:
        text = client.audio.transcriptions.create(file=file, model="whisper-1", response_format="text")
    assert text == expected[0] + "\n"


def test_stream_with_the_openai_client(client, speech, expected):
    """`stream=True` in OpenAI's own client: a delta per word, then the done event with the whole text
    (how close that text is to `asr`'s: tests/test_gateway_streaming.py); srt cannot be streamed."""
    with speech.open("rb") as file:
        events = list(client.audio.transcriptions.create(file=file, model="vaani", stream=True))
    *deltas, done = events
    assert done.type == "transcript.text.done" and len(done.text.split()) >= 3
    assert [event.type for event in deltas] == ["transcript.text.delta"] * len(done.text.split())
    assert "".join(event.delta for event in deltas) == done.text
    with (
        speech.open("rb") as file,
        pytest.raises(openai.BadRequestError, match="cannot be streamed") as refused,
    ):
        client.audio.transcriptions.create(file=file, model="vaani", response_format="srt", stream=True)
    assert refused.value.body["param"] == "response_format"


def test_verbose_json(client, speech, expected):
    with speech.open("rb") as file:
        result = client.audio.transcriptions.create(
            file=file,
            model="vaani",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="hi",
            prompt="ignored",
            temperature=0.0,
        )
    text, words = expected
    body = result.to_dict()
    assert body["task"] == "transcribe" and body["language"] == "hindi" and body["text"] == text
    assert body["duration"] == pytest.approx(sf.info(speech).duration, abs=1e-3)
    assert [w.model_dump() for w in result.words] == words
    assert " ".join(s.text for s in result.segments) == text
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert all(a.end <= b.start for a, b in zip(result.segments, result.segments[1:]))
    made = cues([Word.from_dict(w) for w in words], CueRules())  # the gateway's default rules
    assert [(s.start, s.end, s.text) for s in result.segments] == [(c.start, c.end, c.text) for c in made]
    assert len(made) >= 3, "the pauses between the three sentences end segments"
    with speech.open("rb") as file:
        only_words = client.audio.transcriptions.create(
            file=file, model="vaani", response_format="verbose_json", timestamp_granularities=["word"]
        )
    assert only_words.segments is None and only_words.words is not None


def test_srt_and_vtt_parse(client, speech, expected):
    with speech.open("rb") as file:
        subrip = client.audio.transcriptions.create(file=file, model="vaani", response_format="srt")
    with speech.open("rb") as file:
        vtt = client.audio.transcriptions.create(file=file, model="vaani", response_format="vtt")
    text, words = expected
    srt_cues = list(srt.parse(subrip))
    vtt_cues = list(webvtt.from_buffer(io.StringIO(vtt)))
    assert " ".join(c.content for c in srt_cues) == text
    assert " ".join(c.text for c in vtt_cues) == text
    assert [c.content for c in srt_cues] == [c.text for c in vtt_cues]
    made = cues([Word.from_dict(w) for w in words], CueRules())
    assert [c.content for c in srt_cues] == [c.text for c in made] and len(made) >= 3
    assert srt_cues[0].start.total_seconds() == pytest.approx(words[0]["start"], abs=1e-3)
    assert srt_cues[-1].end.total_seconds() == pytest.approx(words[-1]["end"], abs=1e-3)


def _post(gateway, files: dict, data: dict) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/audio/transcriptions", files=files, data=data, timeout=120)


def test_bad_uploads_get_openai_errors_while_good_ones_succeed(gateway, triton, speech, expected):
    wav = speech.read_bytes()
    vaani = {"model": "vaani"}
    too_large = b"\0" * (MAX_UPLOAD_MB * 2**20 + 1)
    bad = {
        "empty file": (400, "file", {"file": ("empty.wav", b"")}, vaani),
        "not audio": (400, "file", {"file": ("notes.wav", b"hello, I am text")}, vaani),
        "too large": (413, "file", {"file": ("big.wav", too_large)}, vaani),
        "file as 'audio'": (400, "file", {"audio": ("x.wav", wav)}, vaani),
        "no model": (400, "model", {"file": ("x.wav", wav)}, {"modle": "vaani"}),
        "bad format": (400, "response_format", {"file": ("x.wav", wav)}, {**vaani, "response_format": "xml"}),
        "too short": (400, "file", {"file": ("short.wav", _wav(np.zeros(100, np.float32)))}, vaani),
    }
    good = [(None, None, {"file": ("x.wav", wav)}, vaani)] * 4
    cases = list(bad.values()) + good
    with ThreadPoolExecutor(len(cases)) as pool:
        responses = list(pool.map(lambda case: _post(gateway, case[2], case[3]), cases))
    for name, (status, param, *_), response in zip(bad, bad.values(), responses, strict=False):
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], name
        assert error["type"] == "invalid_request_error" and error["param"] == param, (name, error)
    assert [r.json() for r in responses[len(bad) :]] == [{"text": expected[0], "usage": _usage(speech)}] * 4
    assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 200
    assert httpclient.InferenceServerClient(triton.http_url).is_server_ready()


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, contract.SAMPLING_RATE, format="WAV")
    return buffer.getvalue()


def _usage(path) -> dict:
    return {"type": "duration", "seconds": int(np.ceil(sf.info(path).duration))}


def _acoustic_counts(triton) -> tuple[int, int]:
    stats = httpclient.InferenceServerClient(triton.http_url).get_inference_statistics(contract.ACOUSTIC)
    entry = stats["model_stats"][0]
    return int(entry["execution_count"]), int(entry["inference_count"])


def test_concurrent_uploads_share_acoustic_executions(client, triton, speech, expected):
    uploads = 16
    data = speech.read_bytes()
    barrier = threading.Barrier(uploads)

    def upload(index: int) -> str:
        barrier.wait()
        return client.audio.transcriptions.create(file=(f"clip-{index}.wav", data), model="vaani").text

    executions, inferences = _acoustic_counts(triton)
    with ThreadPoolExecutor(uploads) as pool:
        texts = list(pool.map(upload, range(uploads)))
    executions_after, inferences_after = _acoustic_counts(triton)
    assert texts == [expected[0]] * uploads
    assert inferences_after - inferences == uploads
    assert executions_after - executions < uploads, "no two uploads shared an execution of the acoustic model"


def test_page_transcribes_a_file_in_headless_chromium(gateway, speech, expected, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(f"{gateway.url}/")
        driver.find_element(By.ID, "file").send_keys(str(speech))
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "result").is_displayed())
        text, words = expected
        assert driver.find_element(By.ID, "transcript").text == text
        items = driver.find_elements(By.CSS_SELECTOR, "#words li")
        shown = [item.find_element(By.CLASS_NAME, "word").text for item in items]
        assert shown == [w["word"] for w in words]
        assert not driver.find_element(By.ID, "error").is_displayed()
        driver.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000


TESTSET_PLAN = Path(__file__).resolve().parents[1] / "models" / "tiny-hindi" / "testset.jsonl"


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """What the fake microphone plays: three sentences of the held-out test set (spoken as `make
    testset` speaks them) with a second of silence after each, as 16-bit PCM, which Chromium reads."""
    entries = [json.loads(line) for line in TESTSET_PLAN.read_text(encoding="utf-8").splitlines()[1:4]]
    silence = np.zeros(contract.SAMPLING_RATE, dtype=np.float32)
    parts = []
    for entry in entries:
        parts += [synth.synthesize(entry["text"], entry["voice"], entry["speed"], entry["pitch"]), silence]
    path = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    sf.write(path, np.concatenate(parts), contract.SAMPLING_RATE, subtype="PCM_16")
    return path, [entry["text"] for entry in entries]


def test_page_shows_live_captions_from_the_microphone(gateway, microphone, tmp_path):
    """Live captions in headless Chromium, its fake microphone playing the sentences: a sentence of the
    recording appears as finished text while the file plays, the partial apart from it, no error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    path, sentences = microphone
    flags = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={path}",
        "--autoplay-policy=no-user-gesture-required",
    )
    with chromium(tmp_path / "chromium-profile", flags) as driver:
        driver.get(f"{gateway.url}/")
        driver.find_element(By.ID, "live").click()

        def a_sentence_is_finished(d) -> bool:
            assert not d.find_element(By.ID, "error").is_displayed(), d.find_element(By.ID, "error").text
            finished = d.find_element(By.ID, "finished").text
            return any(sentence in finished for sentence in sentences)

        # A whole sentence, word for word: the browser's call-audio processing (on by default) once
        # garbled the captured speech, and a few right words would not have shown it.
        WebDriverWait(driver, 180).until(a_sentence_is_finished)
        assert driver.find_element(By.ID, "live").text == "■ Stop live"  # still listening
        partial = driver.find_element(By.ID, "partial")
        assert partial.value_of_css_property("font-style") == "italic"
        driver.save_screenshot(str(tmp_path / "live.png"))
        driver.find_element(By.ID, "live").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "live").text == "● Live captions")
        assert not driver.find_element(By.ID, "error").is_displayed()
    assert (tmp_path / "live.png").stat().st_size > 10_000


def _locust(host: str, classes: list[str], env: dict, tmp_path) -> dict[str, tuple[int, int]]:
    """Locust's own command line, as a user types it; (requests, failures) per request type."""
    prefix = tmp_path / "locust"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2", "-r", "2"]
    # Users finish the request in flight at the end, so that a slow (shared) machine still counts one.
    command += ["-t", "5s", "--stop-timeout", "120", "--host", host, "--csv", str(prefix), "--only-summary"]
    command += classes
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["Name"] != "Aggregated"]
    totals: dict[str, tuple[int, int]] = {}
    for row in rows:
        requests_, failures = totals.get(row["Type"], (0, 0))
        totals[row["Type"]] = (requests_ + int(row["Request Count"]), failures + int(row["Failure Count"]))
    return totals


def _without_manifest(tmp_path, **extra: str) -> dict[str, str]:
    """The environment of a user who never heard of VAANI_MANIFEST; clips go under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k != "VAANI_MANIFEST"}
    return env | {"VAANI_CLIPS": str(tmp_path / "clips"), **extra}


def test_locust_without_a_manifest_runs_the_triton_users(triton, tmp_path):
    env = _without_manifest(tmp_path, VAANI_GRPC_URL=triton.grpc_url)
    totals = _locust(f"http://{triton.http_url}", [], env, tmp_path)
    assert set(totals) == {"triton-http", "triton-grpc"}, totals
    assert all(requests_ > 0 and failures == 0 for requests_, failures in totals.values()), totals


def test_locust_gateway_user(gateway, tmp_path):
    totals = _locust(gateway.url, ["GatewayUser"], _without_manifest(tmp_path), tmp_path)
    assert set(totals) == {"gateway"} and totals["gateway"][0] > 0 and totals["gateway"][1] == 0, totals
