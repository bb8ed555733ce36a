"""Cues from timed words: breaks at pauses, length and duration; SRT and VTT that subtitle libraries read."""

from __future__ import annotations

import argparse
import io

import pytest
import srt
import webvtt

from vaani.errors import UserFacingError
from vaani.subtitles import Cue, CueRules, Word, cues, to_srt, to_vtt


def _words(*spans: tuple[str, float, float]) -> list[Word]:
    return [Word(*span) for span in spans]


def test_a_pause_longer_than_max_pause_starts_a_new_cue():
    words = _words(("एक", 0.0, 0.3), ("दो", 0.35, 0.6), ("तीन", 1.5, 1.8), ("चार", 1.85, 2.1))
    assert cues(words, CueRules(max_pause=0.5)) == [Cue(0.0, 0.6, "एक दो"), Cue(1.5, 2.1, "तीन चार")]
    assert len(cues(words, CueRules(max_pause=1.0))) == 1


def test_cues_break_at_max_chars_and_max_seconds():
    words = [Word("शब्द", 0.4 * i, 0.4 * i + 0.3) for i in range(10)]  # 4 characters each, no pauses
    by_chars = cues(words, CueRules(max_chars=14))  # three words and two spaces fit, four do not
    assert [c.text.count(" ") + 1 for c in by_chars] == [3, 3, 3, 1]
    assert all(len(c.text) <= 14 for c in by_chars)
    by_seconds = cues(words, CueRules(max_seconds=1.0))
    assert all(c.end - c.start <= 1.0 for c in by_seconds) and len(by_seconds) == 5  # 0.0-0.7, 0.8-1.5, …
    assert " ".join(c.text for c in by_seconds) == " ".join(w.word for w in words)


def test_a_word_longer_than_max_chars_gets_a_cue_of_its_own():
    words = _words(("क", 0.0, 0.1), ("अनुसंधानकर्ता", 0.2, 0.9), ("ख", 1.0, 1.1))
    assert [c.text for c in cues(words, CueRules(max_chars=5))] == ["क", "अनुसंधानकर्ता", "ख"]


def test_no_words_no_cues_and_rules_are_checked():
    assert cues([]) == []
    assert to_srt([]) == ""
    assert to_vtt([]).startswith("WEBVTT")
    with pytest.raises(ValueError):
        CueRules(max_chars=0)


def test_srt_and_vtt_parse_and_hold_every_word_in_order():
    words = [Word(f"w{i}", 0.5 * i + (2.0 if i >= 6 else 0.0), 0.5 * i + 0.4 + (2.0 if i >= 6 else 0.0))
             for i in range(12)]  # fmt: skip
    made = cues(words, CueRules(max_pause=1.0, max_chars=20, max_seconds=3600.5))
    parsed_srt = list(srt.parse(to_srt(made)))
    parsed_vtt = webvtt.from_buffer(io.StringIO(to_vtt(made)))
    assert [c.content for c in parsed_srt] == [c.text for c in made]
    assert [c.text for c in parsed_vtt] == [c.text for c in made]
    assert " ".join(c.content for c in parsed_srt).split() == [w.word for w in words]
    for cue, parsed in zip(made, parsed_srt, strict=True):
        assert parsed.start.total_seconds() == pytest.approx(cue.start, abs=1e-3)
        assert parsed.end.total_seconds() == pytest.approx(cue.end, abs=1e-3)
    assert [c.start_in_seconds for c in parsed_vtt] == [int(c.start) for c in made]


def test_timestamps_past_an_hour():
    cue = Cue(3723.456, 3725.0, "देर")
    assert "01:02:03,456 --> 01:02:05,000" in to_srt([cue])
    assert "01:02:03.456 --> 01:02:05.000" in to_vtt([cue])


def test_rules_from_the_command_line_and_their_defaults():
    parser = argparse.ArgumentParser()
    CueRules.add_arguments(parser)
    assert CueRules.from_args(parser.parse_args([])) == CueRules()
    argv = ["--cue-max-pause", "0.25", "--cue-max-chars", "30", "--cue-max-seconds", "4"]
    assert CueRules.from_args(parser.parse_args(argv)) == CueRules(0.25, 30, 4.0)
    with pytest.raises(UserFacingError, match="max_seconds > 0"):
        CueRules.from_args(parser.parse_args(["--cue-max-seconds", "0"]))
