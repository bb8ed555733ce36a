"""Fairness (issue 20 item 2): a short request is served while a long recording is being transcribed.

The steps serve the requests they hold in turns (`vaani.serving.steps.turns`): `wav2vec2` runs a
share of each request's windows per round, `ctc_decoder` one beam-search piece of each. Before,
a long recording held each step for all of its windows and all of its search, and a short request
sent meanwhile was answered after it. No timing is asserted: the order of the answers is the
behaviour (`make fairness` measures the times).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from vaani.client.api import TranscriptionClient
from vaani.recipe.corpus.recordings import long_recording
from vaani.serving.batching import turn_end
from vaani.serving.beam import LM_DIR, BeamDecoder
from vaani.serving.contract import DECODER, LOGITS, NUM_SAMPLES, SAMPLING_RATE, TRANSCRIPT
from vaani.supervision.process import Ports, TritonProcess, free_port

from .conftest import BUNDLED_MODEL

MINUTES = 4


@pytest.fixture(scope="module")
def recordings() -> tuple[np.ndarray, np.ndarray]:
    """``MINUTES`` minutes of held-out sentences with pauses (repeated), and its first sentence."""
    audio, placed = long_recording(20)
    first = placed[0].clip
    return np.tile(audio, -(-MINUTES * 60 * SAMPLING_RATE // audio.size)), audio[first[0] : first[1]]


@pytest.fixture(scope="module")
def speech_logits(bundled_model, recordings) -> np.ndarray:
    """The bundled model's logits ``[1, frames, vocab]`` of the recording's first minute."""
    long, _ = recordings
    return bundled_model.logits(*bundled_model.features([long[: 60 * SAMPLING_RATE]]))[0][None]


@pytest.fixture(scope="module")
def server(small_repository: Path, tmp_path_factory):
    """The bundled model served with `make serve`'s decoder (beam + LM) and turns."""
    ports = Ports(free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("fairness") / "tritonserver.log"
    with TritonProcess(small_repository, ports, log_file=log) as process:
        process.wait_ready()
        yield process


def _meanwhile(long, short) -> tuple[object, object, bool]:
    """``long()`` started, then ``short()`` once the long one is in the server: both answers, and
    whether the long one still ran when the short one was answered."""
    answered = {}
    runs = threading.Thread(target=lambda: answered.setdefault("long", long()))
    runs.start()
    threading.Event().wait(1.0)  # the long request is in the server: it takes seconds
    short_answer = short()
    still_running = runs.is_alive()
    runs.join()
    return answered["long"], short_answer, still_running


@pytest.mark.server
def test_a_short_request_is_answered_while_a_long_one_runs(server, recordings):
    long, short = recordings
    client = TranscriptionClient(server.grpc_url, protocol="grpc")
    short_alone, long_alone = client.transcribe(short), client.transcribe(long)
    long_answer, short_answer, still_running = _meanwhile(
        lambda: TranscriptionClient(server.grpc_url, protocol="grpc").transcribe(long),
        lambda: client.transcribe(short),
    )
    assert short_answer == short_alone
    assert still_running, "the short request was answered only after the long one"
    assert long_answer == long_alone  # served in turns, transcribed as alone


def _decode(url: str, logits: np.ndarray) -> str:
    """`ctc_decoder` called directly with one utterance's logits."""
    client = grpcclient.InferenceServerClient(url)
    frames = logits.shape[1]
    inputs = [
        grpcclient.InferInput(LOGITS, list(logits.shape), "FP32"),
        grpcclient.InferInput(NUM_SAMPLES, [1, 1], "INT64"),
    ]
    inputs[0].set_data_from_numpy(logits)
    inputs[1].set_data_from_numpy(np.array([[(frames - 1) * 320 + 400]], np.int64))
    text = client.infer(DECODER, inputs).as_numpy(TRANSCRIPT)[0][0].decode()
    client.close()
    return text


@pytest.mark.server
def test_the_decoder_answers_a_short_request_between_the_pieces_of_a_long_one(server, speech_logits):
    """40 minutes of speech logits searched in pieces of one window's frames; a 2 s request sent
    meanwhile is decoded between two of them."""
    long = np.tile(speech_logits, (1, -(-120_000 // speech_logits.shape[1]), 1))[:, :120_000]
    short = speech_logits[:, :100]
    short_alone = _decode(server.grpc_url, short)
    _, short_answer, still_running = _meanwhile(
        lambda: _decode(server.grpc_url, long), lambda: _decode(server.grpc_url, short)
    )
    assert short_answer == short_alone
    assert still_running, "the short request was decoded only after the long one"


def test_a_turn_takes_windows_up_to_its_share_and_one_at_least():
    windows = [16_000, 0, 384_000, 384_000, 100_000]  # samples each; 0: a silent window, not run
    assert turn_end(windows, 0, 400_000) == 3  # the silent window costs nothing
    assert turn_end(windows, 2, 300_000) == 3  # one window at least, even past the share
    assert turn_end(windows, 3, 500_000) == 5
    assert turn_end(windows, 0, 0) == 5  # no share: every window in one turn
    assert turn_end(windows, 5, 400_000) == 5


def test_the_beam_search_yields_between_pieces_and_reads_as_one_call(bundled_model, speech_logits):
    """`ctc_decoder` serves other requests at each yield; what it decodes is what `decode` decodes."""
    logits = speech_logits
    samples = np.array([[60 * SAMPLING_RATE]], np.int64)
    beam = BeamDecoder(bundled_model.spec(), BUNDLED_MODEL / LM_DIR)
    steps, turns = beam.decoding(logits, samples), 0
    while True:
        try:
            next(steps)
            turns += 1
        except StopIteration as done:
            decoded = done.value
            break
    assert turns >= logits.shape[1] // beam.piece_frames  # one piece a turn
    assert [d.text for d in decoded] == [d.text for d in beam.decode(logits, samples)]
