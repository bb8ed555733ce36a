"""The gateway: OpenAI's `POST /v1/audio/transcriptions`, its Realtime transcription WebSocket and a web
page, in front of Triton's `asr` and `asr_stream`.

Applications that already speak OpenAI's speech-to-text API (its Python and JS clients, curl
scripts, tools built on them) get this project's model without a line of Triton code, and every
upload still goes through Triton's dynamic batcher.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from vaani.audio import AudioFileError
from vaani.gateway import errors
from vaani.gateway.decoding import decode_async
from vaani.gateway.errors import RATE_LIMIT, SERVER_ERROR, OpenAIError
from vaani.gateway.formats import (
    TEXT_ONLY,
    Granularity,
    ResponseFormat,
    live_events,
    needs_words,
    render,
    render_stream,
)
from vaani.gateway.limits import (
    MAX_AUDIO_SECONDS,
    MAX_UPLOAD_BYTES,
    RETRY_AFTER_SECONDS,
    UPLOAD_CHUNK_SECONDS,
    UPLOAD_SECONDS,
)
from vaani.gateway.live import FAILURES, StreamRefused, recognise
from vaani.gateway.realtime import RealtimeSession, RealtimeSettings, Sessions
from vaani.gateway.triton import AudioRejected, Triton, TritonBusy, TritonFailed, TritonUnavailable
from vaani.gateway.upload_limit import UploadLimit
from vaani.serving.contract import SAMPLING_RATE
from vaani.subtitles import CueRules

MODEL_ID = "vaani"
"""The model name `/v1/models` lists. Any `model` value is accepted: the gateway serves one model,
and clients written for OpenAI often send a fixed name."""

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class GatewaySettings:
    """Everything `vaani gateway` can be told."""

    triton_url: str = "localhost:8001"
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    upload_seconds: float = UPLOAD_SECONDS
    max_audio_seconds: float = MAX_AUDIO_SECONDS
    language: str = "hindi"
    """What `verbose_json` reports as the language: the served model's; this model does not detect it."""
    cue_rules: CueRules = field(default_factory=CueRules)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)


def refusal(error: Exception, name: str = "file") -> OpenAIError:
    """What the client is told when Triton refuses or fails: status, type and message as OpenAI's."""
    if isinstance(error, AudioRejected | StreamRefused):
        return OpenAIError(400, f"{name}: {error}", param="file")
    if isinstance(error, TritonBusy):
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return OpenAIError(429, str(error), type=RATE_LIMIT, code="rate_limit_exceeded", headers=retry)
    if isinstance(error, TritonUnavailable):
        return OpenAIError(503, str(error), type=SERVER_ERROR)
    return OpenAIError(500, str(error), type=SERVER_ERROR)


def _check_streamable(fmt: ResponseFormat) -> None:
    """Refuse ``stream=true`` with a format that has no streamed form, before the upload is decoded,
    rather than stream text the client did not ask for."""
    if fmt not in TEXT_ONLY:
        allowed = " or ".join(f"'{each.value}'" for each in TEXT_ONLY)
        message = f"response_format '{fmt.value}' cannot be streamed; with stream=true use {allowed}"
        raise OpenAIError(400, message, param="response_format")


def create_app(settings: GatewaySettings, connect: Callable[[str], Triton] = Triton) -> FastAPI:
    """The ASGI app; its Triton connection (``connect(settings.triton_url)``, replaceable so that the
    page and the formats can be tested against a stand-in) opens and closes with the app's lifespan."""
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.triton = connect(settings.triton_url)
        try:
            yield
        finally:
            await app.state.triton.close()

    # FastAPIOffline: /docs and /redoc as FastAPI makes them, but with Swagger UI and ReDoc served by
    # the gateway from the installed package instead of a CDN, so the docs work without internet.
    app = FastAPIOffline(
        title="vaani gateway",
        summary="OpenAI-compatible speech-to-text in front of Triton's `asr` ensemble",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes, max_seconds=settings.upload_seconds)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/v1/audio/transcriptions", summary="Transcribe audio (OpenAI-compatible)")
    async def transcriptions(
        file: Annotated[
            UploadFile, File(description="the audio file: WAV, FLAC, OGG; MP3, M4A, WebM with ffmpeg")
        ],
        model: Annotated[str, Form(description=f"any name; this gateway serves one model ({MODEL_ID})")],
        language: Annotated[str | None, Form(description="accepted; the model has one language")] = None,
        prompt: Annotated[
            str | None, Form(description="accepted and ignored: a CTC model takes no prompt")
        ] = None,
        response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.json,
        temperature: Annotated[float, Form(description="accepted and ignored: decoding is greedy")] = 0.0,
        timestamp_granularities: Annotated[
            list[Granularity] | None,
            Form(alias="timestamp_granularities[]", description="verbose_json only: word, segment"),
        ] = None,
        stream: Annotated[
            bool,
            Form(
                description="server-sent events (transcript.text.delta, then transcript.text.done); "
                "json and text only. Deltas come as recognition finishes text (Triton's asr_stream)."
            ),
        ] = False,
    ) -> Response:
        if stream:
            _check_streamable(response_format)
        name = file.filename or "file"
        try:
            audio = await decode_async(file.file, name, settings.max_audio_seconds)
        except AudioFileError as error:
            raise OpenAIError(400, str(error), param="file") from None
        chunk = int(UPLOAD_CHUNK_SECONDS * SAMPLING_RATE)
        # A file of one chunk gains nothing from streaming: `asr` answers it, and refuses what it refuses.
        if stream and len(audio) > chunk and await app.state.triton.serves_streams():
            answers = recognise(app.state.triton.client, audio, chunk)
            try:
                first = await answers.__anext__()
            except FAILURES as error:
                raise refusal(error, name) from None
            return live_events(first, answers, refusal)
        try:
            transcript = await app.state.triton.transcribe(audio, with_words=needs_words(response_format))
        except (AudioRejected, TritonBusy, TritonUnavailable, TritonFailed) as error:
            raise refusal(error, name) from None
        if stream:
            return render_stream(transcript)
        return render(
            response_format,
            transcript,
            len(audio) / SAMPLING_RATE,
            granularities=set(timestamp_granularities or [Granularity.segment]),
            language=settings.language,
            rules=settings.cue_rules,
        )

    sessions = Sessions(settings.realtime.max_sessions)

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket, intent: str | None = None, partial: bool = False) -> None:
        """OpenAI's Realtime transcription (`?intent=transcription`); ``partial=true`` adds this
        gateway's partial-text events."""
        session = RealtimeSession(websocket, app.state.triton, settings.realtime, partial)
        await session.run(sessions, intent)

    @app.get("/v1/models", summary="The model this gateway serves (OpenAI-compatible)")
    async def models() -> dict[str, object]:
        entry = {"id": MODEL_ID, "object": "model", "created": started, "owned_by": "vaani"}
        return {"object": "list", "data": [entry]}

    @app.get("/health", summary="200 when Triton and `asr` are ready, 503 otherwise")
    async def health() -> JSONResponse:
        if await app.state.triton.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "triton": settings.triton_url}, status_code=503)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
