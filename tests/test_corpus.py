"""The synthetic Hindi corpus: its text, its splits, and speech from espeak-ng."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vaani.cli import main
from vaani.errors import UserFacingError
from vaani.recipe import hindi
from vaani.recipe.corpus import hindi_text, synth
from vaani.serving.contract import SAMPLING_RATE

ROOT = Path(__file__).resolve().parents[1]
PRECOMPOSED_NUKTA_LETTERS = {chr(code) for code in range(0x0958, 0x0960)}


@pytest.fixture(scope="module")
def vocabulary() -> set[str]:
    return hindi_text.vocabulary() | hindi_text.base_words()


def test_at_least_300_words(vocabulary):
    assert len(hindi_text.base_words()) >= 300
    assert len(hindi_text.vocabulary()) >= 300


def test_words_use_only_the_model_alphabet(vocabulary):
    outside = {word for word in vocabulary if not all(ch in hindi.LETTERS for ch in word)}
    assert not outside
    assert not any(ch in PRECOMPOSED_NUKTA_LETTERS for word in vocabulary for ch in word)
    assert any("़" in word for word in vocabulary), "nukta words (ज़, ड़, फ़ ...) are part of the vocabulary"


def test_nukta_is_a_separate_mark():
    assert "बाज़ार" in hindi_text.PLACES
    assert [unicodedata.name(ch) for ch in "ज़"] == ["DEVANAGARI LETTER JA", "DEVANAGARI SIGN NUKTA"]


@pytest.mark.parametrize("split", hindi_text.SPLITS)
def test_sentences_have_2_to_12_words(split):
    for sentence in hindi_text.sentences(split, 1000, seed=3):
        assert hindi_text.MIN_WORDS <= len(sentence.split()) <= hindi_text.MAX_WORDS
        assert sentence == " ".join(sentence.split())
        assert hindi.is_transcribable(sentence)


def test_splits_share_no_sentence():
    drawn = {
        split: set(hindi_text.sentences(split, 2000 if split == "train" else 300))
        for split in hindi_text.SPLITS
    }
    assert not drawn["train"] & drawn["validation"]
    assert not drawn["train"] & drawn["test"]
    assert not drawn["validation"] & drawn["test"]
    for split, sentences in drawn.items():
        assert {hindi_text.split_of(s) for s in sentences} == {split}


def test_test_sentences_are_new_combinations_of_training_words():
    train = hindi_text.sentences("train", 40_000)
    seen = {word for sentence in train for word in sentence.split()}
    test_words = [word for sentence in hindi_text.sentences("test", 400) for word in sentence.split()]
    unseen = [word for word in test_words if word not in seen]
    assert len(unseen) <= 0.01 * len(test_words), unseen


def test_generation_is_deterministic():
    assert hindi_text.sentences("validation", 50, seed=5) == hindi_text.sentences("validation", 50, seed=5)
    assert hindi_text.sentences("validation", 50, seed=5) != hindi_text.sentences("validation", 50, seed=6)
    assert synth.plan("test", 20, seed=1) == synth.plan("test", 20, seed=1)


def test_plan_draws_known_voices_and_ranges():
    for utterance in synth.plan("train", 200, seed=2):
        assert utterance.voice in synth.VOICES
        assert synth.SPEED_WPM[0] <= utterance.speed <= synth.SPEED_WPM[1]
        assert synth.PITCH[0] <= utterance.pitch <= synth.PITCH[1]
    assert len({u.voice for u in synth.plan("train", 200, seed=2)}) > 8


def test_bundled_test_plan_is_what_vaani_corpus_draws():
    committed = synth.read_plan(ROOT / "models" / "tiny-hindi" / "testset.jsonl")
    assert committed == synth.plan("test", len(committed), seed=0)


def test_out_of_vocabulary_plan_is_outside_the_training_text(vocabulary):
    """benchmarks/oov-plan.jsonl (`make oovset`): 20 sentences in 4 voices, most words never trained on."""
    plan = synth.read_plan(ROOT / "benchmarks" / "oov-plan.jsonl")
    assert len(plan) == 20 and len({u.voice for u in plan}) == 4
    assert all(u.voice in synth.VOICES for u in plan)
    unigrams = set(
        (ROOT / "models" / "tiny-hindi" / "language_model" / "unigrams.txt").read_text("utf-8").split()
    )
    words = [w for u in plan for w in u.text.split()]
    assert sum(w not in unigrams for w in words) / len(words) >= 0.6
    assert sum(w not in vocabulary for w in words) / len(words) >= 0.6
    assert all(any(w not in unigrams for w in u.text.split()) for u in plan)


def test_synthesize_gives_16khz_float32():
    audio = synth.synthesize("मेरा भाई बाज़ार जाता है", voice="hi+f3", speed=160, pitch=40)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.8 < len(audio) / synth.SAMPLING_RATE < 5.0
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.1
    again = synth.synthesize("मेरा भाई बाज़ार जाता है", voice="hi+f3", speed=160, pitch=40)
    np.testing.assert_array_equal(audio, again)


def test_vaani_corpus_writes_audio_and_manifests(tmp_path):
    output = tmp_path / "corpus"
    args = ["corpus", "--output", str(output), "--split", "validation", "--split", "test"]
    assert main([*args, "--validation-size", "3", "--test-size", "2", "--workers", "2"]) == 0
    for split, count in (("validation", 3), ("test", 2)):
        records = [json.loads(line) for line in (output / f"{split}.jsonl").read_text("utf-8").splitlines()]
        assert len(records) == count
        for record in records:
            assert not Path(record["audio_filepath"]).is_absolute()  # relative to the manifest: movable
            audio, rate = soundfile.read(output / record["audio_filepath"], dtype="float32")
            assert rate == SAMPLING_RATE and audio.ndim == 1
            assert record["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
            assert hindi_text.split_of(record["text"]) == split
    info = json.loads((output / "corpus.json").read_text("utf-8"))
    assert info["sizes"] == {"validation": 3, "test": 2}


def test_plan_file_is_spoken_again_exactly(tmp_path):
    plan_file = tmp_path / "plan.jsonl"
    synth.write_plan(synth.plan("test", 2, seed=9), plan_file)
    assert main(["corpus", "--output", str(tmp_path / "a"), "--split", "test", "--plan", str(plan_file)]) == 0
    records = [json.loads(line) for line in (tmp_path / "a" / "test.jsonl").read_text("utf-8").splitlines()]
    assert [synth.Utterance.from_json(json.dumps(r)) for r in records] == synth.read_plan(plan_file)


def test_missing_espeak_names_the_package(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(UserFacingError, match="espeak-ng"):
        synth.synthesize("राम घर जाता है")
