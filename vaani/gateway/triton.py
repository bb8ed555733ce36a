"""The gateway's one connection to Triton: asyncio gRPC, so concurrent uploads are concurrent requests.

With the blocking client each upload would hold a thread for the whole inference; with the asyncio
client the event loop keeps every upload's request in flight at once, and Triton's dynamic batcher
joins them into shared executions of the acoustic model. One channel carries them all (HTTP/2
multiplexing).

Word times come from the model's optional word output when the served `asr` declares it (read from
its metadata, so a repository built before word timestamps existed still serves text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from vaani.serving import contract
from vaani.subtitles import Word

HEALTH_SECONDS = 2.0
"""How long a health probe waits for Triton before calling it unavailable."""

QUEUE_FULL = "Exceeds maximum queue size"
"""Triton's message (status UNAVAILABLE) when a step's bounded queue refuses a request."""


class TritonUnavailable(RuntimeError):
    """Triton cannot be reached or is not ready (HTTP 503 to the client)."""


class TritonBusy(RuntimeError):
    """A step's queue is full: Triton is up but has more work than it queues (HTTP 429 to the client,
    which should come back shortly, not give up on a server that is down)."""


class AudioRejected(ValueError):
    """Triton refused the audio itself (too short, too long, …); the message is Triton's."""


class TritonFailed(RuntimeError):
    """Triton failed in a way that is not the client's fault (HTTP 500 to the client)."""


@dataclass(frozen=True)
class Transcript:
    """What `asr` said about one recording: the text, and the words with times when it gives them."""

    text: str
    words: tuple[Word, ...] | None


class Triton:
    """`asr` over asyncio gRPC. Create and use inside one running event loop (the app's lifespan)."""

    def __init__(self, url: str, model: str = contract.ENSEMBLE) -> None:
        self.url, self.model = url, model
        self._client = aioclient.InferenceServerClient(url)
        self._outputs: frozenset[str] | None = None

    @property
    def client(self) -> aioclient.InferenceServerClient:
        """The asyncio gRPC client, for what goes beside `asr`: the live streams of `asr_stream`."""
        return self._client

    async def close(self) -> None:
        await self._client.close()

    async def ready(self) -> bool:
        """Triton is up and `asr` is loaded."""
        try:
            return bool(
                await self._client.is_server_ready(client_timeout=HEALTH_SECONDS)
                and await self._client.is_model_ready(self.model, client_timeout=HEALTH_SECONDS)
            )
        except InferenceServerException:
            return False

    async def serves_streams(self) -> bool:
        """Whether Triton serves `asr_stream` now (a repository built before it existed does not)."""
        try:
            return bool(await self._client.is_model_ready(contract.STREAM, client_timeout=HEALTH_SECONDS))
        except InferenceServerException:
            return False

    async def gives_words(self) -> bool:
        """Whether the served `asr` declares the word output; asked once, then remembered."""
        if self._outputs is None:
            try:
                metadata = await self._client.get_model_metadata(self.model, as_json=True)
            except InferenceServerException as error:
                raise self._translated(error) from None
            self._outputs = frozenset(output["name"] for output in metadata.get("outputs", ()))
        return contract.WORDS in self._outputs

    async def transcribe(self, audio: np.ndarray, with_words: bool = True) -> Transcript:
        """One recording (float32, 16 kHz, mono) → its transcript, with its words when ``with_words``
        and the model gives them (an answer that needs no times does not ask for them)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
        tensor = grpcclient.InferInput(contract.AUDIO, list(audio.shape), "FP32")
        tensor.set_data_from_numpy(audio)
        names = [contract.TRANSCRIPT]
        if with_words and await self.gives_words():
            names.append(contract.WORDS)
        outputs = [grpcclient.InferRequestedOutput(name) for name in names]
        try:
            result = await self._client.infer(self.model, [tensor], outputs=outputs)
        except InferenceServerException as error:
            raise self._translated(error) from None
        text = _first_string(result.as_numpy(contract.TRANSCRIPT))
        words = None
        if contract.WORDS in names:
            items = json.loads(_first_string(result.as_numpy(contract.WORDS)))
            words = tuple(Word.from_dict(item) for item in items)
        return Transcript(text, words)

    def _translated(self, error: InferenceServerException) -> Exception:
        """Triton's gRPC status → the gateway's four kinds of failure. When Triton is away its
        repository may change before it returns, so the model's outputs are asked again then."""
        status = error.status() or ""
        message = error.message() or str(error)
        if QUEUE_FULL in message:
            return TritonBusy(f"Triton is busy, try again shortly: {message}")
        if status.endswith(("UNAVAILABLE", "DEADLINE_EXCEEDED", "NOT_FOUND")):
            self._outputs = None
            return TritonUnavailable(f"Triton at the gateway's --triton-url is unavailable: {message}")
        if status.endswith("INVALID_ARGUMENT"):
            return AudioRejected(message)
        return TritonFailed(f"Triton failed: {message}")


def _first_string(array: np.ndarray | None) -> str:
    if array is None or array.size == 0:
        raise TritonFailed("Triton's answer lacks an output the gateway asked for")
    item = array.reshape(-1)[0]
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)
