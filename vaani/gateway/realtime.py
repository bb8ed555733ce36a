"""OpenAI's Realtime transcription over a WebSocket (`/v1/realtime?intent=transcription`), on `asr_stream`.

Clients written for OpenAI's realtime transcription (the GA protocol: `session.update` with a session
of type `transcription`, `input_audio_buffer.append` of base64 PCM16, `input_audio_buffer.commit`)
get live text from this project's model. Audio goes to Triton as it arrives, in chunks, one Triton
sequence per turn; what `asr_stream` finishes is sent as OpenAI's events:

- with turn detection (the default, `server_vad`): every piece of text the model finishes at a pause
  is one item: `input_audio_buffer.committed`, one `conversation.item.input_audio_transcription.delta`
  with its text, `...completed` with the same text; the client's `input_audio_buffer.commit` ends the
  turn (END to Triton), and what that finishes is one more item;
- with ``turn_detection: null``: the client's commit ends a turn; the turn's finished text arrives
  as deltas while it is spoken, and `completed` carries the whole turn.

Deltas only ever append (OpenAI's clients concatenate them), so text that may still change is never
a delta: with ``partial=true`` in the URL (this gateway's extension) each change of it comes as
`vaani.transcription.partial` with the whole current partial, and the end of a turn as one with
empty text and ``turn_done: true``.

A problem with one client event (bad JSON, an unknown type, audio that is not PCM16) is an `error`
event and the session goes on, as OpenAI does; a problem with the stream itself (Triton refused a
chunk, the session was idle too long, no session slot was free, Triton is away) is an `error` event,
then the socket is closed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
from dataclasses import dataclass

import numpy as np
import soxr
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from vaani.gateway.errors import INVALID_REQUEST, RATE_LIMIT, SERVER_ERROR
from vaani.gateway.limits import MAX_REALTIME_SESSIONS, REALTIME_IDLE_SECONDS, STREAM_CHUNK_SECONDS
from vaani.gateway.live import Chunker, LiveRecognition, StreamRefused
from vaani.gateway.triton import Triton, TritonBusy, TritonFailed, TritonUnavailable
from vaani.serving.contract import SAMPLING_RATE, STREAM_MIN_CHUNK_SECONDS

OPENAI_RATE = 24_000
"""The one rate OpenAI's `audio/pcm` takes."""

RATES = (8_000, 16_000, 24_000, 44_100, 48_000)
"""The PCM16 rates a session may declare (`audio.input.format.rate`); all but 16 kHz are resampled."""

PARTIAL_EVENT = "vaani.transcription.partial"
"""This gateway's extension event, sent only when the URL asks (``partial=true``)."""

POLICY_VIOLATION, TRY_AGAIN_LATER, INTERNAL_ERROR = 1008, 1013, 1011
"""WebSocket close codes (RFC 6455): a refused stream, no session slot, Triton failed."""


@dataclass(frozen=True)
class RealtimeSettings:
    """The realtime endpoint's limits (`vaani gateway` options)."""

    max_sessions: int = MAX_REALTIME_SESSIONS
    idle_seconds: float = REALTIME_IDLE_SECONDS
    chunk_seconds: float = STREAM_CHUNK_SECONDS


class ClientEventError(ValueError):
    """One client event is wrong; the session goes on. ``code`` and ``param`` as OpenAI names them."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


class SessionOver(Exception):
    """The session ends after its `error` event: ``close_code`` is the WebSocket close code."""

    def __init__(self, message: str, type: str, code: str, close_code: int) -> None:
        super().__init__(message)
        self.type, self.code, self.close_code = type, code, close_code


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Sessions:
    """The cap on open realtime sessions, shared by the app's connections."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


class RealtimeSession:
    """One WebSocket: client events read in one task, Triton's answers written in another."""

    def __init__(
        self, websocket: WebSocket, triton: Triton, settings: RealtimeSettings, partial: bool
    ) -> None:
        self.websocket, self.triton, self.settings, self.partial = websocket, triton, settings, partial
        self.rate = OPENAI_RATE
        self.turn_detection: dict | None = {"type": "server_vad"}
        self.chunk = int(settings.chunk_seconds * SAMPLING_RATE)
        self.chunker = Chunker(self.chunk)
        self.resampler: soxr.ResampleStream | None = None
        self.recognition: LiveRecognition | None = None
        self.turn_item: str | None = None  # the item the current turn's audio becomes
        self.previous_item: str | None = None
        self.turns: asyncio.Queue[tuple[LiveRecognition, str]] = asyncio.Queue()
        self.started: list[LiveRecognition] = []  # every turn's, all cancelled when the session ends
        self.send_lock = asyncio.Lock()

    # --- the session as OpenAI describes it -------------------------------------------------------

    def description(self) -> dict:
        audio_input = {
            "format": {"type": "audio/pcm", "rate": self.rate},
            "transcription": {"model": "vaani", "language": None, "prompt": ""},
            "turn_detection": self.turn_detection,
            "noise_reduction": None,
        }
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "audio": {"input": audio_input},
        }

    async def emit(self, type: str, **fields: object) -> None:
        event = {"type": type, "event_id": _id("event"), **fields}
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(event, ensure_ascii=False))

    async def emit_error(
        self, message: str, type: str, code: str, param: str | None = None, event_id=None
    ) -> None:
        error = {"type": type, "code": code, "message": message, "param": param, "event_id": event_id}
        await self.emit("error", error=error)

    # --- running it --------------------------------------------------------------------------------

    async def run(self, sessions: Sessions, intent: str | None) -> None:
        """The session, from the handshake to the close; ``intent`` is the URL's."""
        await self.websocket.accept()
        if intent != "transcription":
            message = "This gateway serves transcription sessions only: /v1/realtime?intent=transcription"
            await self.emit_error(message, INVALID_REQUEST, "invalid_intent", "intent")
            await self.websocket.close(POLICY_VIOLATION)
            return
        if not await self.triton.serves_streams():
            message = "Triton does not serve asr_stream now: live transcription is unavailable"
            await self.emit_error(message, SERVER_ERROR, "server_error")
            await self.websocket.close(INTERNAL_ERROR)
            return
        if not sessions.take():
            message = (
                f"The gateway holds its maximum of {sessions.limit} realtime sessions "
                "(--max-realtime-sessions); try again shortly."
            )
            await self.emit_error(message, RATE_LIMIT, "session_limit_reached")
            await self.websocket.close(TRY_AGAIN_LATER)
            return
        writer = asyncio.create_task(self._write())
        try:
            await self.emit("session.created", session=self.description())
            await self._read(writer)  # until the client closes: no answer can reach it after that
        except SessionOver as over:
            await self._close_with(over)
        except WebSocketDisconnect:
            pass
        finally:
            sessions.give_back()
            writer.cancel()
            for recognition in self.started:
                recognition.cancel()

    async def _close_with(self, over: SessionOver) -> None:
        if self.websocket.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.emit_error(str(over), over.type, over.code)
                await self.websocket.close(over.close_code, reason=over.code)

    async def _read(self, writer: asyncio.Task) -> None:
        """Client events until the client closes; a failure of the writer ends reading too."""
        while True:
            receive = asyncio.ensure_future(self.websocket.receive())
            done, _ = await asyncio.wait(
                {receive, writer}, timeout=self.settings.idle_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if writer in done:
                receive.cancel()
                writer.result()  # raises SessionOver
            if receive not in done:
                receive.cancel()
                idle = self.settings.idle_seconds
                message = f"No event for {idle:g} s (--realtime-idle-s): the session is closed."
                raise SessionOver(message, INVALID_REQUEST, "session_idle", POLICY_VIOLATION)
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            event_id = None
            try:
                event = _parse(message.get("text"))
                event_id = event.get("event_id")
                # Handling an append can wait for Triton's answers (back-pressure); if the writer has
                # failed they will never come, so its failure ends the wait.
                handling = asyncio.ensure_future(self._handle(event))
                await asyncio.wait({handling, writer}, return_when=asyncio.FIRST_COMPLETED)
                if not handling.done():
                    handling.cancel()
                    writer.result()  # raises SessionOver
                handling.result()
            except ClientEventError as error:
                await self.emit_error(str(error), INVALID_REQUEST, error.code, error.param, event_id)

    async def _handle(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "session.update":
            self._update(event.get("session"))
            await self.emit("session.updated", session=self.description())
        elif kind == "input_audio_buffer.append":
            await self._append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind in _UNSUPPORTED:
            raise ClientEventError(f"'{kind}' is not supported by this gateway", "unsupported_event", "type")
        else:
            raise ClientEventError(f"Unknown event type '{kind}'", "unknown_event", "type")

    def _update(self, session: object) -> None:
        if not isinstance(session, dict):
            raise ClientEventError("session.update needs a 'session' object", param="session")
        if session.get("type", "transcription") != "transcription":
            raise ClientEventError("this gateway serves transcription sessions only", param="session.type")
        audio_input = (session.get("audio") or {}).get("input") or {}
        if "turn_detection" in audio_input:
            detection = audio_input["turn_detection"]
            if detection is not None and not isinstance(detection, dict):
                raise ClientEventError(
                    "turn_detection is an object or null", param="session.audio.input.turn_detection"
                )
            self.turn_detection = None if detection is None else {"type": detection.get("type", "server_vad")}
        fmt = audio_input.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type", "audio/pcm") != "audio/pcm":
                raise ClientEventError(
                    "only audio/pcm (PCM16 little-endian, mono) is supported",
                    param="session.audio.input.format",
                )
            rate = fmt.get("rate", OPENAI_RATE)
            if rate not in RATES:
                allowed = ", ".join(map(str, RATES))
                raise ClientEventError(
                    f"rate {rate} is not one of {allowed}", param="session.audio.input.format.rate"
                )
            if rate != self.rate and (self.resampler is not None or self.chunker.held):
                raise ClientEventError(
                    "the rate cannot change in the middle of a turn", param="session.audio.input.format.rate"
                )
            self.rate = rate

    async def _append(self, audio: object) -> None:
        if not isinstance(audio, str):
            raise ClientEventError("input_audio_buffer.append needs 'audio': base64 PCM16", param="audio")
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientEventError("'audio' is not valid base64", param="audio") from None
        if len(raw) % 2:
            raise ClientEventError(
                "'audio' holds an odd number of bytes: PCM16 has two per sample", param="audio"
            )
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        if self.rate != SAMPLING_RATE:
            if self.resampler is None:
                self.resampler = soxr.ResampleStream(
                    self.rate, SAMPLING_RATE, 1, dtype="float32", quality="HQ"
                )
            samples = self.resampler.resample_chunk(samples)
        for chunk in self.chunker.push(samples):
            await self._send(chunk)

    async def _send(self, chunk: np.ndarray, last: bool = False) -> None:
        if self.recognition is None:
            self.recognition = LiveRecognition(self.triton.client)
            self.started.append(self.recognition)
            self.turn_item = _id("item")
            await self.turns.put((self.recognition, self.turn_item))
        await self.recognition.send(chunk, last=last)

    async def _commit(self) -> None:
        """The end of a turn: the rest of its audio goes with END; the next append starts a new turn."""
        if self.resampler is not None:
            tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self.resampler = None
            for chunk in self.chunker.push(tail):
                await self._send(chunk)
        rest = self.chunker.rest()
        if self.recognition is None and len(rest) < int(STREAM_MIN_CHUNK_SECONDS * SAMPLING_RATE):
            raise ClientEventError(
                f"buffer too small: a turn needs at least {STREAM_MIN_CHUNK_SECONDS * 1000:g} ms of audio",
                "input_audio_buffer_commit_empty",
            )
        if len(rest) == 0:
            rest = np.zeros(int(STREAM_MIN_CHUNK_SECONDS * SAMPLING_RATE), np.float32)  # END needs a chunk
        await self._send(rest, last=True)  # its answers end the turn's item (`_write_turn`)
        self.recognition, self.turn_item = None, None

    # --- Triton's answers → events ------------------------------------------------------------------

    async def _write(self) -> None:
        """Each turn's answers in order, turn after turn; a failure ends the session."""
        while True:
            recognition, item = await self.turns.get()
            try:
                await self._write_turn(recognition, item)
                self.started.remove(recognition)
            except StreamRefused as error:
                raise SessionOver(
                    f"asr_stream refused the audio: {error}",
                    INVALID_REQUEST,
                    "stream_refused",
                    POLICY_VIOLATION,
                ) from None
            except TritonBusy as error:
                raise SessionOver(str(error), RATE_LIMIT, "rate_limit_exceeded", TRY_AGAIN_LATER) from None
            except (TritonUnavailable, TritonFailed) as error:
                raise SessionOver(str(error), SERVER_ERROR, "server_error", INTERNAL_ERROR) from None

    async def _write_turn(self, recognition: LiveRecognition, item: str) -> None:
        """A turn's answers: finished pieces while it goes on, then its own item, ended by the client's
        commit: `input_audio_buffer.committed`, the last delta, `completed`."""
        finished, partial, turn_text = "", "", ""
        async for heard in recognition.answers():
            new = heard.finished[len(finished) :]
            finished = heard.finished
            if heard.last:
                break
            if new.strip():
                turn_text = await self._finished(new, turn_text, item)
            if self.partial and heard.partial != partial:
                partial = heard.partial
                await self.emit(PARTIAL_EVENT, item_id=item, text=partial)
        else:
            return  # cancelled: the client left
        if self.turn_detection is None:
            piece = (new if turn_text else new.lstrip()) if new.strip() else ""
            text = turn_text + piece
        else:
            piece = text = new.strip()
        await self.emit("input_audio_buffer.committed", item_id=item, previous_item_id=self.previous_item)
        self.previous_item = item
        if piece:
            await self.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item,
                content_index=0,
                delta=piece,
            )
        await self.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item, content_index=0, transcript=text, usage=_usage(),
        )  # fmt: skip
        if self.partial:  # nothing is partial now, and the client knows that its turn's text is all there
            await self.emit(PARTIAL_EVENT, item_id=item, text="", turn_done=True)

    async def _finished(self, new: str, turn_text: str, item: str) -> str:
        """Newly finished text: its own item with turn detection, a delta of the turn's item without."""
        delta = "conversation.item.input_audio_transcription.delta"
        if self.turn_detection is None:
            piece = new if turn_text else new.lstrip()
            await self.emit(delta, item_id=item, content_index=0, delta=piece)
            return turn_text + piece
        text = new.strip()
        piece_item = _id("item")
        await self.emit(
            "input_audio_buffer.committed", item_id=piece_item, previous_item_id=self.previous_item
        )
        self.previous_item = piece_item
        await self.emit(delta, item_id=piece_item, content_index=0, delta=text)
        await self.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=piece_item, content_index=0, transcript=text, usage=_usage(),
        )  # fmt: skip
        return turn_text


_UNSUPPORTED = frozenset(
    {
        "input_audio_buffer.clear",
        "transcription_session.update",  # the beta's; this gateway follows the GA protocol
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)


def _usage() -> dict:
    """OpenAI's usage object; a CTC model has no tokens."""
    return {"type": "tokens", "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def _parse(text: str | None) -> dict:
    if text is None:
        raise ClientEventError("Events are JSON text frames, not binary ones", "invalid_event")
    try:
        event = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClientEventError(f"The event is not JSON: {error}", "invalid_json") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ClientEventError("An event is a JSON object with a string 'type'", "invalid_event", "type")
    return event
