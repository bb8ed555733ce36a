"""Transcribing audio with a running `asr` ensemble, over HTTP or gRPC.

from vaani.client.api import transcribe
text = transcribe(audio)                 # float32, 16 kHz, mono; localhost:8000 over HTTP
"""

from __future__ import annotations

import json

import numpy as np
from tritonclient.utils import InferenceServerException

from vaani.serving.contract import AUDIO, ENSEMBLE, HOTWORD_WEIGHT, HOTWORDS, SAMPLING_RATE, TRANSCRIPT, WORDS

PROTOCOLS = ("http", "grpc")
DEFAULT_URLS = {"http": "localhost:8000", "grpc": "localhost:8001"}


class TranscriptionError(RuntimeError):
    """The server refused the request; the message is the server's."""


class TranscriptionClient:
    """One connection to the server. Not for sharing between threads: give each thread its own."""

    def __init__(self, url: str | None = None, protocol: str = "http", model: str = ENSEMBLE) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
        self.protocol = protocol
        self.url = url or DEFAULT_URLS[protocol]
        self.model = model
        if protocol == "http":
            import tritonclient.http as module

            self._client = module.InferenceServerClient(self.url, connection_timeout=60, network_timeout=300)
        else:
            import tritonclient.grpc as module

            self._client = module.InferenceServerClient(self.url)
        self._module = module

    def _tensor(self, name: str, array: np.ndarray, dtype: str):
        tensor = self._module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        return tensor

    def _infer(
        self,
        audio: np.ndarray,
        outputs: tuple[str, ...],
        hotwords: list[str] | None = None,
        hotword_weight: float | None = None,
    ) -> dict[str, list[str]]:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ValueError(f"expected [batch, samples]; got shape {audio.shape}")
        inputs = [self._tensor(AUDIO, audio, "FP32")]
        rows = audio.shape[0]
        if hotwords:  # every utterance of the request gets the same hotwords
            words = np.array([[w.encode("utf-8") for w in hotwords]] * rows, dtype=np.object_)
            inputs.append(self._tensor(HOTWORDS, words, "BYTES"))
        if hotword_weight is not None:
            inputs.append(
                self._tensor(HOTWORD_WEIGHT, np.full((rows, 1), hotword_weight, np.float32), "FP32")
            )
        requested = [self._module.InferRequestedOutput(name) for name in outputs]
        try:
            result = self._client.infer(self.model, inputs, outputs=requested)
        except InferenceServerException as error:
            raise TranscriptionError(error.message()) from None
        return {
            name: [item.decode("utf-8") for item in result.as_numpy(name).reshape(-1)] for name in outputs
        }

    def transcribe_batch(
        self, audio: np.ndarray, hotwords: list[str] | None = None, hotword_weight: float | None = None
    ) -> list[str]:
        """``[batch, samples]`` utterances of equal length → one transcript each.

        ``hotwords`` (words or phrases) steer a beam-search decoder towards them, ``hotword_weight``
        says how strongly (server default 10); a greedy server refuses hotwords (`TranscriptionError`).
        """
        return self._infer(audio, (TRANSCRIPT,), hotwords, hotword_weight)[TRANSCRIPT]

    def transcribe_words(
        self, audio: np.ndarray, hotwords: list[str] | None = None, hotword_weight: float | None = None
    ) -> list[tuple[str, list[dict]]]:
        """``[batch, samples]`` → per utterance its transcript and words ``{"word", "start", "end"}`` (s)."""
        result = self._infer(audio, (TRANSCRIPT, WORDS), hotwords, hotword_weight)
        return [(text, json.loads(words)) for text, words in zip(result[TRANSCRIPT], result[WORDS])]

    def transcribe(
        self, audio: np.ndarray, hotwords: list[str] | None = None, hotword_weight: float | None = None
    ) -> str:
        """One mono utterance (float32, 16 kHz, samples in [-1, 1]) → its transcript."""
        return self.transcribe_batch(
            np.asarray(audio, dtype=np.float32).reshape(1, -1), hotwords, hotword_weight
        )[0]

    def is_live(self) -> bool:
        """Whether a server answers at all (connection refused, DNS failure, … give False)."""
        try:
            return bool(self._client.is_server_live())
        except Exception:
            return False

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model))
        except Exception:
            return False

    def close(self) -> None:
        self._client.close()


def transcribe(audio: np.ndarray, url: str | None = None, protocol: str = "http") -> str:
    """Transcribe one utterance with a short-lived client (scripts; use `TranscriptionClient` in loops)."""
    client = TranscriptionClient(url, protocol)
    try:
        return client.transcribe(audio)
    finally:
        client.close()


__all__ = ["SAMPLING_RATE", "TranscriptionClient", "TranscriptionError", "transcribe"]
