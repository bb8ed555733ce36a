"""Subtitles from timed words: cues split at pauses and at a maximum length and duration, as SRT or VTT.

A CTC model gives times per word, not per sentence, so cues are made here: a new cue starts where
the speaker pauses (the natural break a viewer expects) or where the cue would grow too long to
read (characters) or stay too long on screen (seconds). The gateway's `srt`/`vtt`/`verbose_json`
answers and `vaani transcribe --format srt|vtt` use the same rules, so a file gets the same cues
however it was transcribed.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from vaani.errors import UserFacingError


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
    characters, at most about 6 s on screen, and a new cue after a pause a listener notices.

    Every command that makes cues takes the same options, spelled once here from the field names
    (`--cue-max-pause`, `--cue-max-chars`, `--cue-max-seconds`): `add_arguments` declares them and
    `from_args` reads them back, so `vaani transcribe` and `vaani gateway` cannot drift apart.
    """

    max_pause: float = field(
        default=0.5, metadata={"help": "seconds of silence between two words that end a cue"}
    )
    max_chars: int = field(
        default=42,
        metadata={"help": "characters in one cue (a single longer word still gets a cue of its own)"},
    )
    max_seconds: float = field(
        default=6.0, metadata={"help": "seconds from a cue's first word's start to its last word's end"}
    )

    def __post_init__(self) -> None:
        if self.max_pause < 0 or self.max_chars < 1 or self.max_seconds <= 0:
            raise ValueError(f"cue rules need max_pause >= 0, max_chars >= 1, max_seconds > 0; got {self}")

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """Declare one option per rule on ``parser`` (a parser or an argument group)."""
        for rule in fields(cls):
            dest = _dest(rule.name)
            parser.add_argument(
                "--" + dest.replace("_", "-"),
                dest=dest,
                type=type(rule.default),
                default=rule.default,
                help=f"{rule.metadata['help']} (default %(default)s)",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CueRules:
        """The rules `add_arguments`' options asked for; impossible values are the user's error (exit 2)."""
        try:
            return cls(**{rule.name: getattr(args, _dest(rule.name)) for rule in fields(cls)})
        except ValueError as error:
            raise UserFacingError(str(error)) from None


def _dest(rule: str) -> str:
    """Where a rule's option lands in the parsed arguments: ``max_pause`` → ``cue_max_pause``."""
    return f"cue_{rule}"


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
