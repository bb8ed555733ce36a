"""Word times from the audio: the decoded words aligned to the frames, then placed by the signal's energy.

Why: a CTC model says *which* frames carry a word's letters, not where its sound starts and ends.
Its letters are spikes one or two frames wide, and a model trained on tightly cut utterances (the
bundled one) emits a sentence's last letters, often its whole last word, in the last frames of its
input, deep in the pause that follows (measured on ten sentences joined with 0.8 s pauses: every
sentence's last word ended 0.8-1.2 s past its speech, often as a whole word placed just before the
next sentence). Subtitle cues built from such times begin with the previous sentence's last word.
So the frames say which word and roughly where; the audio says when:

1. **Alignment** (`WordAligner.owners`): every frame that emits one of a word's letters is that
   word's. The decoder's text is aligned to the frames by CTC Viterbi: the best path that reads
   exactly that text. Greedy text needs no search: the argmax path is the best path of all, hence
   of those that read its text, so under greedy decoding the aligned frames are the argmax path's
   and the step needs only ``FRAME_TOKENS``, not ``LOGITS``. Beam-search text differs from the
   argmax path where the LM changed a word; those pieces are searched. Pieces are cut at the
   decoder's breaks and between words, at most ``PIECE_FRAMES`` frames each, so the work is linear
   in the audio whatever its length.
2. **Energy** (`WordAligner.place`): a frame is voiced above 1 % of the recording's loud level
   (windowing's notion of silence) and above twice its noise floor; voiced stretches separated by
   ``PAUSE_SECONDS`` or more of silence are separate runs of speech. A word belongs to the run that
   holds most of its letters' frames; one whose letters lie mostly in a pause was emitted late and
   belongs to the speech before it. The words of a run tile it: the first starts where its sound
   starts, the last ends where the sound ends, and two neighbours meet at the next word's first
   letter. So no word runs into a pause and none is carried over to the next sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from vaani.serving.acoustic import AcousticSpec
from vaani.serving.ctc import DecoderInputError, Word, segments
from vaani.serving.windowing import SILENCE_RATIO

PAUSE_SECONDS = 0.15
"""Silence this long or longer separates two runs of speech. Shorter ones (stop closures, a breath
inside a phrase; the ten-sentence recording has none over 0.04 s inside a sentence) are
part of the speech around them, so a word can overrun its speech by less than this."""
PIECE_FRAMES = 1_000
"""The most frames one Viterbi search covers (20 s of wav2vec2 frames): its work and memory are
``frames × 2 × letters``, so longer stretches are cut between words. A piece longer than this (one
word over 20 s: only garbage logits make one) keeps the decoder's own frames."""
NOISE_PERCENTILE = 5
NOISE_MARGIN = 2.0
"""A frame is voiced only above twice the recording's noise floor (its 5th percentile frame RMS) too:
under steady noise 1 % of the loud level lies below the floor, every frame would be voiced and the
words of two sentences would tile the pause between them (white noise at 30 dB and 20 dB SNR found
every pause of the ten-sentence recording this way; without pauses the floor is the quietest speech,
and nothing moved)."""
MIN_WORD_FRAMES = 2
"""The shortest span a word gets when it has to be fitted into the end of its speech (40 ms)."""
NO_WORD = -1


@dataclass(frozen=True)
class Piece:
    """Frames ``[first, last)`` and the words ``[first_word, last_word)`` that are aligned together."""

    first: int
    last: int
    first_word: int
    last_word: int


def viterbi(scores: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """The best CTC path through ``scores`` that reads exactly ``targets``; None when none fits.

    ``scores`` is ``[frames, 1 + len(targets)]``: column 0 the blank's score, column ``1 + i`` that
    of target ``i``, per frame (logits or log-probabilities: a per-frame constant moves every path
    alike). Returns, per frame, the index of the target it emits, or ``NO_WORD`` for a blank.
    Standard CTC topology: blanks between letters are optional except between two equal letters.
    """
    frames, count = scores.shape[0], targets.size
    if count > frames:
        return None
    states = 2 * count + 1
    column = np.zeros(states, dtype=np.int64)
    column[1::2] = np.arange(1, count + 1)
    emit = scores[:, column]
    may_skip = np.zeros(states, dtype=bool)
    may_skip[3::2] = targets[1:] != targets[:-1]
    score = np.full(states, -np.inf, dtype=np.float64)
    score[: min(2, states)] = emit[0, : min(2, states)]
    back = np.zeros((frames, states), dtype=np.int8)
    moves = np.full((3, states), -np.inf, dtype=np.float64)
    every = np.arange(states)
    for frame in range(1, frames):
        moves[0] = score
        moves[1, 1:] = score[:-1]
        moves[2, 2:] = np.where(may_skip[2:], score[:-2], -np.inf)
        choice = moves.argmax(axis=0)
        back[frame] = choice
        score = moves[choice, every] + emit[frame]
    ends = [states - 1, states - 2] if count else [0]
    state = max(ends, key=lambda s: score[s])
    if not np.isfinite(score[state]):
        return None
    path = np.empty(frames, dtype=np.int64)
    for frame in range(frames - 1, -1, -1):
        path[frame] = state
        state -= back[frame, state]
    return np.where(path % 2 == 1, (path - 1) // 2, NO_WORD)


def frame_rms(audio: np.ndarray, frames: int, samples_per_frame: int) -> np.ndarray:
    """Each frame's RMS over one utterance's samples (FP32 ``[frames]``): all the word times need of the
    audio, sent by `preprocess` as ``FRAME_RMS`` at 1/``samples_per_frame`` of the audio's bytes."""
    own = np.asarray(audio, dtype=np.float32).reshape(-1)
    if own.size < frames * samples_per_frame:
        own = np.concatenate([own, np.zeros(frames * samples_per_frame - own.size, dtype=np.float32)])
    blocks = own[: frames * samples_per_frame].reshape(frames, samples_per_frame)
    return np.sqrt(np.einsum("ij,ij->i", blocks, blocks) / samples_per_frame).astype(np.float32)


def voiced_frames(rms: np.ndarray) -> np.ndarray:
    """Per frame, whether it is louder than silence: RMS (`frame_rms`) over 1 % of the loud level and
    over twice the noise floor.

    The loud level is the recording's 95th percentile frame RMS, as `windowing` finds pauses, so a
    pause the server cuts at is a pause here too; the floor (`NOISE_MARGIN`) keeps pauses under noise.
    """
    if rms.size == 0:
        return rms.astype(bool)
    floor, loud = np.percentile(rms, [NOISE_PERCENTILE, 95])
    return rms > max(1e-4, SILENCE_RATIO * float(loud), NOISE_MARGIN * float(floor))


def speech_runs(voiced: np.ndarray, pause_frames: int) -> np.ndarray:
    """``[first, one past the last]`` frames of every run of speech: voiced stretches joined across
    silences shorter than ``pause_frames``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = edges.reshape(-1, 2)
    if len(runs) == 0:
        return runs
    keep = np.concatenate([[True], runs[1:, 0] - runs[:-1, 1] >= pause_frames])
    starts = runs[keep, 0]
    ends = np.concatenate([runs[np.flatnonzero(keep)[1:] - 1, 1], [runs[-1, 1]]])
    return np.stack([starts, ends], axis=1)


class WordAligner:
    """Each decoded word's frames from the model's frames, then its times from the audio's energy."""

    def __init__(
        self,
        spec: AcousticSpec,
        pause_seconds: float = PAUSE_SECONDS,
        piece_frames: int = PIECE_FRAMES,
    ) -> None:
        self._spec = spec
        self.pause_frames = max(1, round(pause_seconds / spec.frame_seconds))
        self.piece_frames = piece_frames
        delimiter = spec.tokens.index(spec.word_delimiter)
        gaps = {spec.blank_id, delimiter, *spec.special_ids}
        # What a frame may emit between letters: the blank, the word delimiter (a word boundary is
        # already in the text) and special tokens (decoding drops them).
        self._gaps = np.array(sorted(gaps), dtype=np.int64)
        self._is_letter = np.ones(spec.vocab_size, dtype=bool)
        self._is_letter[self._gaps] = False
        self._letters = {
            token: index for index, token in enumerate(spec.tokens) if self._is_letter[index] and token
        }
        self._longest = max((len(t) for t in self._letters), default=1)

    def word_times(
        self,
        words: list[Word],
        breaks: Sequence[int],
        best: np.ndarray,
        logits: np.ndarray | None = None,
        rms: np.ndarray | None = None,
    ) -> list[Word]:
        """``words`` as a decoder found them, with spans from the alignment and, given ``rms``, the energy.

        ``best`` is the utterance's per-frame best token (``FRAME_TOKENS``), ``logits`` its
        ``[frames, vocab]`` scores when the text may differ from the best path (beam search), ``rms``
        its frames' `frame_rms`. ``breaks`` are the frames where the decoder started afresh.
        """
        owners = self.owners(words, breaks, best, logits)
        if rms is None:
            return self._spans(words, owners)
        return self.place(words, owners, speech_runs(voiced_frames(rms[: best.size]), self.pause_frames))

    def batch(
        self,
        words: list[list[Word]],
        breaks: Sequence[int],
        best: list[np.ndarray],
        logits: np.ndarray | None = None,
        rms: np.ndarray | None = None,
    ) -> list[list[Word]]:
        """`word_times` for each utterance of a `ctc_decoder` request.

        ``best`` holds each utterance's best tokens over its own frames, ``logits`` the request's
        ``[batch, frames, vocab]`` (beam search) and ``rms`` its ``FRAME_RMS`` ``[batch, frames]``, which
        `preprocess` makes from the client's audio. A direct caller may send any: refused unless it holds
        every utterance's frames; without it the words keep the aligned frames.
        """
        frames = max((path.size for path in best), default=0)
        if rms is not None and (
            rms.dtype != np.float32 or rms.ndim != 2 or rms.shape[0] != len(words) or rms.shape[1] < frames
        ):
            raise DecoderInputError(
                f"FRAME_RMS must be [batch, frames] FP32 with batch {len(words)} and at least {frames} "
                f"frames; got {list(rms.shape)} {rms.dtype}"
            )
        return [
            self.word_times(
                found,
                breaks,
                path,
                None if logits is None else logits[row, : path.size],
                None if rms is None else rms[row],
            )
            for row, (found, path) in enumerate(zip(words, best))
        ]

    def tokens(self, word: str) -> list[int] | None:
        """The word's letters as token ids, longest token first; None if a letter is not in the vocabulary."""
        ids, position = [], 0
        while position < len(word):
            for size in range(min(self._longest, len(word) - position), 0, -1):
                index = self._letters.get(word[position : position + size])
                if index is not None:
                    ids.append(index)
                    position += size
                    break
            else:
                return None
        return ids

    def owners(
        self, words: list[Word], breaks: Sequence[int], best: np.ndarray, logits: np.ndarray | None = None
    ) -> np.ndarray:
        """Per frame, the index of the word whose letter it emits, ``NO_WORD`` elsewhere.

        Piece by piece: where the best path reads the piece's words, its letters are theirs; else
        the words are aligned to ``logits`` by Viterbi; without logits, or when no path fits, or
        past ``piece_frames``, each word keeps the letters the best path has inside its own span.
        """
        owners = np.full(best.size, NO_WORD, dtype=np.int64)
        for piece in self.pieces(words, breaks, best.size):
            found = self._align_piece(piece, words, best, logits)
            if found is None:
                for index in range(piece.first_word, piece.last_word):
                    span = slice(words[index].start_frame, words[index].end_frame)
                    owners[span] = np.where(self._is_letter[best[span]], index, owners[span])
            else:
                owners[piece.first : piece.last] = found
        return owners

    def pieces(self, words: list[Word], breaks: Sequence[int], frames: int) -> list[Piece]:
        """Pieces of at most ``piece_frames`` (unless one word is longer), cut at every break and
        otherwise halfway between two words' spans (the decoder's words never cross a break)."""
        pieces: list[Piece] = []
        index = 0
        for start, stop in segments(frames, breaks):
            mine = index
            while index < len(words) and words[index].start_frame < stop:
                index += 1
            halfway = [(a.end_frame + b.start_frame) // 2 for a, b in pairwise(words[mine:index])]
            cuts = [max(start, cut) for cut in halfway] + [stop]
            first, first_word = start, mine
            for word, cut in zip(range(mine, index), cuts):
                next_cut = cuts[word - mine + 1] if word + 1 < index else None
                if next_cut is None or next_cut - first > self.piece_frames:
                    pieces.append(Piece(first, max(first, cut), first_word, word + 1))
                    first, first_word = max(first, cut), word + 1
        return pieces

    def _align_piece(
        self, piece: Piece, words: list[Word], best: np.ndarray, logits: np.ndarray | None
    ) -> np.ndarray | None:
        """The piece's frames → word indices (`owners`), or None to keep the decoder's spans."""
        spelled = [self.tokens(w.word) for w in words[piece.first_word : piece.last_word]]
        if any(s is None for s in spelled):
            return None
        targets = np.array([t for s in spelled for t in s], dtype=np.int64)
        word_of = np.repeat(np.arange(piece.first_word, piece.last_word), [len(s) for s in spelled])
        ids = best[piece.first : piece.last]
        letter = self._is_letter[ids]
        emits = letter & np.concatenate([[True], ids[1:] != ids[:-1]])
        if np.array_equal(ids[emits], targets):
            position = np.cumsum(emits) - 1
            return np.where(letter, word_of[np.clip(position, 0, None)], NO_WORD)
        if logits is None or piece.last - piece.first > self.piece_frames:
            return None
        scores = logits[piece.first : piece.last].astype(np.float64)
        gap = scores[:, self._gaps].max(axis=1, keepdims=True)
        path = viterbi(np.concatenate([gap, scores[:, targets]], axis=1), targets)
        if path is None:
            return None
        return np.where(path >= 0, word_of[np.clip(path, 0, None)], NO_WORD)

    @staticmethod
    def _emitted(owners: np.ndarray, words: int, where: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Per word: how many frames it owns (among ``where``), its first and one past its last such frame.

        Linear in the frames (a word that owns none: count 0, first and last -1).
        """
        frames = np.flatnonzero((owners >= 0) if where is None else (owners >= 0) & where)
        who = owners[frames]
        first = np.full(words, np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(words, -1, dtype=np.int64)
        np.minimum.at(first, who, frames)
        np.maximum.at(last, who, frames + 1)
        count = np.bincount(who, minlength=words)
        return count, np.where(count > 0, first, -1), last

    def _spans(self, words: list[Word], owners: np.ndarray) -> list[Word]:
        """Each word from its first aligned frame to after its last; a word with none keeps its span."""
        count, first, last = self._emitted(owners, len(words))
        return [Word(w.word, int(first[i]), int(last[i])) if count[i] else w for i, w in enumerate(words)]

    def place(self, words: list[Word], owners: np.ndarray, runs: np.ndarray) -> list[Word]:
        """Each word in its run of speech (see the module's docstring); without speech, the aligned spans."""
        aligned = self._spans(words, owners)
        if len(runs) == 0 or not words:
            return aligned
        run_of = np.full(owners.size, -1, dtype=np.int64)
        for index, (first, last) in enumerate(runs):
            run_of[first:last] = index
        count, _, _ = self._emitted(owners, len(words))
        inside, first_inside, _ = self._emitted(owners, len(words), run_of >= 0)
        late = (count == 0) | (inside * 2 < count)
        starts = np.array([w.start_frame for w in aligned], dtype=np.int64)
        # Emitted in a pause: the speech before it (the first speech, if none is before).
        before = np.maximum(np.searchsorted(runs[:, 0], starts, side="right") - 1, 0)
        homes = np.maximum.accumulate(np.where(late, before, run_of[np.maximum(first_inside, 0)]))
        placed = list(aligned)
        bounds = np.flatnonzero(np.diff(homes)) + 1
        for members in np.split(np.arange(len(words)), bounds):
            run = runs[homes[members[0]]]
            for index, (start, end) in zip(members, self._tile(run, list(members), aligned, late)):
                placed[index] = Word(aligned[index].word, start, end)
        return placed

    @staticmethod
    def _tile(
        run: np.ndarray, members: list[int], aligned: list[Word], late: np.ndarray
    ) -> list[tuple[int, int]]:
        """Spans of a run's words that cover it end to end, meeting where the next word's letters begin.

        After a word, a late one (emitted in the pause) starts where that word's letters end; between
        two late words the rest of the run is shared evenly. Every word gets ``MIN_WORD_FRAMES``
        where the run is long enough: words pressed against the run's end push the boundaries before
        them back.
        """
        first, last = int(run[0]), int(run[1])
        inner: list[float | None] = []
        for before, after in pairwise(members):
            if not late[after]:
                inner.append(aligned[after].start_frame)
            elif not late[before]:
                inner.append(aligned[before].end_frame)
            else:
                inner.append(None)
        bounds = np.array([first, *[np.nan if b is None else b for b in inner], last], dtype=np.float64)
        known = np.flatnonzero(~np.isnan(bounds))
        bounds = np.interp(np.arange(bounds.size), known, bounds[known])
        bounds = np.clip(bounds, first, last)
        width = min(MIN_WORD_FRAMES, (last - first) / len(members))
        for i in range(len(bounds) - 2, 0, -1):
            bounds[i] = min(bounds[i], bounds[i + 1] - width)
        for i in range(1, len(bounds) - 1):
            bounds[i] = max(bounds[i], bounds[i - 1] + width)
        edges = np.round(bounds).astype(np.int64)
        return [(int(a), int(b)) for a, b in pairwise(edges)]
