"""Live recognition through the gateway on a real Triton: OpenAI's Realtime transcription over a
WebSocket (the official client and a bare one), its limits, and ``stream=true`` uploads."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import subprocess
import sys
import time

import numpy as np
import openai
import pytest
import soundfile as sf
import soxr
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from vaani.build.pipeline import build
from vaani.client.api import TranscriptionClient
from vaani.gateway.process import GatewayProcess
from vaani.recipe.corpus.recordings import long_recording
from vaani.scoring import score
from vaani.serving import contract
from vaani.supervision.process import Ports as ServerPorts
from vaani.supervision.process import TritonProcess, free_port

from .conftest import BUNDLED_MODEL
from .journey.readme import Ports, block, substitute

OPENAI_RATE = 24_000
APPEND_SECONDS = 0.1


@pytest.fixture(scope="module")
def recording():
    """Four held-out sentences joined with pauses of 0.6–1 s (16 kHz float) and where each lies."""
    audio, placed = long_recording(4, seed=2323, pauses=(0.6, 1.0))
    return audio, placed


@pytest.fixture(scope="module")
def offline_text(triton, recording):
    """What `asr` answers for the whole recording at once: the text streaming is compared with."""
    text = TranscriptionClient(triton.grpc_url, "grpc").transcribe(recording[0])
    assert len(text.split()) >= 8, "the comparison needs real speech"
    return text


@pytest.fixture(scope="module")
def no_worse(recording, offline_text):
    """Whether a streamed text is within 1 WER point of `asr`'s, both scored against what was said."""
    said = " ".join(sentence.text for sentence in recording[1])
    offline = _wer_points(offline_text, said)

    def check(streamed: str) -> bool:
        return _wer_points(streamed, said) <= offline + 1.0

    return check


@pytest.fixture(scope="module")
def gateway(triton):
    with GatewayProcess(triton.grpc_url, free_port()) as process:
        process.wait_ready()
        yield process


@pytest.fixture(scope="module")
def strict_gateway(triton):
    """A gateway with small realtime limits: one session, 3 s idle, 64 KiB messages."""
    extra = ("--max-realtime-sessions", "1", "--realtime-idle-s", "3", "--max-message-mb", str(64 / 1024))
    with GatewayProcess(triton.grpc_url, free_port(), extra_args=extra) as process:
        process.wait_ready()
        yield process


def _pcm16(audio: np.ndarray, rate: int = OPENAI_RATE) -> bytes:
    """16 kHz float → PCM16 little-endian at ``rate``, as a microphone client sends it."""
    if rate != contract.SAMPLING_RATE:
        audio = soxr.resample(audio, contract.SAMPLING_RATE, rate)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def _appends(pcm: bytes, rate: int = OPENAI_RATE) -> list[str]:
    step = int(APPEND_SECONDS * rate) * 2
    return [base64.b64encode(pcm[start : start + step]).decode() for start in range(0, len(pcm), step)]


def _stream_turn(socket, audio: np.ndarray) -> None:
    for piece in _appends(_pcm16(audio)):
        socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": piece}))


def _wer_points(hypothesis: str, reference: str) -> float:
    return 100 * score([reference], [hypothesis]).wer


def _ws_url(gateway, query: str = "intent=transcription") -> str:
    return gateway.url.replace("http://", "ws://") + "/v1/realtime?" + query


def test_openai_realtime_client_gets_items_while_audio_arrives(gateway, recording, offline_text, no_worse):
    """The official client, OpenAI's defaults (24 kHz PCM16, server turn detection): each sentence
    finished at its pause is an item, committed, its delta, completed; the first comes before the
    rest of the audio is sent; the commit ends the turn; all the items score within 1 WER point of
    `asr` on the whole. The client reads this gateway's partial events without complaint."""
    audio, placed = recording
    first_end = int((placed[1].onset + 0.3) * contract.SAMPLING_RATE)  # sentence 1, its pause, more speech
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="not-needed", max_retries=0)
    query = {"intent": "transcription", "partial": "true"}
    with client.realtime.connect(extra_query=query, max_retries=0) as connection:
        created = connection.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        audio_input = {
            "format": {"type": "audio/pcm", "rate": OPENAI_RATE},
            "turn_detection": {"type": "server_vad"},
        }
        connection.session.update(session={"type": "transcription", "audio": {"input": audio_input}})
        assert connection.recv().type == "session.updated"
        for piece in _appends(_pcm16(audio[:first_end])):
            connection.input_audio_buffer.append(audio=piece)
        events = []
        while not events or events[-1].type != "conversation.item.input_audio_transcription.completed":
            events.append(connection.recv())  # the first sentence, before any more audio
            assert events[-1].type != "error", events[-1]
        first_item = events[-1].item_id
        assert [e.type for e in events if getattr(e, "item_id", None) == first_item] == [
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
        ]
        for piece in _appends(_pcm16(audio[first_end:])):
            connection.input_audio_buffer.append(audio=piece)
        connection.input_audio_buffer.commit()  # the end: what is left is finished too
        while not getattr(events[-1], "turn_done", False):
            events.append(connection.recv())
            assert events[-1].type != "error", events[-1]
    completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert len(completed) >= 3, "sentences end at their pauses, each an item of its own"
    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    assert [e.item_id for e in committed] == [e.item_id for e in completed]
    assert [e.previous_item_id for e in committed[1:]] == [e.item_id for e in committed[:-1]]
    deltas = {e.item_id: e.delta for e in events if e.type.endswith("transcription.delta")}
    assert all(deltas.get(e.item_id, "") == e.transcript for e in completed)
    partials = [e.text for e in events if e.type == "vaani.transcription.partial"]
    assert any(partials), "the partial is sent while a sentence is still being spoken"
    streamed = " ".join(e.transcript for e in completed if e.transcript)
    assert no_worse(streamed), (streamed, offline_text)


def test_manual_turns_and_partials_at_16_khz(gateway, recording, no_worse):
    """``turn_detection: null``: the client commits; the turn's finished text arrives as deltas that
    join into its `completed` transcript. ``partial=true`` adds the partial, which is never a delta."""
    audio, _ = recording
    with connect(_ws_url(gateway, "intent=transcription&partial=true")) as socket:
        assert json.loads(socket.recv())["type"] == "session.created"
        session = {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
        }
        session["audio"]["input"]["turn_detection"] = None
        socket.send(json.dumps({"type": "session.update", "session": session}))
        updated = json.loads(socket.recv())
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        assert updated["session"]["audio"]["input"]["format"]["rate"] == 16000
        for piece in _appends(_pcm16(audio, 16000), 16000):
            socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": piece}))
        socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = []
        while not events or not events[-1].get("turn_done"):
            events.append(json.loads(socket.recv()))
            assert events[-1]["type"] != "error", events[-1]
    (committed,) = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    (completed,) = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert completed["item_id"] == committed["item_id"]
    deltas = [e["delta"] for e in events if e["type"].endswith("transcription.delta")]
    assert len(deltas) >= 2, "finished text arrives while the turn goes on"
    assert "".join(deltas) == completed["transcript"]
    assert no_worse(completed["transcript"]), completed["transcript"]
    partials = [e["text"] for e in events if e["type"] == "vaani.transcription.partial"]
    assert any(partials), "the partial is sent while a sentence is still being spoken"
    assert partials[-1] == "", "the last partial clears it: everything is finished"


def _errors_then(socket, count: int) -> list[dict]:
    return [json.loads(socket.recv()) for _ in range(count)]


def test_bad_events_get_error_events_and_the_session_goes_on(gateway, recording):
    audio, placed = recording
    one_sentence = audio[: int(placed[1].onset * contract.SAMPLING_RATE)]
    with connect(_ws_url(gateway)) as socket:
        assert json.loads(socket.recv())["type"] == "session.created"
        bad = [
            ("not json", "invalid_json", None),
            (json.dumps({"type": "conversation.item.create"}), "unsupported_event", "type"),
            (json.dumps({"type": "no.such.event"}), "unknown_event", "type"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "***"}), "invalid_value", "audio"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}), "invalid_value", "audio"),
            (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", None),
            (
                json.dumps(
                    {"type": "session.update", "session": {"audio": {"input": {"format": {"rate": 11025}}}}}
                ),
                "invalid_value",
                "session.audio.input.format.rate",
            ),
            (
                json.dumps({"type": "session.update", "session": {"type": "realtime"}, "event_id": "mine"}),
                "invalid_value",
                "session.type",
            ),
        ]
        for text, _, _ in bad:
            socket.send(text)
        errors = _errors_then(socket, len(bad))
        for (_, code, param), event in zip(bad, errors, strict=True):
            assert event["type"] == "error" and event["error"]["message"], event
            assert (event["error"]["code"], event["error"]["param"]) == (code, param), event
        assert errors[-1]["error"]["event_id"] == "mine"
        for piece in _appends(_pcm16(one_sentence)):  # the session still transcribes
            socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": piece}))
        socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
        while (event := json.loads(socket.recv()))[
            "type"
        ] != "conversation.item.input_audio_transcription.completed":
            assert event["type"] != "error", event
        assert event["transcript"]


def test_a_connection_without_the_transcription_intent_is_refused(gateway):
    with connect(_ws_url(gateway, "model=gpt-realtime")) as socket:
        event = json.loads(socket.recv())
        assert event["type"] == "error" and event["error"]["param"] == "intent"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv()
    assert closed.value.rcvd.code == 1008


def test_session_cap_idle_timeout_and_message_size(strict_gateway, recording):
    with connect(_ws_url(strict_gateway)) as first:
        assert json.loads(first.recv())["type"] == "session.created"
        with connect(_ws_url(strict_gateway)) as second:  # one session at a time
            event = json.loads(second.recv())
            assert event["error"]["code"] == "session_limit_reached", event
            with pytest.raises(ConnectionClosed) as refused:
                second.recv()
        assert refused.value.rcvd.code == 1013
        event = json.loads(first.recv(timeout=60))  # sends nothing: closed after --realtime-idle-s
        assert event["type"] == "error" and event["error"]["code"] == "session_idle", event
        with pytest.raises(ConnectionClosed) as idle:
            first.recv()
        assert idle.value.rcvd.code == 1008
    with connect(_ws_url(strict_gateway)) as left:  # a client that leaves in the middle of a turn
        assert json.loads(left.recv())["type"] == "session.created"
        _stream_turn(left, recording[0][: contract.SAMPLING_RATE])
    for _ in range(100):  # the slot is free again once the gateway has seen the close
        with connect(_ws_url(strict_gateway)) as again:
            if json.loads(again.recv())["type"] == "session.created":
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the session of a client that left was never given back")
    with connect(_ws_url(strict_gateway)) as big:
        assert json.loads(big.recv())["type"] == "session.created"
        big.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 100_000}))
        with pytest.raises(ConnectionClosed) as too_big:
            big.recv(timeout=60)
        assert too_big.value.rcvd.code == 1009


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, contract.SAMPLING_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_stream_true_upload_follows_recognition(gateway, recording, offline_text, no_worse):
    """OpenAI's client with ``stream=True``: deltas a word at a time as `asr_stream` finishes text,
    joining into the done event's text, within 1 WER point of `asr` on the whole file; a file
    `asr_stream` refuses (too short) is refused with 400 before any event, as without streaming."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="not-needed", max_retries=0, timeout=120)
    events = list(
        client.audio.transcriptions.create(
            file=("speech.wav", _wav(recording[0])), model="vaani", stream=True
        )
    )
    *deltas, done = events
    assert done.type == "transcript.text.done"
    assert {event.type for event in deltas} == {"transcript.text.delta"}
    assert "".join(event.delta for event in deltas) == done.text
    assert len(deltas) == len(done.text.split())
    assert no_worse(done.text), (done.text, offline_text)
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(
            file=("short.wav", _wav(np.zeros(100, np.float32))), model="vaani", stream=True
        )
    assert refused.value.body["param"] == "file"


def test_the_documented_realtime_example_prints_the_text(gateway, recording, no_worse, tmp_path):
    """docs/api.md's Python example, as written (ports substituted), on the recording as hello.wav."""
    code = substitute(
        block("client.realtime.connect", "python").code, Ports(0, 0, 0, int(gateway.url.rsplit(":", 1)[1]))
    )
    sf.write(tmp_path / "hello.wav", recording[0], contract.SAMPLING_RATE)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert no_worse(run.stdout.strip()), run.stdout


@pytest.fixture(scope="module")
def one_stream_gateway(tmp_path_factory, test_settings):
    """A tritonserver whose `asr_stream` holds one live stream at most, and a gateway in front."""
    repository = tmp_path_factory.mktemp("one_stream_repository")
    build(
        str(BUNDLED_MODEL), repository, dataclasses.replace(test_settings, max_streams=1, stream_instances=1)
    )
    log = tmp_path_factory.mktemp("one_stream_logs") / "tritonserver.log"
    with TritonProcess(
        repository, ServerPorts(free_port(), free_port(), free_port()), log_file=log
    ) as server:
        server.wait_ready()
        with GatewayProcess(server.grpc_url, free_port()) as gateway:
            gateway.wait_ready()
            yield gateway


@pytest.mark.server
def test_a_stream_the_model_refuses_ends_its_session_alone(one_stream_gateway, recording):
    """`asr_stream` refuses a second live stream: that session gets an `error` event naming the rule
    and is closed (1008), while the first one carries on and finishes its turn."""
    audio, placed = recording
    one_sentence = audio[: int(placed[1].onset * contract.SAMPLING_RATE)]
    first_url = _ws_url(one_stream_gateway, "intent=transcription&partial=true")
    with connect(first_url) as first, connect(_ws_url(one_stream_gateway)) as second:
        for socket in (first, second):
            assert json.loads(socket.recv())["type"] == "session.created"
        _stream_turn(first, one_sentence[: len(one_sentence) // 2])  # the first holds the one stream
        while json.loads(first.recv(timeout=120))["type"] != "vaani.transcription.partial":
            pass  # Triton has the first stream
        _stream_turn(second, one_sentence)
        event = json.loads(second.recv(timeout=120))
        assert event["type"] == "error" and event["error"]["code"] == "stream_refused", event
        assert "too many live streams" in event["error"]["message"]
        with pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=60)
        assert closed.value.rcvd.code == 1008
        _stream_turn(first, one_sentence[len(one_sentence) // 2 :])
        first.send(json.dumps({"type": "input_audio_buffer.commit"}))
        texts = []
        while not (event := json.loads(first.recv(timeout=120))).get("turn_done"):
            assert event["type"] != "error", event
            texts += [event["transcript"]] if event["type"].endswith("transcription.completed") else []
    assert len(" ".join(texts).split()) >= 2, texts
