"""Greedy CTC decoding of the `ctc_decoder` step, with word times from the CTC frames."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vaani.serving.acoustic import AcousticSpec


@dataclass(frozen=True)
class Word:
    """One word and its span in frames: from its first character's first frame to after its last one's."""

    word: str
    start_frame: int
    end_frame: int


def words_json(words: list[Word], frame_seconds: float) -> str:
    """The `WORDS` tensor's UTF-8 JSON: ``[{"word", "start", "end"}]`` in seconds from the audio's start."""
    return json.dumps(
        [
            {
                "word": w.word,
                "start": round(w.start_frame * frame_seconds, 3),
                "end": round(w.end_frame * frame_seconds, 3),
            }
            for w in words
        ],
        ensure_ascii=False,
    )


def transcript(words: list[Word]) -> str:
    """The text of ``words``, single spaces between them: every decoder's transcript is its words'."""
    return " ".join(w.word for w in words)


def segments(frames: int, breaks: Sequence[int]) -> list[tuple[int, int]]:
    """``(first, one past the last)`` frame of each part of ``frames`` frames between ``breaks``, in order.

    ``breaks`` are frames where a long recording was cut at a pause: greedy and beam decoding both
    decode each part on its own, so no repeat is merged and no word runs across a break.
    """
    bounds = [b for b in sorted(set(breaks) | {0}) if b < frames]
    return list(zip(bounds, [*bounds[1:], frames]))


def words_from_pieces(pieces: list[tuple[str, int, int]]) -> list[Word]:
    """Join ``(text, start_frame, end_frame)`` pieces into words, split at whitespace.

    Split as ``str.split`` splits the pieces' text, so the words' `transcript` is that text with
    its whitespace runs made single spaces, whatever the tokens hold.
    """
    words: list[Word] = []
    chars: list[str] = []
    start = end = 0
    for text, first, last in pieces:
        for char in text:
            if char.isspace():
                if chars:
                    words.append(Word("".join(chars), start, end))
                    chars = []
                continue
            if not chars:
                start = first
            chars.append(char)
            end = last
    if chars:
        words.append(Word("".join(chars), start, end))
    return words


def best_tokens(logits: np.ndarray) -> np.ndarray:
    """``[rows, frames, vocab]`` logits → ``[rows, frames]`` INT32: the argmax greedy decoding reads."""
    return logits.argmax(axis=-1).astype(np.int32)


class GreedyDecoder:
    """Best path: argmax per frame, merge repeats, then drop blanks and special tokens.

    ``|`` becomes a space; words come out separated by single spaces. The order matters:
    ``क <pad> क`` is two letters. (transformers' ``decode(skip_special_tokens=True)`` drops
    ``<pad>`` before merging and returns one; its plain ``decode`` agrees with this.)
    """

    def __init__(self, spec: AcousticSpec) -> None:
        self._spec = spec
        dropped = set(spec.special_ids) | {spec.blank_id}
        self._text = [
            "" if index in dropped else (" " if token == spec.word_delimiter else token)
            for index, token in enumerate(spec.tokens)
        ]
        self._leaves_text = np.array([bool(text) for text in self._text])

    def _runs(self, ids: np.ndarray, breaks: Sequence[int] = (0,)) -> list[tuple[str, int, int]]:
        """Runs of equal ids as ``(text, first frame, frame after the last)``, blanks left out.

        At each of ``breaks`` (frames where a long recording was cut at a pause) the runs start
        afresh after a word break: a repeat is not merged and a word does not run across it.
        The runs are found for the whole utterance at once, in numpy; only the runs that leave text
        reach Python (on speech most frames are blanks: a loop over every run cost more than the rest
        of a request's decoding).
        """
        firsts = [first for first, _ in segments(ids.size, breaks)]
        if not firsts:
            return []
        new = np.ones(ids.size, dtype=bool)
        new[1:] = ids[1:] != ids[:-1]
        new[firsts] = True  # a run never crosses a break, even where the token repeats
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], ids.size)
        kept = self._leaves_text[ids[starts]]
        pieces: list[tuple[str, int, int]] = []
        marks = iter(firsts)
        mark = next(marks)
        for token, start, end in zip(ids[starts[kept]].tolist(), starts[kept].tolist(), ends[kept].tolist()):
            while mark is not None and mark <= start:
                pieces.append((" ", mark, mark))
                mark = next(marks, None)
            pieces.append((self._text[token], start, end))
        while mark is not None:
            pieces.append((" ", mark, mark))
            mark = next(marks, None)
        return pieces

    def words_ids(self, ids: np.ndarray, breaks: Sequence[int] = (0,)) -> list[Word]:
        """One utterance's words and their frame spans from its frames' token ids, afresh at each break."""
        return words_from_pieces(self._runs(ids, breaks))

    def decode_ids(self, ids: np.ndarray, breaks: Sequence[int] = (0,)) -> str:
        """One utterance's transcript: the `transcript` of its `words_ids`, the one text a decoder makes."""
        return transcript(self.words_ids(ids, breaks))

    def best_paths(self, logits: np.ndarray, num_samples: np.ndarray) -> list[np.ndarray]:
        """Each utterance's per-frame argmax over its own frames (frames past its length are padding)."""
        return self.own_frames(best_tokens(logits), num_samples)

    def own_frames(self, tokens: np.ndarray, num_samples: np.ndarray) -> list[np.ndarray]:
        """Each utterance's row of ``tokens`` ``[batch, frames]`` cut to its own frames."""
        return [row[: self._spec.frames(int(n))] for row, n in zip(tokens, num_samples.reshape(-1))]

    def decode(self, logits: np.ndarray, num_samples: np.ndarray, breaks: Sequence[int] = (0,)) -> list[str]:
        """Decode a batch ``[batch, frames, vocab]``, afresh at each of ``breaks`` (frames)."""
        return [self.decode_ids(ids, breaks) for ids in self.best_paths(logits, num_samples)]


class DecoderInputError(ValueError):
    """A request's decoder inputs are malformed; the message names the problem."""


MAX_HOTWORDS = 100
MAX_HOTWORD_CHARS = 100
MAX_HOTWORD_WEIGHT = 100.0
DEFAULT_HOTWORD_WEIGHT = 10.0
"""How strongly the beam favours HOTWORDS when a request sends no HOTWORD_WEIGHT (pyctcdecode's default)."""


def check_shape(spec: AcousticSpec, scores: np.ndarray, max_frames: int) -> None:
    """``LOGITS`` ``[batch, frames, vocab]`` FP32 or ``FRAME_TOKENS`` ``[batch, frames]`` INT32, capped.

    Read from the shape alone, before any value is: the cap is what the repository's longest audio
    (``--max-audio-seconds``) makes, so no direct call asks the decoder for more work than a recording can.
    """
    if scores.dtype.kind in "iu":
        if scores.ndim != 2 or scores.dtype != np.int32:
            raise DecoderInputError(f"FRAME_TOKENS must be [batch, frames] INT32; got {list(scores.shape)}")
    elif scores.ndim != 3 or scores.shape[2] != spec.vocab_size or scores.dtype != np.float32:
        raise DecoderInputError(
            f"LOGITS must be [batch, frames, {spec.vocab_size}] FP32; got {list(scores.shape)} {scores.dtype}"
        )
    if scores.shape[1] > max_frames:
        raise DecoderInputError(
            f"at most {max_frames} frames per utterance (the longest audio this server takes, "
            f"--max-audio-seconds); got {scores.shape[1]}"
        )


def check_values(spec: AcousticSpec, scores: np.ndarray) -> None:
    """Token ids of the vocabulary, or finite logits: read once the shape is known to be bounded."""
    if scores.dtype.kind in "iu":
        if scores.size and (scores.min() < 0 or scores.max() >= spec.vocab_size):
            raise DecoderInputError(f"FRAME_TOKENS must be token ids from 0 to {spec.vocab_size - 1}")
    elif not np.isfinite(scores).all():
        raise DecoderInputError("LOGITS must be finite FP32 values (found NaN/Inf)")


def check_decoder_inputs(
    spec: AcousticSpec,
    scores: np.ndarray,
    num_samples: np.ndarray,
    max_samples: int,
    hotwords: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> tuple[list[str] | None, float]:
    """Refuse what `preprocess` and `wav2vec2` would never send; return the hotwords and their weight.

    ``scores`` are the frames' logits ``[batch, frames, vocab]`` (floats) or their best tokens
    ``[batch, frames]`` (integers); ``max_samples`` is the longest audio the server takes. The step can
    be called directly, so it checks shapes, ranges and that each utterance's frames fit, instead of
    trusting its upstream steps.
    """
    check_shape(spec, scores, spec.frames(max_samples))
    if num_samples.shape not in ((scores.shape[0], 1), (scores.shape[0],)):
        raise DecoderInputError(
            f"NUM_SAMPLES must be [batch, 1] with batch {scores.shape[0]}; got {list(num_samples.shape)}"
        )
    for samples in num_samples.reshape(-1):
        if samples < spec.receptive_field or spec.frames(int(samples)) > scores.shape[1]:
            raise DecoderInputError(
                f"NUM_SAMPLES {int(samples)} does not fit the frames: needs {spec.receptive_field} or more "
                f"samples and at most {scores.shape[1]} frames"
            )
    check_values(spec, scores)
    words = None
    if hotwords is not None:
        if hotwords.size > MAX_HOTWORDS:
            raise DecoderInputError(f"at most {MAX_HOTWORDS} HOTWORDS per request; got {hotwords.size}")
        try:
            words = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in hotwords.reshape(-1)]
        except UnicodeDecodeError:
            raise DecoderInputError("HOTWORDS must be UTF-8") from None
        # One request's rows share the hotwords: keep each phrase once, in order.
        words = list(dict.fromkeys(" ".join(w.split()) for w in words))
        if any(len(w) > MAX_HOTWORD_CHARS or not w for w in words):
            raise DecoderInputError(f"each of HOTWORDS must be 1 to {MAX_HOTWORD_CHARS} characters")
    value = DEFAULT_HOTWORD_WEIGHT
    if weight is not None:
        values = weight.reshape(-1).astype(np.float64)
        if values.size == 0 or not np.isfinite(values).all() or not (values >= 0).all():
            raise DecoderInputError(f"HOTWORD_WEIGHT must be a finite number in [0, {MAX_HOTWORD_WEIGHT:g}]")
        if (values > MAX_HOTWORD_WEIGHT).any():
            raise DecoderInputError(f"HOTWORD_WEIGHT must be a finite number in [0, {MAX_HOTWORD_WEIGHT:g}]")
        value = float(values[0])
    return words, value
