"""Every kind of bad audio gets an error that names it; the server stays ready for everyone else."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from vaani.build.parity import probe_audio
from vaani.serving.contract import AUDIO, ENSEMBLE, SAMPLING_RATE, TRANSCRIPT

GOOD = probe_audio((1.5,), seed=3)[0].reshape(1, -1)


def _nan() -> np.ndarray:
    audio = GOOD.copy()
    audio[0, 100] = np.nan
    return audio


def _inf() -> np.ndarray:
    audio = GOOD.copy()
    audio[0, -1] = np.inf
    return audio


BAD = {
    "empty": (np.zeros((1, 0), np.float32), "FP32", "empty"),
    "too short": (np.zeros((1, 100), np.float32), "FP32", "too short"),
    "nan": (_nan(), "FP32", "NaN or Inf"),
    "inf": (_inf(), "FP32", "NaN or Inf"),
    "too long": (np.zeros((1, SAMPLING_RATE * 301), np.float32), "FP32", "--max-audio-seconds"),
    "wrong dtype": (GOOD.astype(np.float64), "FP64", "FP32"),
    "wrong rank": (GOOD.reshape(1, 1, -1), "FP32", "unexpected shape"),
}


def _infer(url: str, audio: np.ndarray, datatype: str):
    client = httpclient.InferenceServerClient(url)
    tensor = httpclient.InferInput(AUDIO, list(audio.shape), datatype)
    tensor.set_data_from_numpy(audio)
    return client.infer(ENSEMBLE, [tensor]).as_numpy(TRANSCRIPT)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_and_server_stays_ready(triton, case):
    audio, datatype, message = BAD[case]
    with pytest.raises(InferenceServerException, match=message) as refused:
        _infer(triton.http_url, audio, datatype)
    assert refused.value.status() == "400", "bad input is the client's error, not the server's"
    client = httpclient.InferenceServerClient(triton.http_url)
    assert client.is_server_ready()
    assert client.is_model_ready(ENSEMBLE)
    assert _infer(triton.http_url, GOOD, "FP32").shape == (1, 1)


def test_good_requests_succeed_beside_bad_ones(triton):
    outcomes: dict[str, object] = {}

    def send(name: str, audio: np.ndarray, datatype: str) -> None:
        try:
            outcomes[name] = _infer(triton.http_url, audio, datatype)
        except InferenceServerException as error:
            outcomes[name] = error

    jobs = [(f"good-{i}", GOOD, "FP32") for i in range(4)] + [(name, *BAD[name][:2]) for name in BAD]
    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    good = [outcomes[f"good-{i}"] for i in range(4)]
    assert all(isinstance(result, np.ndarray) for result in good)
    assert len({bytes(result[0, 0]) for result in good}) == 1
    assert all(isinstance(outcomes[name], InferenceServerException) for name in BAD)
