"""One live recognition: a Triton sequence of `asr_stream`, carried over one gRPC stream.

The realtime WebSocket and ``stream=true`` uploads both recognise audio as it comes, so both need
the same few things: a sequence id Triton has not seen, START on the first chunk and END on the last,
a bounded number of chunks in flight (a client that sends faster than Triton answers waits, instead
of piling audio up in the gateway), chunks cut to the sizes `asr_stream` accepts, and each answer
split into the text that is finished (it never changes) and the partial (it may). One asyncio gRPC
stream per recognition: its requests and answers stay in order, and all of them share the gateway's
one channel to Triton.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from vaani.gateway.triton import QUEUE_FULL, TritonBusy, TritonFailed, TritonUnavailable
from vaani.serving import contract

IN_FLIGHT = 4
"""Chunks of one recognition sent and not yet answered; the sender waits for an answer past that."""

UNKNOWN_MODEL = "unknown model"
NOT_READY = "is not ready"
"""Triton's words when the repository has no `asr_stream`, or it is loading: the service is away,
not the client wrong."""

_DONE = object()


class StreamRefused(ValueError):
    """`asr_stream` refused a chunk of this stream (too long, too many streams, dropped for being idle,
    …); the message is Triton's. The stream is over; other streams are not affected."""


FAILURES = (StreamRefused, TritonBusy, TritonUnavailable, TritonFailed)
"""Everything a live recognition raises."""


@dataclass(frozen=True)
class Heard:
    """One answer of `asr_stream`: everything recognised so far, as finished text and a partial."""

    transcript: str
    partial: str
    last: bool
    """The answer to the stream's last chunk: its text is final, partial and all."""

    @property
    def finished(self) -> str:
        """The part of the transcript that never changes again (all of it after the last chunk)."""
        if self.last or not self.partial:
            return self.transcript
        return self.transcript[: len(self.transcript) - len(self.partial)]


class Chunker:
    """Audio in pieces of any length → chunks of ``size`` samples, the rest held until more comes
    or the stream ends (`asr_stream` takes chunks from `STREAM_MIN_CHUNK_SECONDS` up to its cap)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: list[np.ndarray] = []
        self._count = 0

    def push(self, audio: np.ndarray) -> list[np.ndarray]:
        """The whole chunks that ``audio`` completes."""
        self._held.append(audio)
        self._count += len(audio)
        if self._count < self.size:
            return []
        joined = np.concatenate(self._held)
        whole = len(joined) // self.size * self.size
        rest = joined[whole:]
        self._held, self._count = [rest], len(rest)
        return [joined[start : start + self.size] for start in range(0, whole, self.size)]

    def rest(self) -> np.ndarray:
        """What is held, emptied: the stream's last chunk (shorter than ``size``, maybe empty)."""
        held = np.concatenate(self._held) if self._held else np.zeros(0, np.float32)
        self._held, self._count = [], 0
        return held

    @property
    def held(self) -> int:
        return self._count


class LiveRecognition:
    """One sequence of `asr_stream`. `send` chunks in order (the last with ``last=True``), read
    `answers` concurrently; `cancel` ends it early. Create inside the running event loop."""

    def __init__(self, client: aioclient.InferenceServerClient, model: str = contract.STREAM) -> None:
        self.model = model
        self.sequence_id = secrets.randbits(63) or 1  # CORRID is UINT64; 0 means "no sequence"
        self._requests: asyncio.Queue[object] = asyncio.Queue()
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self._sent = 0
        self._ended = False
        self._call = client.stream_infer(self._request_iterator())

    async def _request_iterator(self) -> AsyncIterator[dict]:
        while (request := await self._requests.get()) is not _DONE:
            assert isinstance(request, dict)
            yield request

    async def send(self, chunk: np.ndarray, last: bool = False) -> None:
        """Queue the next chunk (float32, 16 kHz mono); waits while `IN_FLIGHT` chunks are unanswered."""
        if self._ended:
            raise RuntimeError("the stream's last chunk was already sent")
        chunk = np.ascontiguousarray(chunk, dtype=np.float32).reshape(1, -1)
        tensor = grpcclient.InferInput(contract.AUDIO, list(chunk.shape), "FP32")
        tensor.set_data_from_numpy(chunk)
        outputs = [grpcclient.InferRequestedOutput(name) for name in (contract.TRANSCRIPT, contract.PARTIAL)]
        await self._in_flight.acquire()
        request = {"model_name": self.model, "inputs": [tensor], "outputs": outputs}
        request |= {"sequence_id": self.sequence_id, "sequence_start": self._sent == 0, "sequence_end": last}
        self._sent += 1
        self._ended = last
        await self._requests.put(request)
        if last:
            await self._requests.put(_DONE)

    async def answers(self) -> AsyncIterator[Heard]:
        """One `Heard` per chunk sent, in order, until the answer to the last chunk; a refusal or a
        failure is raised as `StreamRefused`, `TritonBusy`, `TritonUnavailable` or `TritonFailed`."""
        received = 0
        try:
            async for result, error in self._call:
                received += 1
                self._in_flight.release()
                if error is not None:
                    raise _translated(error.message() or str(error))
                last = self._ended and received == self._sent
                yield Heard(_text(result, contract.TRANSCRIPT), _text(result, contract.PARTIAL), last)
                if last:
                    return
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                return
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise TritonUnavailable(f"Triton is unavailable: {error.details()}") from None
            raise TritonFailed(f"Triton failed: {error.details()}") from None
        raise TritonFailed("Triton closed the stream before answering every chunk")

    def cancel(self) -> None:
        """End the gRPC stream now (a client that left); Triton drops the sequence after its idle timeout."""
        self._call.cancel()


def _translated(message: str) -> Exception:
    """An error answer inside the stream (Triton gives it no status code): a full queue is load, any
    other is this stream's own problem."""
    if QUEUE_FULL in message:
        return TritonBusy(f"Triton is busy, try again shortly: {message}")
    if UNKNOWN_MODEL in message or NOT_READY in message:
        return TritonUnavailable(f"Triton does not serve {contract.STREAM} now: {message}")
    return StreamRefused(message)


def _text(result: grpcclient.InferResult, name: str) -> str:
    array = result.as_numpy(name)
    if array is None or array.size == 0:
        raise TritonFailed(f"Triton's answer lacks {name}")
    item = array.reshape(-1)[0]
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)


async def recognise(
    client: aioclient.InferenceServerClient, audio: np.ndarray, chunk_samples: int
) -> AsyncIterator[Heard]:
    """A whole recording through `asr_stream` as fast as Triton answers (`IN_FLIGHT` chunks ahead):
    an answer per chunk, the last one final. The chunks are fed while the answers are read."""
    recognition = LiveRecognition(client)
    starts = range(0, max(len(audio), 1), chunk_samples)

    async def feed() -> None:
        for start in starts:
            await recognition.send(audio[start : start + chunk_samples], last=start == starts[-1])

    feeder = asyncio.create_task(feed())
    try:
        async for heard in recognition.answers():
            yield heard
        await feeder
    finally:
        feeder.cancel()
        recognition.cancel()
