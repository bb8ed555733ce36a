"""Beam-search CTC decoding with an optional KenLM n-gram LM and per-request hotwords (pyctcdecode).

pyctcdecode is the decoder of Hugging Face's `Wav2Vec2ProcessorWithLM`, so a model folder's
``language_model/`` (KenLM ``.arpa``/``.bin``, ``unigrams.txt``, ``attrs.json``) is read as
transformers reads it. It is imported inside `BeamDecoder` only: a greedy repository never
loads it (the serving core keeps numpy as its one module-level import).

The search's cost is bounded whatever the logits (the `ctc_decoder` step can be called directly):
pyctcdecode keeps each beam's whole text and caches LM scores by it, so one long search grows
faster than its frames (20,000 frames of random logits: 221 s, 4 GB in the served decoder).
`BeamDecoder.decode` searches pieces of at most ``piece_frames`` frames, cut between words, and
decodes a piece greedily instead when its frames offer more than ``MAX_CANDIDATES_PER_FRAME``
tokens each on average (what a frame costs the search) or when the request has spent its search
time (``SEARCH_SHARE`` of its audio's duration, ``MIN_SEARCH_SECONDS`` at least, and no more
than for ``longest_seconds`` of audio however many utterances the request holds).
`BeamDecoder.decoding` is the same search one piece at a time, so that the `ctc_decoder` step can
serve other requests between the pieces of a long one; time spent waiting between pieces does not
count as search time.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaani.serving.acoustic import AcousticSpec
from vaani.serving.ctc import DEFAULT_HOTWORD_WEIGHT, GreedyDecoder, Word, segments, transcript

LM_DIR = "language_model"
"""The HF `Wav2Vec2ProcessorWithLM` folder name, in a model folder and in the decoder's version folder."""
ATTRS_FILE = "attrs.json"
UNIGRAMS_FILE = "unigrams.txt"
KENLM_SUFFIXES = (".arpa", ".bin", ".binary")
DEFAULT_BEAM_WIDTH = 64
DEFAULT_PIECE_FRAMES = 1_000  # 20 s of wav2vec2 frames: one window's kept frames (--window-seconds)
TOKEN_MIN_LOGP = -5.0
"""pyctcdecode's default, passed to it explicitly: a frame's tokens below this log-probability are
not expanded (its best token always is). The count of the others is the frame's cost to the search."""
MAX_CANDIDATES_PER_FRAME = 4.0
"""A piece is beam-searched while its frames offer at most this many tokens each on average; the
bundled model's speech offers 1.26 (its flattest sentence 1.69, any 50 frames at most 2.2), random
logits 42 (7.4 ms a frame against 0.04 on this CPU); at 4, ~0.4 ms (without hotwords)."""
SEARCH_SHARE = 0.02
"""Beam search time a request may spend per second of its audio (50× real time: the bundled model's
speech needs 0.002); past it, its remaining pieces are greedy. Catches what the candidate count does
not price (hotwords rescan each beam's text, a slow or busy CPU). A piece is never cut short, so a
request may overrun by one piece (≤ 3 s measured: 1,000 frames at the candidate cap, 100 hotwords)."""
MIN_SEARCH_SECONDS = 2.0
VIRAMA = "\u094d"
_SUPPRESSED = (
    -1e4
)  # logit for special tokens (<s>, </s>, <unk>): greedy drops them, the beam never emits them


def kenlm_file(lm_dir: Path) -> Path:
    """The one KenLM file of an HF-layout ``language_model/`` folder."""
    found = sorted(p for p in Path(lm_dir).iterdir() if p.suffix in KENLM_SUFFIXES)
    if len(found) != 1:
        raise ValueError(
            f"{lm_dir} must hold exactly one KenLM file ({', '.join(KENLM_SUFFIXES)}); found {len(found)}"
        )
    return found[0]


def labels(spec: AcousticSpec) -> list[str]:
    """pyctcdecode's alphabet in vocabulary order: blank ``""``, word delimiter ``" "``."""
    out = list(spec.tokens)
    out[spec.blank_id] = ""
    out[spec.tokens.index(spec.word_delimiter)] = " "
    return out


@dataclass
class _Query:
    """What the pieces of one request share: its hotwords and when its search time runs out (moved on
    by the time it waits between pieces)."""

    hotwords: list[str] | None
    weight: float
    deadline: float


@dataclass(frozen=True)
class Decoded:
    """One utterance's transcript and words, and how many of its frames were decoded greedily."""

    text: str
    words: list[Word]
    greedy_frames: int


def hotword_unigrams(hotwords: Sequence[str]) -> list[str]:
    """The words of ``hotwords`` (phrases split at spaces), longest first, each once."""
    return sorted(dict.fromkeys(w for phrase in hotwords for w in phrase.split()), key=len, reverse=True)


def split_glued(word: Word, hotwords: Sequence[str], known: set[str] | frozenset[str]) -> list[Word]:
    """``word`` as its hotword and the known words glued to it, or as it is.

    pyctcdecode's hotword scorer boosts a hotword's letters while they are a prefix of it and the
    whole word only between spaces, so a beam that misses the space after (or before) a boosted word
    keeps reading, and "मौसम बहुत" comes back as "मौसमबहुत". A word that is not known itself is split
    into ``left + hotword + right`` when each of ``left`` and ``right`` is empty or could be a word of
    its own (`_could_be_word`), one of them not empty; the longest hotword that fits wins. A hotword
    followed by a vowel sign ("मौसमी", "मौसमों") is part of a longer word and stays. The frames are
    shared by letters. ``hotwords`` must be unigrams, longest first (`hotword_unigrams`).
    """
    text = word.word
    if text in known:
        return [word]
    for hot in hotwords:
        start = text.find(hot)
        while start >= 0:
            left, right = text[:start], text[start + len(hot) :]
            if (left or right) and all(not p or _could_be_word(p, known) for p in (left, right)):
                parts = [p for p in (left, hot, right) if p]
                return _share_frames(word, parts)
            start = text.find(hot, start + 1)
    return [word]


def _could_be_word(text: str, known: set[str] | frozenset[str]) -> bool:
    """A known word, or two letters or more that neither begin with a combining sign (a vowel sign,
    nukta, virama, anusvara: the middle of a word) nor end with a virama (half a conjunct)."""
    if text in known:
        return True
    return len(text) >= 2 and not unicodedata.category(text[0]).startswith("M") and text[-1] != VIRAMA


def _share_frames(word: Word, parts: list[str]) -> list[Word]:
    """``word``'s frames for each of ``parts`` (its letters in order), in proportion to their letters."""
    span = word.end_frame - word.start_frame
    out, done = [], 0
    for part in parts:
        first = word.start_frame + span * done // len(word.word)
        done += len(part)
        out.append(Word(part, first, word.start_frame + span * done // len(word.word)))
    return out


def log_probs(logits: np.ndarray, suppressed: Sequence[int]) -> np.ndarray:
    """``[frames, vocab]`` → FP32 log-probabilities, ``suppressed`` tokens at the bottom: the search's input.

    Handing pyctcdecode log-probabilities (not logits) also keeps its guess "rows that sum to 1 are
    probabilities" away from the input, so the candidates counted here are the ones it expands.
    """
    logits = np.array(logits, dtype=np.float32)
    logits[:, list(suppressed)] = _SUPPRESSED
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _runs(mask: np.ndarray) -> np.ndarray:
    """``[first, one past the last]`` of every run of ``True`` in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return edges.reshape(-1, 2)


def quiet_cut(best: np.ndarray, blank: int, delimiter: int) -> int:
    """Where to cut a stretch of the best path: between two words if it can.

    The middle of its longest run of blanks and word delimiters that holds a delimiter (a gap
    between words), else of its longest run of blanks (a model may pause inside a word, and emit a
    word's last letter after a silence), else its end.
    """
    quiet = _runs(np.isin(best, (blank, delimiter)))
    gaps = [run for run in quiet if (best[run[0] : run[1]] == delimiter).any()]
    for runs in (gaps, quiet):
        if len(runs):
            first, last = max(runs, key=lambda run: run[1] - run[0])
            return int(first + last) // 2
    return int(best.size)


def pieces(best: np.ndarray, longest: int, blank: int, delimiter: int) -> list[tuple[int, int]]:
    """The frames of a best path ``best`` as ``(first, last)`` pieces of at most ``longest`` frames.

    Each cut lies in the second half of the longest piece it may end, at its `quiet_cut`.
    """
    bounds, start = [], 0
    while best.size - start > longest:
        low = start + max(1, longest // 2)
        cut = low + quiet_cut(best[low : start + longest], blank, delimiter)
        bounds.append((start, cut))
        start = cut
    return [*bounds, (start, int(best.size))]


class BeamDecoder:
    """Beam search over each utterance's own frames; returns the best beam's text and word frames."""

    def __init__(
        self,
        spec: AcousticSpec,
        lm_dir: Path | None,
        beam_width: int = DEFAULT_BEAM_WIDTH,
        piece_frames: int = DEFAULT_PIECE_FRAMES,
        longest_seconds: float = math.inf,
    ) -> None:
        from pyctcdecode import build_ctcdecoder

        self._spec = spec
        self.beam_width = beam_width
        self.piece_frames = piece_frames
        self.longest_seconds = longest_seconds
        self.clock: Callable[[], float] = time.monotonic
        self._special = [i for i in spec.special_ids if i != spec.blank_id]
        self._greedy = GreedyDecoder(spec)
        self._delimiter = spec.tokens.index(spec.word_delimiter)
        self._unigrams: frozenset[str] = frozenset()
        if lm_dir is None:
            self._decoder = build_ctcdecoder(labels(spec))
            return
        attrs = json.loads((Path(lm_dir) / ATTRS_FILE).read_text(encoding="utf-8"))
        unigrams_path = Path(lm_dir) / UNIGRAMS_FILE
        unigrams = unigrams_path.read_text(encoding="utf-8").split() if unigrams_path.exists() else None
        self._unigrams = frozenset(unigrams or ())
        self._decoder = build_ctcdecoder(
            labels(spec),
            str(kenlm_file(lm_dir)),
            unigrams,
            alpha=float(attrs["alpha"]),
            beta=float(attrs["beta"]),
            **{k: attrs[k] for k in ("unk_score_offset",) if k in attrs},
        )

    def decode_one(
        self, logits: np.ndarray, hotwords: list[str] | None = None, weight: float = DEFAULT_HOTWORD_WEIGHT
    ) -> tuple[str, list[Word]]:
        """``[frames, vocab]`` of one utterance → transcript and words with frame spans.

        One search over all frames, unbounded: for offline comparisons (`vaani wer`, the LM's tuning).
        """
        words = self._search(log_probs(logits, self._special), hotwords, weight)
        return transcript(words), words

    def _search(self, logp: np.ndarray, hotwords: list[str] | None, weight: float) -> list[Word]:
        if logp.shape[0] == 0:
            return []
        beams = self._decoder.decode_beams(
            logp,
            beam_width=self.beam_width,
            token_min_logp=TOKEN_MIN_LOGP,
            hotwords=hotwords or None,
            hotword_weight=weight,
        )
        words = [Word(w, int(s), int(e)) for w, (s, e) in beams[0][2]]
        if not hotwords:
            return words
        hot = hotword_unigrams(hotwords)
        known = self._unigrams | set(hot)
        return [part for word in words for part in split_glued(word, hot, known)]

    def search_seconds(self, frames: int) -> float:
        """How long a request of ``frames`` frames (all its utterances) may beam-search.

        Its audio counts up to ``longest_seconds`` (the server's longest recording): a request of
        many utterances gets no more search time than one recording could.
        """
        seconds = min(frames * self._spec.frame_seconds, self.longest_seconds)
        return max(MIN_SEARCH_SECONDS, SEARCH_SHARE * seconds)

    def decode(
        self,
        logits: np.ndarray,
        num_samples: np.ndarray,
        breaks: Sequence[int] = (0,),
        hotwords: list[str] | None = None,
        weight: float = DEFAULT_HOTWORD_WEIGHT,
    ) -> list[Decoded]:
        """Decode one request's ``[batch, frames, vocab]``; frames past each utterance's length are padding.

        Each part between ``breaks`` (frames where a long recording was cut at a pause) is searched
        on its own, in pieces of at most ``piece_frames``; its words are placed at their frames in
        the recording. A piece over the candidate budget, or met after the request's search time
        ran out, is decoded greedily and counted.
        """
        steps = self.decoding(logits, num_samples, breaks, hotwords, weight)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def decoding(
        self,
        logits: np.ndarray,
        num_samples: np.ndarray,
        breaks: Sequence[int] = (0,),
        hotwords: list[str] | None = None,
        weight: float = DEFAULT_HOTWORD_WEIGHT,
    ) -> Generator[None, None, list[Decoded]]:
        """`decode` one piece at a time: yields after each piece and returns what `decode` returns.

        A caller may serve other requests between pieces; the time it spends on them is not this
        request's search time.
        """
        lengths = [self._spec.frames(int(n)) for n in num_samples.reshape(-1)]
        query = _Query(hotwords, weight, self.clock() + self.search_seconds(sum(lengths)))
        decoded = []
        for row, frames in zip(logits, lengths):
            decoded.append((yield from self._utterance(row[:frames], breaks, query)))
        return decoded

    def _utterance(
        self, logits: np.ndarray, breaks: Sequence[int], query: _Query
    ) -> Generator[None, None, Decoded]:
        words: list[Word] = []
        greedy = 0
        for first, last in self._pieces(logits, breaks):
            found, fell_back = self._piece(logits[first:last], query)
            words += [Word(w.word, w.start_frame + first, w.end_frame + first) for w in found]
            greedy += (last - first) * fell_back
            paused = self.clock()
            yield
            query.deadline += self.clock() - paused
        return Decoded(transcript(words), words, greedy)

    def _pieces(self, logits: np.ndarray, breaks: Sequence[int]) -> list[tuple[int, int]]:
        """``(first, last)`` frames of every piece: the `segments` between ``breaks``, cut by `pieces`."""
        found = []
        for first, last in segments(logits.shape[0], breaks):
            best = logits[first:last].argmax(axis=1)
            cuts = pieces(best, self.piece_frames, self._spec.blank_id, self._delimiter)
            found += [(first + start, first + end) for start, end in cuts]
        return found

    def _piece(self, logits: np.ndarray, query: _Query) -> tuple[list[Word], bool]:
        """One piece's words: beam-searched within the budgets, else greedy (then ``True``)."""
        logp = log_probs(logits, self._special)
        over = (logp >= TOKEN_MIN_LOGP).sum() > MAX_CANDIDATES_PER_FRAME * logits.shape[0]
        if over or self.clock() >= query.deadline:
            return self._greedy.words_ids(logits.argmax(axis=1)), True
        return self._search(logp, query.hotwords, query.weight), False
