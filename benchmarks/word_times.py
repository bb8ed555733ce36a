"""`vaani word-times`: how far word times land from the speech, on recordings whose pauses are known.

Held-out sentences spoken by espeak-ng are joined with pauses of a known length
(`vaani.recipe.corpus.recordings`), so each sentence's onset and the end of its speech are known
to the sample. Each decoded word is given to its sentence by its text (the hypothesis aligned to the
sentences' words, as WER aligns them), never by its time, so a sentence's last word that lands in
the next sentence is counted where it belongs. The goal (issue 21): every word ends at most
``END_TOLERANCE`` past the end of its sentence's speech, every sentence's first word starts within
``ONSET_TOLERANCE`` of its onset, and no word lies in a pause or in another sentence.

In process (default): the model's FP32 logits for the recording cut at its pauses and joined as the
server does, decoded greedily and by beam search (with the model's LM when it has one); each
decoder's words timed from its own frames ("frames", what the server returned before alignment) and
by `vaani.serving.alignment` ("aligned", with the audio's energy), with the alignment's cost: audio
seconds aligned per second of one core. With ``--url``: one request to a running server asking for
``WORDS``, scored the same way.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaani.recipe.corpus.recordings import PlacedSentence, long_recording
from vaani.serving.contract import SAMPLING_RATE
from vaani.serving.ctc import Word

if TYPE_CHECKING:
    from vaani.build.hf_model import HfModel

END_TOLERANCE = 0.15  # seconds a word may end past its sentence's speech
ONSET_TOLERANCE = 0.1  # seconds a sentence's first word may start from its onset, either side
TIMING_ROUNDS = 5


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class Timing:
    """How one set of word times meets the goal; seconds, worst case over the sentences."""

    last_word_overrun: float  # a sentence's last word's end past its speech's end
    word_overrun: float  # any word's end past its sentence's speech's end
    onset_error: float  # |first word's start − onset|
    outside: int  # words that start before their sentence's onset or end in a pause or another sentence

    @property
    def meets_goal(self) -> bool:
        return self.word_overrun <= END_TOLERANCE and self.onset_error <= ONSET_TOLERANCE and not self.outside


def in_seconds(words: list[Word], frame_seconds: float) -> list[TimedWord]:
    return [TimedWord(w.word, w.start_frame * frame_seconds, w.end_frame * frame_seconds) for w in words]


def sentence_of_each(words: list[TimedWord], sentences: list[PlacedSentence]) -> list[int]:
    """Each hypothesis word's sentence, by aligning the words to the sentences' words as WER does.

    An inserted word goes with the reference word before it (the first sentence at the start).
    """
    reference = [(index, word) for index, s in enumerate(sentences) for word in s.text.split()]
    owner = [0] * len(words)
    if not words:
        return owner
    import jiwer  # the eval extra: `vaani --help` must not need it (the serving image has none)

    result = jiwer.process_words(" ".join(w for _, w in reference), " ".join(w.word for w in words))
    for chunk in result.alignments[0]:
        if chunk.type == "delete":
            continue
        for offset, hyp in enumerate(range(chunk.hyp_start_idx, chunk.hyp_end_idx)):
            if chunk.type == "insert":
                owner[hyp] = reference[max(chunk.ref_start_idx - 1, 0)][0]
            else:
                owner[hyp] = reference[chunk.ref_start_idx + offset][0]
    return owner


def score(words: list[TimedWord], sentences: list[PlacedSentence]) -> Timing:
    """The worst case of ``words`` against where ``sentences`` are (see the module's docstring)."""
    owner = sentence_of_each(words, sentences)
    last, overrun, onset, outside = -math.inf, -math.inf, 0.0, 0
    for index, sentence in enumerate(sentences):
        mine = [w for w, o in zip(words, owner) if o == index]
        if not mine:
            continue
        last = max(last, mine[-1].end - sentence.end)
        overrun = max(overrun, max(w.end for w in mine) - sentence.end)
        onset = max(onset, abs(mine[0].start - sentence.onset))
        outside += sum(
            w.start < sentence.onset - ONSET_TOLERANCE or w.end > sentence.end + END_TOLERANCE for w in mine
        )
    return Timing(last, overrun, onset, outside)


def served_logits(model: HfModel, audio: np.ndarray, max_seconds: float) -> tuple[np.ndarray, list[int]]:
    """The recording's FP32 logits ``[frames, vocab]`` as the server makes them, and the decoder's breaks.

    Cut into windows at its pauses as `preprocess` cuts (the repository's default plan), each
    window normalized on its own and run alone, the kept frames joined as `wav2vec2` joins them.
    """
    from vaani.build.repository import RepositorySettings
    from vaani.serving.preprocessing import normalize
    from vaani.serving.windowing import SILENT, breaks, cut, join, silence_logits, split

    spec = model.spec()
    plan = RepositorySettings(max_audio_seconds=max_seconds).windowing(spec)
    windows = plan.windows(audio[None])
    logits = []
    for window, values in zip(windows, split(cut(audio[None], windows, normalize), windows)):
        if window.kind == SILENT:
            logits.append(silence_logits(1, spec.frames(window.samples), spec.vocab_size, spec.blank_id))
        else:
            logits.append(model.logits(values, np.ones(values.shape, dtype=np.int64)))
    return join(logits, windows)[0], breaks(windows, spec.samples_per_frame)


@dataclass(frozen=True)
class Row:
    decoder: str
    times: str
    timing: Timing
    aligned_per_second: float | None = None  # audio seconds aligned per second, one core


def in_process(model_dir: Path, audio: np.ndarray, sentences: list[PlacedSentence]) -> list[Row]:
    """Greedy and beam (+ the model's LM, if any), each timed by its frames and by alignment."""
    from vaani.build.hf_model import HfModel
    from vaani.serving.alignment import WordAligner, frame_rms
    from vaani.serving.beam import LM_DIR, BeamDecoder
    from vaani.serving.ctc import GreedyDecoder

    model = HfModel.load(model_dir)
    spec = model.spec()
    seconds = audio.size / SAMPLING_RATE
    logits, cuts = served_logits(model, audio, seconds + 1)
    best = logits.argmax(axis=1).astype(np.int32)
    lm = model_dir / LM_DIR
    beam = BeamDecoder(spec, lm if lm.is_dir() else None)
    decoded = {
        "greedy": (GreedyDecoder(spec).words_ids(best, cuts), None),
        "beam + LM" if lm.is_dir() else "beam": (
            beam.decode(logits[None], np.array([[audio.size]]), cuts)[0].words,
            logits,
        ),
    }
    aligner = WordAligner(spec)
    rms = frame_rms(audio, best.size, spec.samples_per_frame)  # what `preprocess` sends the decoder
    rows = []
    for name, (words, scores) in decoded.items():
        rows.append(Row(name, "frames", score(in_seconds(words, spec.frame_seconds), sentences)))
        aligned, rate = _timed(partial(aligner.word_times, words, cuts, best, scores, rms), seconds)
        rows.append(Row(name, "aligned", score(in_seconds(aligned, spec.frame_seconds), sentences), rate))
    return rows


def _timed(align: Callable[[], list[Word]], seconds: float) -> tuple[list[Word], float]:
    """The alignment's result and audio seconds per second: the best of ``TIMING_ROUNDS`` runs."""
    took = []
    for _ in range(TIMING_ROUNDS):
        start = time.perf_counter()
        result = align()
        took.append(time.perf_counter() - start)
    return result, seconds / min(took)


def served(url: str, audio: np.ndarray, sentences: list[PlacedSentence]) -> list[Row]:
    """One request with ``WORDS`` to the server at ``url``."""
    from vaani.client.api import TranscriptionClient

    ((_, words),) = TranscriptionClient(url).transcribe_words(audio[None])
    timed = [TimedWord(w["word"], w["start"], w["end"]) for w in words]
    return [Row(f"served at {url}", "WORDS", score(timed, sentences))]


def table(rows: list[Row]) -> str:
    lines = [
        "| decoder | word times | last word past its speech, max | any word past its speech, max | "
        "onset error, max | words outside their sentence | goal | audio-s aligned per s, one core |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        t = row.timing
        rate = "" if row.aligned_per_second is None else f"{row.aligned_per_second:,.0f}"
        lines.append(
            f"| {row.decoder} | {row.times} | {t.last_word_overrun:+.2f} s | {t.word_overrun:+.2f} s | "
            f"{t.onset_error:.2f} s | {t.outside} | {'met' if t.meets_goal else 'missed'} | {rate} |"
        )
    return "\n".join(lines)


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "word-times",
        help="score word times against held-out sentences joined with known pauses",
        description=(
            "Join held-out sentences spoken by espeak-ng with pauses of known length and score word "
            f"times against them: every word must end at most {END_TOLERANCE:g} s past its sentence's "
            f"speech, every sentence's first word start within {ONSET_TOLERANCE:g} s of its onset, and no "
            "word lie outside its sentence (words are given to sentences by their text, as WER aligns "
            "them). In process (default): the model's FP32 logits cut at pauses as the server cuts, "
            "greedy and beam (+ the model's LM), each timed from its frames and by alignment + energy, "
            "with the alignment's cost. With --url: one request for WORDS to a running server."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="exit status: 0 every aligned (or served) row meets the goal; 1 one misses it",
    )
    parser.add_argument("--model", type=Path, default=Path("models/tiny-hindi"), help="model folder")
    parser.add_argument("--url", help="score a running server's WORDS instead (host:port, HTTP)")
    parser.add_argument("--sentences", type=int, default=10, help="held-out sentences in the recording")
    parser.add_argument("--pause", type=float, default=0.8, help="seconds of silence between sentences")
    parser.add_argument("--seed", type=int, default=2027, help="which held-out sentences, voices and speeds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    audio, sentences = long_recording(args.sentences, seed=args.seed, pauses=(args.pause, args.pause))
    rows = served(args.url, audio, sentences) if args.url else in_process(args.model, audio, sentences)
    print(
        f"{args.sentences} held-out sentences (seed {args.seed}) joined with {args.pause:g} s pauses, "
        f"{audio.size / SAMPLING_RATE:.1f} s; goal: every word ends ≤ {END_TOLERANCE:g} s past its speech, "
        f"onsets within {ONSET_TOLERANCE:g} s, no word outside its sentence"
    )
    print(table(rows))
    judged = [row for row in rows if row.times != "frames"]
    return 0 if all(row.timing.meets_goal for row in judged) else 1
