"""Subtitles from timed words: cues split at pauses and at a maximum length and duration, as SRT or VTT.

A CTC model gives times per word, not per sentence, so cues are made here: a new cue starts where
the speaker pauses (the natural break a viewer expects) or where the cue would grow too long to
read (characters) or stay too long on screen (seconds). The gateway's `srt`/`vtt`/`verbose_json`
answers and `vaani transcribe --format srt|vtt` use the same rules, so a file gets the same cues
however it was transcribed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """One recognised word and when it was spoken, in seconds from the start of the audio."""

    word: str
    start: float
    end: float

    @classmethod
    def from_dict(cls, item: Mapping[str, object]) -> Word:
        """``{"word", "start", "end"}``: the shape of `asr`'s word output and of OpenAI's words."""
        return cls(str(item["word"]), float(item["start"]), float(item["end"]))  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {"word": self.word, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Cue:
    """One subtitle: text on screen from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class CueRules:
    """Where cues break. The defaults follow common subtitle practice: two short lines' worth of
    characters, at most about 6 s on screen, and a new cue after a pause a listener notices."""

    max_pause: float = 0.5
    """Seconds of silence between two words that end a cue."""
    max_chars: int = 42
    """Characters of text in one cue (a single longer word still gets a cue of its own)."""
    max_seconds: float = 6.0
    """Seconds from a cue's first word's start to its last word's end."""

    def __post_init__(self) -> None:
        if self.max_pause < 0 or self.max_chars < 1 or self.max_seconds <= 0:
            raise ValueError(f"cue rules need max_pause >= 0, max_chars >= 1, max_seconds > 0; got {self}")


def cues(words: Iterable[Word], rules: CueRules = CueRules()) -> list[Cue]:
    """Group words, in order, into cues that break at pauses, at ``max_chars`` and at ``max_seconds``."""
    groups: list[list[Word]] = []
    for word in words:
        current = groups[-1] if groups else None
        if current is not None and not _breaks(current, word, rules):
            current.append(word)
        else:
            groups.append([word])
    return [Cue(group[0].start, group[-1].end, " ".join(w.word for w in group)) for group in groups]


def _breaks(current: Sequence[Word], word: Word, rules: CueRules) -> bool:
    """Whether ``word`` has to start a new cue instead of joining ``current``."""
    pause = word.start - current[-1].end
    chars = sum(len(w.word) for w in current) + len(current) + len(word.word)
    seconds = word.end - current[0].start
    return pause > rules.max_pause or chars > rules.max_chars or seconds > rules.max_seconds


def _timestamp(seconds: float, separator: str) -> str:
    milliseconds = max(0, round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{fraction:03d}"


def to_srt(items: Iterable[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    blocks = [
        f"{index}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n{cue.text}\n"
        for index, cue in enumerate(items, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(items: Iterable[Cue]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    blocks = [f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n{cue.text}\n" for cue in items]
    return "\n".join(["WEBVTT\n", *blocks])
