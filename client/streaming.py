"""Live recognition from the client's side: audio sent to `asr_stream` in chunks over one gRPC stream.

from vaani.client.streaming import stream_audio
answers = stream_audio(audio)            # float32, 16 kHz, mono; localhost:8001, 200 ms chunks in real time

Each chunk is one request of one Triton sequence (``sequence_id``, START on the first, END on the
last), sent on tritonclient's bidirectional gRPC stream at ``pace`` × real time (0: each chunk as
soon as the previous one is answered). Every answer carries the stream's text so far and its
partial tail; a chunk the server refuses is answered with its error, and the stream goes on.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vaani.serving.contract import AUDIO, PARTIAL, SAMPLING_RATE, STREAM, TRANSCRIPT, WORDS

DEFAULT_URL = "localhost:8001"
_ids = itertools.count((os.getpid() % 10_000) * 1_000_000 + int(time.time()) % 1_000_000)


@dataclass(frozen=True)
class ChunkAnswer:
    """One chunk's answer: the stream's text then, and when the chunk was sent and answered."""

    index: int
    sent: float  # time.monotonic() seconds
    answered: float
    transcript: str = ""
    partial: str = ""
    words: str = ""  # JSON, when asked for
    error: str = ""

    @property
    def latency(self) -> float:
        """Chunk sent → its answer, seconds."""
        return self.answered - self.sent

    @property
    def finished(self) -> str:
        """The text that can no longer change: the transcript without its partial tail."""
        return self.transcript[: len(self.transcript) - len(self.partial)].rstrip()


def new_sequence_id() -> int:
    """A correlation id no other stream of this process uses (and unlikely any other process's)."""
    return next(_ids)


def chunks(audio: np.ndarray, chunk_seconds: float) -> list[np.ndarray]:
    size = max(1, round(chunk_seconds * SAMPLING_RATE))
    return [audio[i : i + size] for i in range(0, len(audio), size)] or [audio[:0]]


def stream_audio(
    audio: np.ndarray,
    url: str = DEFAULT_URL,
    chunk_seconds: float = 0.2,
    pace: float = 1.0,
    sequence_id: int | None = None,
    words: bool = False,
    on_answer: Callable[[ChunkAnswer], None] | None = None,
    timeout_s: float = 120.0,
    model: str = STREAM,
) -> list[ChunkAnswer]:
    """Send ``audio`` to ``model`` as one stream; every chunk's answer, in order.

    ``on_answer`` sees each answer as it arrives (the CLI prints partials from it). Raises
    TimeoutError when an answer is more than ``timeout_s`` late.
    """
    import tritonclient.grpc as grpc

    pieces = chunks(np.ascontiguousarray(audio, dtype=np.float32), chunk_seconds)
    sequence_id = sequence_id or new_sequence_id()
    arrived: queue.Queue = queue.Queue()
    client = grpc.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: arrived.put((time.monotonic(), result, error)))
    outputs = [grpc.InferRequestedOutput(name) for name in (TRANSCRIPT, PARTIAL, *([WORDS] if words else []))]
    sent: dict[str, tuple[int, float]] = {}
    answers: dict[int, ChunkAnswer] = {}

    def take(block: bool) -> None:
        while True:
            try:
                when, result, error = arrived.get(block=block, timeout=timeout_s if block else None)
            except queue.Empty:
                if block:
                    raise TimeoutError(f"no answer from {model} within {timeout_s:g} s") from None
                return
            answer = _answer(when, result, error, sent)
            answers[answer.index] = answer
            if on_answer is not None:
                on_answer(answer)
            if block:
                return

    try:
        start = time.monotonic()
        for index, piece in enumerate(pieces):
            if pace > 0:
                time.sleep(max(0.0, start + index * chunk_seconds / pace - time.monotonic()))
            else:
                while len(answers) < index:
                    take(block=True)
            tensor = grpc.InferInput(AUDIO, [1, piece.size], "FP32")
            tensor.set_data_from_numpy(piece[None, :])
            sent[str(index)] = (index, time.monotonic())
            client.async_stream_infer(
                model,
                [tensor],
                request_id=str(index),
                sequence_id=sequence_id,
                sequence_start=index == 0,
                sequence_end=index == len(pieces) - 1,
                outputs=outputs,
            )
            take(block=False)
        while len(answers) < len(pieces):
            take(block=True)
    finally:
        client.stop_stream()
        client.close()
    return [answers[i] for i in range(len(pieces))]


def _answer(when: float, result, error, sent: dict[str, tuple[int, float]]) -> ChunkAnswer:
    request_id = result.get_response().id if result is not None else _error_id(error, sent)
    index, at = sent.pop(request_id, (-1, when))
    if error is not None:
        return ChunkAnswer(index, at, when, error=str(error))

    def text(name: str) -> str:
        array = result.as_numpy(name)
        return "" if array is None else array.reshape(-1)[0].decode("utf-8")

    return ChunkAnswer(index, at, when, text(TRANSCRIPT), text(PARTIAL), text(WORDS))


def _error_id(error, sent: dict[str, tuple[int, float]]) -> str:
    """The request an error answers: tritonclient's stream errors carry no id, so the oldest unanswered
    (a stream's chunks are answered in order)."""
    return min(sent, key=lambda key: sent[key][0]) if sent else ""


class LivePrinter:
    """Prints a stream's text as it changes: a terminal rewrites one line, anything else gets a line
    per change (finished text, then the partial in brackets)."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self.tty, self.last = self.out.isatty(), None

    def __call__(self, answer: ChunkAnswer) -> None:
        if answer.error:
            print(f"\nchunk {answer.index}: error: {answer.error}", file=sys.stderr)
            return
        shown = (answer.finished, answer.partial)
        if shown == self.last:
            return
        self.last = shown
        line = answer.finished + (f" [{answer.partial}]" if answer.partial else "")
        if self.tty:  # the newest text that fits the terminal's width: one line, rewritten in place
            width = shutil.get_terminal_size().columns - 1
            self.out.write("\r\033[K" + (line if len(line) <= width else "…" + line[-width + 1 :]))
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self.out.flush()
