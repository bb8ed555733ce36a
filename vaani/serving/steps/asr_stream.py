"""`asr_stream`: live recognition, one Triton sequence per stream, each chunk answered with the text so far.

Triton's sequence batcher routes every chunk of a stream here with its correlation id and START/END
flags (`vaani.serving.contract`), and releases a sequence idle longer than
``max_sequence_idle_microseconds``; this step forgets that stream's state after the same time.
`vaani.serving.streaming` cuts each stream into segments; the segments a chunk finishes and the
partial over the unfinished segment are decoded by `asr` itself, by BLS, every request of the
execution at once: chunks of all live streams meet in the dynamic batchers of `preprocess`,
`wav2vec2` and `ctc_decoder`, together with `asr`'s own traffic, and a finished segment's text is
exactly what `asr` answers for that audio (same engine, decoder, LM, word times). The partial is
recomputed only once ``partial_samples`` of new audio came since the last one
(``--stream-partial-seconds``); a chunk in between, like one that brings no speech, costs no BLS and
is answered with the standing partial.

Every request is answered on its own: a chunk that breaks a rule (too long, too short, not finite,
no START first, one stream too many) is refused with INVALID_ARG naming the rule, and its stream,
if live, stays as it was; the other streams of the execution carry on.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import (
    AUDIO,
    ENSEMBLE,
    PARTIAL,
    SAMPLING_RATE,
    STREAM_CORRID,
    STREAM_END,
    STREAM_START,
    TRANSCRIPT,
    WORDS,
)
from vaani.serving.step import StepContext
from vaani.serving.steps.boundary import Unanswered, asked_for, cancelled, passed_on, read, refused, strings
from vaani.serving.streaming import Cut, Segment, Segmenter, Stream, StreamRefused, StreamTable, chunk_problem


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.min_audio = context.spec().receptive_field  # the shortest audio `asr` takes
        self.segmenter = Segmenter(context.windowing(), int(context.parameters["max_segment_samples"]))
        self.min_chunk = int(context.parameters["min_chunk_samples"])
        self.max_chunk = int(context.parameters["max_chunk_samples"])
        self.partial_samples = int(context.parameters["partial_samples"])
        self.table = StreamTable(int(context.parameters["max_streams"]), context.number("idle_seconds", 60.0))

    async def execute(self, requests):
        now = time.monotonic()
        self.table.sweep(now)
        return list(await asyncio.gather(*(self._one(request, now) for request in requests)))

    async def _one(self, request, now: float):
        if request.is_cancelled():
            return cancelled()
        key = int(read(request, STREAM_CORRID).reshape(-1)[0])
        start = bool(read(request, STREAM_START).reshape(-1)[0])
        end = bool(read(request, STREAM_END).reshape(-1)[0])
        chunk = read(request, AUDIO)
        try:
            problem = chunk_problem(chunk, self.min_chunk, self.max_chunk, end)
            if problem:
                raise StreamRefused(problem)
            if start:
                stream = self.table.open(key, now, keeps_words=asked_for(request, WORDS))
            else:
                stream = self.table.get(key, now)
        except StreamRefused as error:
            return refused(str(error))
        stream.waiting += 1
        try:
            async with stream.lock:  # a stream's chunks are decoded one after the other, in order
                cut = self.segmenter.cut(stream, chunk[0], end)
                try:
                    texts, words, partial, stale, fresh = await self._decode(
                        stream, cut, behind=stream.waiting > 1
                    )
                except Unanswered as failure:
                    return failure.answer  # the stream stays as it was before this chunk
                stream.commit(cut, texts, words, partial, stale, fresh)
                if end:
                    self.table.close(key)
        finally:
            stream.waiting -= 1
        outputs = [strings(TRANSCRIPT, [stream.transcript]), strings(PARTIAL, [stream.partial])]
        if asked_for(request, WORDS):
            outputs.append(strings(WORDS, [json.dumps(stream.words, ensure_ascii=False)]))
        return pb_utils.InferenceResponse(outputs)

    async def _decode(
        self, stream: Stream, cut: Cut, behind: bool
    ) -> tuple[list[str], list[list[dict]], str, bool, bool]:
        """The finished segments' texts (and words) and the partial, all asked of `asr` at once.

        The partial is recomputed when it would change (new speech, or stale) and is due (enough new
        audio since the last one, `Stream.partial_due`). ``behind``: a later chunk of the stream is
        already waiting, and will recompute the partial over more audio; this one does not (the old
        partial stands, or none after a finished segment), so a stream that fell behind catches up at
        one partial per wait instead of one per chunk. The last two values: the partial is stale (the
        next due chunk recomputes it even if it brings only silence), and it was just recomputed.
        """
        needed = cut.speech and (cut.changed or stream.stale)
        fresh = needed and not behind and stream.partial_due(cut, self.partial_samples)
        jobs = [self._asr(segment, stream.keeps_words) for segment in cut.finished]
        if fresh:
            jobs.append(self._asr(cut.rest, False))
        answers = await asyncio.gather(*jobs)
        finished = answers[: len(cut.finished)]
        if fresh:
            partial = answers[-1][0]
        elif not cut.speech or cut.finished:
            partial = ""  # the old partial's speech is finished text now, or there is none
        else:
            partial = stream.partial  # the partial over (nearly) the same speech stands
        texts, words = [text for text, _ in finished], [words for _, words in finished]
        return texts, words, partial, needed and not fresh, fresh

    async def _asr(self, segment: Segment, with_words: bool) -> tuple[str, list[dict]]:
        if segment.audio.size < self.min_audio:
            return "", []
        outputs = [TRANSCRIPT, WORDS] if with_words else [TRANSCRIPT]
        call = pb_utils.InferenceRequest(
            model_name=ENSEMBLE,
            requested_output_names=outputs,
            inputs=[pb_utils.Tensor(AUDIO, np.ascontiguousarray(segment.audio[None, :], dtype=np.float32))],
        )
        response = await call.async_exec()
        if response.has_error():
            raise Unanswered(passed_on(response.error()))
        text = _string(response, TRANSCRIPT).strip()
        if not with_words:
            return text, []
        offset = segment.start / SAMPLING_RATE  # `asr`'s times are from the segment's start
        words = json.loads(_string(response, WORDS) or "[]")
        for word in words:
            word["start"] = round(word["start"] + offset, 3)
            word["end"] = round(word["end"] + offset, 3)
        return text, words


def _string(response, name: str) -> str:
    value = pb_utils.get_output_tensor_by_name(response, name).as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
