"""The five answers of OpenAI's transcription endpoint, made from one transcript.

`json` is ``{"text"}``, `text` the bare text, `srt`/`vtt` subtitles, `verbose_json` the text with
the task, language and duration, plus `words` and/or `segments` as ``timestamp_granularities[]``
asks (segments by default). Segments are the subtitle cues of `vaani.subtitles`, so a segment and
a subtitle cue are the same span. A CTC model has no tokens, log-probabilities or no-speech score:
those segment fields carry neutral values so that clients that read them keep working.

Without word times (a model that does not give them) the whole recording is one segment and one
cue, and `words` is empty.

With ``stream=true`` the answer is OpenAI's event stream instead: `transcript.text.delta` events, then
one `transcript.text.done`. When Triton serves `asr_stream` the deltas follow recognition (`live_events`);
otherwise they come from the whole file's transcript at once (`render_stream`).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from enum import Enum

from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from vaani.gateway.errors import OpenAIError
from vaani.gateway.live import FAILURES, Heard
from vaani.gateway.triton import Transcript
from vaani.subtitles import Cue, CueRules, cues, to_srt, to_vtt


class ResponseFormat(str, Enum):
    json = "json"
    text = "text"
    srt = "srt"
    vtt = "vtt"
    verbose_json = "verbose_json"


class Granularity(str, Enum):
    word = "word"
    segment = "segment"


TEXT_ONLY = (ResponseFormat.json, ResponseFormat.text)
"""The formats whose answer is the text alone: they need no word times, and they are the ones that
can be streamed as text events (subtitles and `verbose_json` are documents with times, which
OpenAI's API does not stream)."""


def needs_words(fmt: ResponseFormat) -> bool:
    """Whether the answer carries times: `json` and `text` do not, so they do not ask for words."""
    return fmt not in TEXT_ONLY


def transcript_cues(transcript: Transcript, duration: float, rules: CueRules) -> list[Cue]:
    """Cues from the words, or one cue over the whole recording when there are no word times."""
    if transcript.words is not None:
        return cues(transcript.words, rules)
    return [Cue(0.0, duration, transcript.text)] if transcript.text else []


def _segment(index: int, cue: Cue) -> dict[str, object]:
    return {
        "id": index,
        "seek": 0,
        "start": cue.start,
        "end": cue.end,
        "text": cue.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 0.0,
        "no_speech_prob": 0.0,
    }


def render(
    fmt: ResponseFormat,
    transcript: Transcript,
    duration: float,
    *,
    granularities: set[Granularity],
    language: str,
    rules: CueRules,
) -> Response:
    """The response OpenAI's endpoint would give for ``fmt``."""
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    if fmt is ResponseFormat.json:
        return JSONResponse({"text": transcript.text, "usage": usage})
    if fmt is ResponseFormat.text:
        return PlainTextResponse(transcript.text + "\n")
    if fmt is ResponseFormat.srt:
        return PlainTextResponse(to_srt(transcript_cues(transcript, duration, rules)))
    if fmt is ResponseFormat.vtt:
        return PlainTextResponse(to_vtt(transcript_cues(transcript, duration, rules)), media_type="text/vtt")
    body: dict[str, object] = {
        "task": "transcribe",
        "language": language,
        "duration": duration,
        "text": transcript.text,
    }
    if Granularity.word in granularities:
        body["words"] = [word.as_dict() for word in transcript.words or ()]
    if Granularity.segment in granularities:
        cue_list = transcript_cues(transcript, duration, rules)
        body["segments"] = [_segment(index, cue) for index, cue in enumerate(cue_list)]
    body["usage"] = usage
    return JSONResponse(body)


def render_stream(transcript: Transcript) -> Response:
    """OpenAI's server-sent events for ``stream=true``: one `transcript.text.delta` per word (each after
    the first with its leading space, so the deltas join into the text), then `transcript.text.done`.

    The whole file is recognised before the first event, so the events go out as one body; what a
    client gains is OpenAI's streaming protocol, not earlier text. The done event has no ``usage``:
    OpenAI's streamed usage counts tokens, and a CTC model has none.
    """
    events = [_delta(delta) for delta in _word_deltas(transcript.text, first=True)]
    events.append({"type": "transcript.text.done", "text": transcript.text})
    return Response("".join(map(_sse, events)), media_type="text/event-stream")


def live_events(
    first: Heard, rest: AsyncIterator[Heard], refusal: Callable[[Exception], OpenAIError]
) -> StreamingResponse:
    """OpenAI's server-sent events while `asr_stream` recognises the file: each piece of text it
    finishes goes out at once, a `transcript.text.delta` per word as `render_stream` sends them, and
    `transcript.text.done` carries the final text. Only finished text is sent: a delta is never
    taken back. ``first`` was awaited before the answer began, so that a refused file still gets
    its status code; a failure after that can only be an `error` event, in the shape ``refusal``
    gives it (OpenAI's client raises it as `APIError`)."""

    async def events() -> AsyncIterator[str]:
        sent = ""
        heard = first
        try:
            while True:
                finished = heard.finished.rstrip()
                if finished.startswith(sent) and len(finished) > len(sent):
                    for delta in _word_deltas(finished[len(sent) :], first=not sent):
                        yield _sse(_delta(delta))
                    sent = finished
                if heard.last:
                    break
                heard = await rest.__anext__()
        except FAILURES as error:
            yield _sse({"type": "error", **refusal(error).body()})
            return
        yield _sse({"type": "transcript.text.done", "text": heard.transcript})

    return StreamingResponse(events(), media_type="text/event-stream")


def _word_deltas(text: str, first: bool) -> list[str]:
    """``text`` as one delta per word, each after the stream's first with its leading space, so
    that the deltas join into the text."""
    words = text.split()
    return [word if first and index == 0 else f" {word}" for index, word in enumerate(words)]


def _delta(delta: str) -> dict[str, str]:
    return {"type": "transcript.text.delta", "delta": delta}


def _sse(event: dict[str, object]) -> str:
    """One server-sent event as OpenAI sends it: a compact JSON `data:` line, then a blank line."""
    return f"data: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"
