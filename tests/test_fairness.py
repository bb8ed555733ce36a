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

from vaani.client.api import TranscriptionClient
from vaani.recipe.corpus.recordings import long_recording
from vaani.serving.batching import turn_end
from vaani.serving.beam import LM_DIR, BeamDecoder
from vaani.supervision.process import Ports, TritonProcess, free_port

from .conftest import BUNDLED_MODEL

MINUTES = 4


@pytest.fixture(scope="module")
def recordings() -> tuple[np.ndarray, np.ndarray]:
    """``MINUTES`` minutes of held-out sentences with pauses (repeated), and its first sentence."""
    audio, placed = long_recording(20)
    first = placed[0].clip
    return np.tile(audio, -(-MINUTES * 60 * 16_000 // audio.size)), audio[first[0] : first[1]]


@pytest.mark.server
def test_a_short_request_is_answered_while_a_long_one_runs(
    small_repository: Path, tmp_path: Path, recordings
):
    long, short = recordings
    ports = Ports(free_port(), free_port(), free_port())
    with TritonProcess(small_repository, ports, log_file=tmp_path / "tritonserver.log") as server:
        server.wait_ready()
        client = TranscriptionClient(server.grpc_url, protocol="grpc")
        short_alone, long_alone = client.transcribe(short), client.transcribe(long)
        answered: dict[str, str] = {}

        def transcribe_long() -> None:
            answered["long"] = TranscriptionClient(server.grpc_url, protocol="grpc").transcribe(long)

        runs = threading.Thread(target=transcribe_long)
        runs.start()
        threading.Event().wait(1.0)  # the long request is in the server: its windows take seconds
        assert client.transcribe(short) == short_alone
        still_running = runs.is_alive()
        runs.join()
        assert still_running, "the short request was answered only after the long one"
        assert answered["long"] == long_alone  # served in turns, transcribed as alone


def test_a_turn_takes_windows_up_to_its_share_and_one_at_least():
    windows = [16_000, 0, 384_000, 384_000, 100_000]  # samples each; 0: a silent window, not run
    assert turn_end(windows, 0, 400_000) == 3  # the silent window costs nothing
    assert turn_end(windows, 2, 300_000) == 3  # one window at least, even past the share
    assert turn_end(windows, 3, 500_000) == 5
    assert turn_end(windows, 0, 0) == 5  # no share: every window in one turn
    assert turn_end(windows, 5, 400_000) == 5


def test_the_beam_search_yields_between_pieces_and_reads_as_one_call(bundled_model, recordings):
    """`ctc_decoder` serves other requests at each yield; what it decodes is what `decode` decodes."""
    long, _ = recordings
    logits = bundled_model.logits(*bundled_model.features([long[: 60 * 16_000]]))[0][None]
    samples = np.array([[60 * 16_000]], np.int64)
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
