"""The `asr` ensemble on a real tritonserver agrees with the FP32 PyTorch reference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tritonclient.http as httpclient

from vaani.build.parity import probe_audio
from vaani.client.api import TranscriptionClient
from vaani.serving.contract import (
    ACOUSTIC,
    AUDIO,
    FRAME_TOKENS,
    NUM_SAMPLES,
    PREPROCESS,
    WINDOW_LAYOUT,
    WINDOWS,
)

CLIPS = probe_audio((0.8, 1.9, 3.1, 4.4, 2.2, 1.3), seed=7)


def _wav2vec2(triton, clip: np.ndarray) -> np.ndarray:
    """``clip`` through `preprocess` then `wav2vec2`, each called directly: the acoustic step's output."""
    client = httpclient.InferenceServerClient(triton.http_url)
    audio = httpclient.InferInput(AUDIO, [1, len(clip)], "FP32")
    audio.set_data_from_numpy(clip[None, :].astype(np.float32))
    windows = client.infer(PREPROCESS, [audio])
    inputs = []
    for name in (WINDOWS, WINDOW_LAYOUT, NUM_SAMPLES):
        array = windows.as_numpy(name)
        tensor = httpclient.InferInput(name, list(array.shape), "FP32" if name == WINDOWS else "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return client.infer(ACOUSTIC, inputs).as_numpy(FRAME_TOKENS)


def test_wav2vec2_step_best_tokens_match_pytorch(triton, bundled_model):
    """Every frame's best token, as the served acoustic step hands it to the greedy decoder."""
    spec = bundled_model.spec()
    for clip in (CLIPS[0], CLIPS[3], CLIPS[1]):
        values, mask = bundled_model.features([clip])
        expected = bundled_model.logits(values, mask)[0, : spec.frames(len(clip))].argmax(-1)
        np.testing.assert_array_equal(_wav2vec2(triton, clip)[0], expected)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_transcripts_equal_pytorch_reference(triton, bundled_model, protocol):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    client = TranscriptionClient(url, protocol)
    reference = [bundled_model.transcribe([clip])[0] for clip in CLIPS]
    assert [client.transcribe(clip) for clip in CLIPS] == reference
    assert any(reference), "the reference transcripts are all empty: the comparison would prove nothing"


def test_one_request_of_several_utterances(triton, bundled_model):
    pair = np.stack([CLIPS[2], CLIPS[2][::-1].copy()])
    client = TranscriptionClient(triton.http_url)
    assert client.transcribe_batch(pair) == [bundled_model.transcribe([row])[0] for row in pair]


def _executions(model: str, triton) -> tuple[int, int]:
    stats = httpclient.InferenceServerClient(triton.http_url).get_inference_statistics(model)
    entry = stats["model_stats"][0]
    return int(entry["execution_count"]), int(entry["inference_count"])


def test_mixed_lengths_share_an_execution(triton):
    clips = probe_audio((0.7, 1.1, 1.6, 2.3, 2.9, 3.4, 4.0, 4.7), seed=11)
    alone = [TranscriptionClient(triton.http_url).transcribe(clip) for clip in clips]
    executions_before, inferences_before = _executions(ACOUSTIC, triton)
    results: list[str | None] = [None] * len(clips)
    barrier = threading.Barrier(len(clips))

    def send(index: int) -> None:
        client = TranscriptionClient(triton.http_url)
        barrier.wait()
        results[index] = client.transcribe(clips[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    executions_after, inferences_after = _executions(ACOUSTIC, triton)
    assert results == alone
    assert inferences_after - inferences_before == len(clips)
    assert executions_after - executions_before < len(clips)
