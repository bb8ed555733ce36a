"""Recordings of any length through `asr`: windows cut at pauses, joined, sharing the acoustic model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jiwer
import numpy as np
import pytest
import tritonclient.http as httpclient

from vaani.client.api import TranscriptionClient
from vaani.recipe.corpus import synth
from vaani.recipe.corpus.recordings import long_recording
from vaani.scoring import normalize as normalize_text
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import ACOUSTIC, SAMPLING_RATE, SPEC_FILE, version_dir
from vaani.serving.ctc import GreedyDecoder
from vaani.serving.windowing import SILENT, Windowing, cut, join, silence_logits, split

SENTENCES = 60  # about three minutes


@pytest.fixture(scope="module")
def recording():
    return long_recording(SENTENCES)


def _wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer([normalize_text(r) for r in references], [normalize_text(h) for h in hypotheses])


def test_one_long_request_is_as_accurate_as_its_sentences_one_by_one(triton, test_settings, recording):
    """Each sentence sent on its own (the span of the recording its window holds: from where its
    speech starts to where the next one's does) against the whole recording in one request: the
    cutting and joining cost under 1 point of WER."""
    audio, placed = recording
    assert audio.size / SAMPLING_RATE > 150
    spec = AcousticSpec.load(version_dir(triton.repository, ACOUSTIC) / SPEC_FILE)
    windows = test_settings.windowing(spec).windows(audio[None])
    spans = [(w.start, w.end) for w in windows if w.kind != SILENT]
    assert len(spans) == len(placed)  # one window a sentence: cut at every pause
    with ThreadPoolExecutor(4) as pool:
        one_by_one = list(
            pool.map(lambda span: TranscriptionClient(triton.http_url).transcribe(audio[slice(*span)]), spans)
        )
    whole = TranscriptionClient(triton.http_url).transcribe(audio)
    references = [p.text for p in placed]
    sentence_wer = _wer(references, one_by_one)
    recording_wer = _wer([" ".join(references)], [whole])
    print(f"WER sentences one by one {sentence_wer:.2%}, one request {recording_wer:.2%}")
    assert recording_wer <= sentence_wer + 0.01


def _local_logits(audio: np.ndarray, spec: AcousticSpec) -> np.ndarray:
    """A stand-in acoustic model whose every frame depends only on the samples under it, as a
    convolution's would: frame i is one token, picked by the sum of samples [320 i, 320 i + 400)."""
    frames = spec.frames(audio.shape[1])
    step, field = spec.samples_per_frame, spec.receptive_field
    sums = np.array([[row[i * step : i * step + field].sum() for i in range(frames)] for row in audio])
    tokens = (np.abs(sums) * 997).astype(np.int64) % spec.vocab_size
    return np.eye(spec.vocab_size, dtype=np.float32)[tokens]


def test_word_times_across_the_recording(triton, recording):
    """One request: times never go back, each sentence's first word starts within 0.15 s of its
    onset and its last word ends before the next sentence's onset plus 0.15 s; the words are the
    transcript."""
    audio, placed = recording
    ((text, words),) = TranscriptionClient(triton.http_url).transcribe_words(audio[None])
    assert " ".join(w["word"] for w in words) == text
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(w["start"] <= w["end"] for w in words)
    onsets = [p.onset for p in placed] + [audio.size / SAMPLING_RATE]
    for sentence, next_onset in zip(placed, onsets[1:]):
        mine = [w for w in words if sentence.onset - 0.15 <= w["start"] < next_onset - 0.15]
        assert mine, f"no word of {sentence.text!r}"
        assert abs(mine[0]["start"] - sentence.onset) <= 0.15, (sentence, mine[0])
        assert mine[-1]["end"] <= next_onset + 0.15, (sentence, mine[-1])


def test_cuts_inside_words_keep_every_frame_once(triton):
    """Speech with no pause, cut every 1.5 s through words with 0.5 s of context: through a model
    whose frames depend only on their own samples, the joined logits equal a single pass frame by
    frame, so no word can be lost or doubled at a join. (A real model's frames also hear their
    context, and the bundled model does lose words at cuts through running speech; that is why
    the server cuts at pauses where the recording has them.)"""
    spec = AcousticSpec.load(version_dir(triton.repository, ACOUSTIC) / SPEC_FILE)
    plan = synth.plan("test", 3, seed=2030)
    audio = np.concatenate([synth.synthesize(u.text, u.voice, u.speed, u.pitch) for u in plan])[None]
    windows = Windowing.from_seconds(1.5, 0.5, 0.0, spec, SAMPLING_RATE).windows(audio)
    assert len(windows) >= 4 and all(w.kind != SILENT for w in windows)
    pieces = split(cut(audio, windows, lambda window: window), windows)
    joined = join([_local_logits(piece, spec) for piece in pieces], windows)
    np.testing.assert_array_equal(joined, _local_logits(audio, spec))


def test_silence_before_speech_is_not_run_and_decodes_to_nothing(triton):
    spec = AcousticSpec.load(version_dir(triton.repository, ACOUSTIC) / SPEC_FILE)
    plan = Windowing.from_seconds(20.0, 2.0, 0.3, spec, SAMPLING_RATE)
    speech = synth.synthesize("मेरी दादी हर रोज़ देर तक गिरती थी")
    audio = np.concatenate([np.zeros(30 * SAMPLING_RATE, np.float32), speech])[None]
    windows = plan.windows(audio)
    assert windows[0].kind == SILENT and windows[1].start > 29 * SAMPLING_RATE
    logits = silence_logits(1, 10, spec.vocab_size, spec.blank_id)
    assert GreedyDecoder(spec).decode(logits, np.array([[10 * spec.samples_per_frame + 400]]))[0] == ""
    client = TranscriptionClient(triton.http_url)
    assert client.transcribe(audio[0]) == client.transcribe(audio[0, windows[1].start :])


def test_a_recording_reaches_the_acoustic_step_as_one_request(triton, test_settings, recording):
    """All windows of a recording go to the engine in one execution (no request per window)."""
    audio, _ = recording
    statistics = httpclient.InferenceServerClient(triton.http_url)

    def executions() -> tuple[int, int]:
        (model,) = statistics.get_inference_statistics(ACOUSTIC)["model_stats"]
        return model["execution_count"], model["inference_count"]

    before = executions()
    with ThreadPoolExecutor(2) as pool:
        texts = list(
            pool.map(lambda a: TranscriptionClient(triton.http_url).transcribe(a), [audio, audio[::-1]])
        )
    after = executions()
    runs, requests = after[0] - before[0], after[1] - before[1]
    spec = AcousticSpec.load(version_dir(triton.repository, ACOUSTIC) / SPEC_FILE)
    plan = test_settings.windowing(spec)
    windows = sum(len(plan.windows(a[None])) for a in (audio, audio[::-1].copy()))
    assert all(texts) and windows >= 2 * SENTENCES
    assert requests == 2 and runs <= 2 < windows, f"{runs} executions, {requests} requests, {windows} windows"


def test_over_the_maximum_names_the_limit_and_the_setting(triton, test_settings):
    too_long = np.zeros(round(test_settings.max_audio_seconds * SAMPLING_RATE) + 1, np.float32)
    client = TranscriptionClient(triton.http_url)
    with pytest.raises(Exception, match="--max-audio-seconds"):
        client.transcribe(too_long)
    assert client.is_ready()
