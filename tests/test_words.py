"""`WORDS`: word times from the CTC frames, through the running server."""

from __future__ import annotations

import numpy as np
import pytest

from vaani.client.api import TranscriptionClient
from vaani.recipe.corpus import synth

SEED = 2027
UTTERANCES = 4


@pytest.fixture(scope="module")
def speech():
    plan = synth.plan("test", UTTERANCES, seed=SEED)
    return [synth.synthesize(u.text, u.voice, u.speed, u.pitch) for u in plan]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_words_join_to_the_transcript_in_time_order(triton, speech, protocol):
    client = TranscriptionClient(triton.http_url if protocol == "http" else triton.grpc_url, protocol)
    for audio in speech:
        [(text, words)] = client.transcribe_words(audio.reshape(1, -1))
        assert text == client.transcribe(audio), "asking for WORDS changed TRANSCRIPT"
        assert text and " ".join(w["word"] for w in words) == text
        times = [t for w in words for t in (w["start"], w["end"])]
        assert times == sorted(times) and times[0] >= 0 and times[-1] <= len(audio) / 16_000 + 0.02
        print(protocol, [(w["word"], w["start"], w["end"]) for w in words])


def test_batched_words_equal_unbatched(triton, speech):
    client = TranscriptionClient(triton.http_url)
    length = min(len(a) for a in speech[:2])
    pair = np.stack([speech[0][:length], speech[1][:length]])
    alone = [client.transcribe_words(row.reshape(1, -1))[0] for row in pair]
    assert client.transcribe_words(pair) == alone
