"""`benchmarks/decoder_step.py`: the greedy `ctc_decoder` called directly with what the ensemble sends it.

Behaviour only (`python -m vaani.benchmarks.decoder_step` measures the times): the requests it sends
are the ensemble's, so the step's transcripts equal `asr`'s, and a load's figures count the requests
it sent and the step's own executions.
"""

from __future__ import annotations

import pytest

from vaani.benchmarks import decoder_step
from vaani.recipe.corpus import synth
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import (
    ACOUSTIC,
    FRAME_RMS,
    FRAME_TOKENS,
    NUM_SAMPLES,
    SAMPLING_RATE,
    SPEC_FILE,
    TRANSCRIPT,
    WORDS,
    version_dir,
)


@pytest.fixture(scope="module")
def requests(triton):
    plan = synth.plan("test", 3, seed=2028)
    speech = [synth.synthesize(u.text, u.voice, u.speed, u.pitch) for u in plan]
    audio = decoder_step.clips(speech, [2.0, 7.5])
    return audio, *decoder_step.decoder_inputs(triton.grpc_url, audio)


def test_the_decoder_gets_what_the_ensemble_sends_it(triton, requests):
    audio, inputs, asr_texts = requests
    spec = AcousticSpec.load(version_dir(triton.repository, ACOUSTIC) / SPEC_FILE)
    assert [a.size for a in audio] == [2 * SAMPLING_RATE, 7.5 * SAMPLING_RATE]
    for clip, sent in zip(audio, inputs):
        assert sent[NUM_SAMPLES].tolist() == [[clip.size]]
        assert sent[FRAME_TOKENS].shape == sent[FRAME_RMS].shape == (1, spec.frames(clip.size))
    assert all(asr_texts)
    assert decoder_step.transcripts(triton.grpc_url, inputs, [TRANSCRIPT]) == asr_texts
    with_words = decoder_step.transcripts(triton.grpc_url, inputs, [TRANSCRIPT, WORDS])
    assert [t.split(" | ")[0] for t in with_words] == asr_texts


def test_a_load_counts_the_requests_it_sent(triton, requests):
    _, inputs, _ = requests
    run = decoder_step.measure(triton, inputs, [TRANSCRIPT], concurrency=4, seconds=1.0)
    assert run["requests"] > 0
    # Triton may record an execution just after its answers reached the client
    assert run["requests"] - 4 <= run["step_requests"] <= run["requests"]
    assert 1 <= run["requests_per_execution"] <= 4
    assert run["step_cpu_ms_per_request"] > 0 and run["latency_p99_ms"] >= run["latency_p50_ms"] > 0
