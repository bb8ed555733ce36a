"""Word times from the audio (issue 21 item 1): aligned to the frames, placed by the signal's energy.

On held-out sentences joined with 0.8 s pauses, through the bundled model cut and joined as the
server does: every word ends within 0.15 s of its sentence's speech, every sentence's first word
starts within 0.1 s of its onset, and a word the model emits in a pause stays with the speech before
it. Behaviour only: no test here times anything.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vaani.benchmarks.word_times import (
    END_TOLERANCE,
    ONSET_TOLERANCE,
    TimedWord,
    in_seconds,
    score,
    served_logits,
)
from vaani.client.api import TranscriptionClient
from vaani.recipe.corpus import synth
from vaani.recipe.corpus.recordings import long_recording, speech_span
from vaani.serving.alignment import NO_WORD, WordAligner, frame_rms, speech_runs, viterbi, voiced_frames
from vaani.serving.beam import LM_DIR, BeamDecoder
from vaani.serving.contract import SAMPLING_RATE
from vaani.serving.ctc import DecoderInputError, GreedyDecoder, Word
from vaani.subtitles import CueRules, cues

from .conftest import BUNDLED_MODEL

SENTENCES, PAUSE, SEED = 10, 0.8, 2027


@pytest.fixture(scope="module")
def recording():
    return long_recording(SENTENCES, seed=SEED, pauses=(PAUSE, PAUSE))


@pytest.fixture(scope="module")
def spec(bundled_model):
    return bundled_model.spec()


@pytest.fixture(scope="module")
def frames(bundled_model, recording):
    """The recording's logits and breaks as the server makes them, and each frame's best token."""
    audio, _ = recording
    logits, cuts = served_logits(bundled_model, audio, audio.size / SAMPLING_RATE + 1)
    return logits, cuts, logits.argmax(axis=1).astype(np.int32)


@pytest.fixture(scope="module")
def decoded(spec, recording, frames) -> dict[str, tuple[list[Word], np.ndarray | None]]:
    """Each decoder's words, and the logits the aligner gets with them (none for greedy: FRAME_TOKENS)."""
    audio, _ = recording
    logits, cuts, best = frames
    beam = BeamDecoder(spec, BUNDLED_MODEL / LM_DIR)
    return {
        "greedy": (GreedyDecoder(spec).words_ids(best, cuts), None),
        "beam": (beam.decode(logits[None], np.array([[audio.size]]), cuts)[0].words, logits),
    }


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_words_end_with_their_speech_and_start_at_its_onset(spec, recording, frames, decoded, decoder):
    audio, sentences = recording
    _, cuts, best = frames
    words, logits = decoded[decoder]
    before = score(in_seconds(words, spec.frame_seconds), sentences)
    timed = WordAligner(spec).word_times(words, cuts, best, logits, _rms(spec, audio))
    after = score(in_seconds(timed, spec.frame_seconds), sentences)
    print(decoder, "frames:", before, "aligned:", after)
    assert [w.word for w in timed] == [w.word for w in words], "alignment changed the words"
    edges = [e for w in timed for e in (w.start_frame, w.end_frame)]
    assert edges == sorted(edges) and all(w.end_frame > w.start_frame for w in timed)
    assert after.word_overrun <= END_TOLERANCE, after
    assert after.onset_error <= ONSET_TOLERANCE, after
    assert after.outside == 0, after


def test_subtitle_cues_start_and_end_with_their_own_sentence(spec, recording, frames, decoded):
    audio, sentences = recording
    _, cuts, best = frames
    words, _ = decoded["greedy"]
    timed = WordAligner(spec).word_times(words, cuts, best, None, _rms(spec, audio))
    timed = in_seconds(timed, spec.frame_seconds)
    found = cues(timed, CueRules())
    assert len(found) >= SENTENCES
    for cue in found:
        sentence = min(sentences, key=lambda s: abs(s.onset - cue.start) if cue.start < s.end else np.inf)
        assert sentence.onset - ONSET_TOLERANCE <= cue.start and cue.end <= sentence.end + END_TOLERANCE, (
            cue,
            sentence,
        )


def test_viterbi_of_the_greedy_text_is_the_greedy_path(spec, frames, decoded):
    """The best path of all reads the greedy text, so forcing that text finds it again: under greedy
    decoding the step needs no logits to align."""
    logits, cuts, best = frames
    words, _ = decoded["greedy"]
    aligner = WordAligner(spec)
    blanks = np.full_like(best, spec.blank_id)  # reads no word: every piece is searched
    np.testing.assert_array_equal(
        aligner.owners(words, cuts, blanks, logits), aligner.owners(words, cuts, best)
    )


def _brute_force(scores: np.ndarray, targets: list[int]) -> float:
    """The best score of any labelling whose CTC collapse is ``targets`` (label 0 blank)."""
    best = -np.inf
    for labels in itertools.product(range(max(targets) + 1), repeat=scores.shape[0]):
        merged = [label for i, label in enumerate(labels) if label and (i == 0 or labels[i - 1] != label)]
        if merged == targets:
            best = max(best, sum(scores[t, label] for t, label in enumerate(labels)))
    return best


@pytest.mark.parametrize("targets", [[1, 2], [1, 1], [2, 1, 2], [1, 1, 1]])
def test_viterbi_finds_the_best_path_that_reads_its_text(targets):
    rng = np.random.default_rng(len(targets) * 7 + targets[-1])
    for _ in range(20):
        labels = rng.normal(size=(6, 3))  # 6 frames, blank + 2 letters
        scores = labels[:, [0, *targets]]  # column 1 + i scores target i
        path = viterbi(scores, np.array(targets))
        if path is None:
            assert _brute_force(labels, targets) == -np.inf
            continue
        total = sum(scores[t, 0 if i == NO_WORD else 1 + i] for t, i in enumerate(path))
        assert total == pytest.approx(_brute_force(labels, targets))
        emitted = [i for t, i in enumerate(path) if i != NO_WORD and (t == 0 or path[t - 1] != i)]
        assert emitted == list(range(len(targets)))


def test_viterbi_says_when_no_path_fits():
    assert viterbi(np.zeros((2, 3)), np.array([1, 1])) is None  # two equal letters need a blank between


def test_a_word_emitted_in_a_pause_belongs_to_the_speech_before_it(spec):
    """Speech in frames 10-40 and 60-90. ``C``'s letters lie in the pause, just before the second
    sentence; ``B``'s last letter lies in the pause too."""
    owners = np.full(100, NO_WORD)
    letters = {0: [12, 20], 1: [30, 45], 2: [55, 58], 3: [62, 70]}
    for word, at in letters.items():
        owners[at] = word
    words = [Word(text, at[0], at[-1] + 1) for text, at in zip("ABCD", letters.values())]
    placed = WordAligner(spec).place(words, owners, np.array([[10, 40], [60, 90]]))
    a, b, c, d = placed
    assert a.start_frame == 10 and b.start_frame == 30
    assert b.end_frame <= c.start_frame < c.end_frame == 40, "C stays with the first sentence"
    assert d.start_frame == 60 and d.end_frame == 90


def test_speech_without_pauses_keeps_its_words_where_their_letters_are(spec, bundled_model):
    clips = [synth.synthesize(u.text, u.voice, u.speed, u.pitch) for u in synth.plan("test", 3, seed=5)]
    audio = np.concatenate([clip[slice(*speech_span(clip))] for clip in clips])
    values, mask = bundled_model.features([audio])
    best = bundled_model.logits(values, mask)[0][: spec.frames(audio.size)].argmax(axis=1)
    words = GreedyDecoder(spec).words_ids(best)
    placed = WordAligner(spec).word_times(words, [0], best, None, _rms(spec, audio))
    assert len(words) > 8 and placed[0].start_frame <= words[0].start_frame
    assert [w.start_frame for w in placed[1:]] == [w.start_frame for w in words[1:]]


def test_pauses_are_found_under_steady_noise(spec, recording):
    """White noise at 20 dB SNR: 1 % of the loud level lies below the noise, twice its floor does not."""
    audio, sentences = recording
    speech = np.concatenate(
        [audio[round(s.onset * SAMPLING_RATE) : round(s.end * SAMPLING_RATE)] for s in sentences]
    )
    level = np.sqrt((speech**2).mean()) / 10
    noisy = audio + np.random.default_rng(0).normal(0, level, audio.size).astype(np.float32)
    aligner = WordAligner(spec)
    runs = speech_runs(voiced_frames(_rms(spec, noisy)), aligner.pause_frames)
    times = runs * spec.frame_seconds
    assert len(runs) == SENTENCES
    for (start, end), sentence in zip(times, sentences):
        assert (
            abs(start - sentence.onset) <= ONSET_TOLERANCE
            and sentence.onset < end <= sentence.end + END_TOLERANCE
        )


def test_long_garbage_is_aligned_in_bounded_pieces(spec):
    """Random logits (a word every few frames, text unlike the best path): each search covers at most
    `piece_frames` frames or one word, the pieces tile the frames and break where the decoder did."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5_000, spec.vocab_size)).astype(np.float32)
    best = logits.argmax(axis=1)
    cuts = [0, 1_234, 3_000]
    words = GreedyDecoder(spec).words_ids(best, cuts)
    aligner = WordAligner(spec, piece_frames=400)
    pieces = aligner.pieces(words, cuts, best.size)
    assert [p.first for p in pieces[1:]] == [p.last for p in pieces[:-1]] and pieces[-1].last == best.size
    assert {1_234, 3_000} <= {p.first for p in pieces}
    assert all(p.last - p.first <= 400 or p.last_word - p.first_word == 1 for p in pieces)
    assert sum(p.last_word - p.first_word for p in pieces) == len(words)
    swapped = [Word(w.word[::-1], w.start_frame, w.end_frame) for w in words]
    timed = aligner.word_times(swapped, cuts, best, logits)
    assert [w.word for w in timed] == [w.word for w in swapped]


def test_frame_rms_from_a_direct_caller_must_hold_its_frames(spec):
    words, best = [[Word("क", 1, 2)]], [np.array([0, 17, 0])]
    with pytest.raises(DecoderInputError, match="FRAME_RMS"):
        WordAligner(spec).batch(words, [0], best, rms=np.zeros((1, 2), np.float32))


def test_served_words_meet_the_goal(triton, recording):
    """Through the server (greedy: FRAME_TOKENS, and FRAME_RMS from preprocess): the same goal."""
    audio, sentences = recording
    ((text, words),) = TranscriptionClient(triton.http_url).transcribe_words(audio[None])
    assert " ".join(w["word"] for w in words) == text
    timing = score([TimedWord(w["word"], w["start"], w["end"]) for w in words], sentences)
    print(timing)
    assert timing.meets_goal, timing


def _rms(spec, audio: np.ndarray) -> np.ndarray:
    """What `preprocess` sends the decoder for ``audio``."""
    return frame_rms(audio, spec.frames(audio.size), spec.samples_per_frame)
