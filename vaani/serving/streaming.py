"""Live recognition: where a stream's audio is cut into segments, and the bounded table of live streams.

A wav2vec2 CTC model attends to its whole input, so it cannot extend a transcript frame by frame.
A stream keeps only its *unfinished segment*: the audio since its last finished segment. Every chunk
is appended there and the partial text is recomputed over that segment alone. A segment finishes
at a pause (`Windowing.silences`, the pause detection that cuts long recordings, against the
loudest level the stream has heard) or when it reaches ``max_segment`` samples (cut at its quietest
frame in the second half, most likely between words); its text is then decoded once more, over
exactly that audio, and never changes. Silence before speech is dropped rather than kept: the model
misreads an input that opens with silence (`vaani.serving.windowing`).

So a stream holds at most ``max_segment`` samples plus one chunk, and the work per chunk grows with
the unfinished segment only, never with the stream's length. The partial need not be recomputed at
every chunk: `Stream.partial_due` says whether enough audio came since the last one. Numpy only:
the `asr_stream` step (`vaani.serving.steps.asr_stream`) runs this inside Triton; what it decodes
with is `asr` itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from vaani.serving.windowing import Windowing

ONSET_MARGIN = 1
"""Silent frames kept before a segment's speech. Measured on the bundled model (2026-12-05, default beam
+ LM, 200 ms and 1 s chunks): none cut soft onsets, WER 1.54 % on the 400 held-out sentences against
`asr`'s 0.56 %; one frame (20 ms) gave 0.64 %, two or four the same; on 20 recordings of four sentences
with pauses (464 words) 4.31 % with none, 4.53 % with one (a word), against `asr`'s 23.9 %."""


class StreamRefused(ValueError):
    """A chunk or a stream breaks the streaming rules; the message, for its client, names the rule."""


@dataclass(frozen=True)
class Segment:
    """Audio of one segment and where it starts in the stream, in samples."""

    audio: np.ndarray
    start: int


@dataclass(frozen=True)
class Cut:
    """What a chunk does to a stream, before it is committed: segments it finishes, what stays open."""

    finished: list[Segment]
    rest: Segment
    loud: float
    speech: bool  # whether ``rest`` holds any speech (no partial to decode otherwise)
    changed: bool  # whether the chunk brought speech into ``rest`` (a partial over silence is unchanged)

    @property
    def end(self) -> int:
        """Samples the stream has received, this chunk included (``rest`` runs to the stream's end)."""
        return self.rest.start + self.rest.audio.size


@dataclass
class Stream:
    """One live stream: its finished text (and words, when it asked for them) and its unfinished segment."""

    keeps_words: bool = False
    texts: list[str] = field(default_factory=list)
    words: list[dict] = field(default_factory=list)
    partial: str = ""
    rest: Segment = field(default_factory=lambda: Segment(np.zeros(0, np.float32), 0))
    loud: float = 0.0
    last_seen: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one chunk of a stream at a time, in order
    waiting: int = 0  # chunks of this stream in the step, the one being decoded included
    stale: bool = False  # the partial was not recomputed after speech came (behind, or not yet due)
    partial_at: int | None = None  # samples received when the standing partial was computed (None: never)

    @property
    def transcript(self) -> str:
        return " ".join(t for t in [*self.texts, self.partial] if t)

    def partial_due(self, cut: Cut, interval: int) -> bool:
        """Whether ``cut`` brings the stream ``interval`` samples or more past its last partial: a partial
        recomputed more often costs a decode per chunk; less often, the text lags the speech more."""
        return self.partial_at is None or cut.end - self.partial_at >= interval

    def commit(
        self,
        cut: Cut,
        texts: list[str],
        words: list[list[dict]],
        partial: str,
        stale: bool = False,
        fresh: bool = False,
    ) -> None:
        """``cut`` made final: its finished segments' ``texts`` (and ``words``), and the ``partial`` now
        shown; ``fresh`` when that partial was just computed over ``cut``'s unfinished segment."""
        self.texts.extend(t for t in texts if t)
        if self.keeps_words:
            self.words.extend(w for segment in words for w in segment)
        self.rest, self.loud, self.partial, self.stale = cut.rest, cut.loud, partial, stale
        if fresh:
            self.partial_at = cut.end


@dataclass(frozen=True)
class Segmenter:
    """How streams are cut: ``windowing``'s pause detection, ``max_segment`` samples at most."""

    windowing: Windowing
    max_segment: int

    def cut(self, stream: Stream, chunk: np.ndarray, end: bool) -> Cut:
        """``chunk`` appended to ``stream``'s unfinished segment, cut where segments finish; ``end``
        finishes what is left. The stream itself is unchanged until `Stream.commit`."""
        step = self.windowing.spec.samples_per_frame
        audio = np.concatenate([stream.rest.audio, chunk.astype(np.float32, copy=False)])
        start = stream.rest.start
        rms = self.windowing.frame_rms(audio[None, :])
        loud = max(stream.loud, float(np.percentile(rms, 95))) if rms.size else stream.loud
        silent = self.windowing.silent(rms, loud)
        finished: list[Segment] = []
        while True:
            lead = int(np.argmin(silent)) if not silent.all() else silent.size  # silent frames before speech
            lead = max(0, lead - ONSET_MARGIN)
            if lead:  # drop silence before speech, but for the margin: never decoded, never kept
                audio, start, rms, silent = (
                    audio[lead * step :],
                    start + lead * step,
                    rms[lead:],
                    silent[lead:],
                )
            if not silent.size or silent.all():
                break
            boundary = self._boundary(rms, loud)
            if boundary is None:
                break
            finished.append(Segment(audio[:boundary], start))
            frames = boundary // step
            audio, start, rms, silent = audio[boundary:], start + boundary, rms[frames:], silent[frames:]
        speech = bool(silent.size) and not bool(silent.all())
        if end and speech:
            finished.append(Segment(audio, start))
            audio, start, speech = audio[:0], start + audio.size, False
        new_frames = chunk.size // step
        changed = bool(finished) or (speech and not silent[-new_frames:].all() if new_frames else speech)
        return Cut(finished, Segment(audio.copy(), start), loud, speech, changed)

    def _boundary(self, rms: np.ndarray, loud: float) -> int | None:
        """Where the segment that opens with speech finishes, in samples; None while it runs on.

        At the first pause: its first ``min_pause`` samples stay with the segment (the model may emit
        a word's last letter in its input's last frames). Past ``max_segment`` with no pause: at the
        quietest frame of the second half.
        """
        step = self.windowing.spec.samples_per_frame
        limit = self.max_segment // step
        pauses = self.windowing.silences(rms[:limit], loud) if self.windowing.min_pause > 0 else []
        pauses = [(a, b) for a, b in pauses if a > 0]  # --pause-seconds 0: segments end at the cap only
        if pauses:
            return pauses[0][0] + self.windowing.min_pause
        if rms.size <= limit:
            return None
        half = limit // 2
        return (half + int(np.argmin(rms[half:limit]))) * step


class StreamTable:
    """Live streams by id: at most ``capacity``; one is forgotten ``idle_s`` after its last chunk."""

    def __init__(self, capacity: int, idle_s: float) -> None:
        self.capacity, self.idle_s = capacity, idle_s
        self.streams: dict[int, Stream] = {}

    def sweep(self, now: float) -> list[int]:
        """Forget the streams idle longer than ``idle_s`` (Triton has released their sequences too)."""
        idle = [
            key for key, s in self.streams.items() if now - s.last_seen > self.idle_s and not s.lock.locked()
        ]
        for key in idle:
            del self.streams[key]
        return idle

    def open(self, key: int, now: float, keeps_words: bool) -> Stream:
        """A new stream (START); a START on a live id starts that stream afresh."""
        self.streams.pop(key, None)
        if len(self.streams) >= self.capacity:
            raise StreamRefused(
                f"too many live streams: {self.capacity} at most on this instance (--max-streams shared by "
                "--stream-instances); end one or try later"
            )
        stream = self.streams[key] = Stream(keeps_words=keeps_words, last_seen=now)
        return stream

    def get(self, key: int, now: float) -> Stream:
        stream = self.streams.get(key)
        if stream is None:
            raise StreamRefused(
                f"stream {key} is not live: its first chunk must carry START, and a stream ends at END "
                f"or after {self.idle_s:g} s without a chunk"
            )
        stream.last_seen = now
        return stream

    def close(self, key: int) -> None:
        self.streams.pop(key, None)


def chunk_problem(chunk: np.ndarray, min_samples: int, max_samples: int, end: bool) -> str | None:
    """Why ``chunk`` (AUDIO of one request, ``[1, samples]``) is not a stream's next chunk."""
    if chunk.ndim != 2 or chunk.shape[0] != 1:
        return f"AUDIO must be one chunk, [1, samples]; got {list(chunk.shape)}"
    samples = chunk.shape[1]
    if samples > max_samples:
        return f"AUDIO chunk too long: {samples} samples; at most {max_samples} (--stream-max-chunk-seconds)"
    if samples < min_samples and not end:
        return (
            f"AUDIO chunk too short: {samples} samples; at least {min_samples} (only the last may be shorter)"
        )
    if not np.isfinite(chunk).all():
        return "AUDIO must be finite (no NaN or infinity)"
    return None
