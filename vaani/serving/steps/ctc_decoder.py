"""Step 3 of `asr`: CTC over each utterance's own frames; UTF-8 text out, and word times if asked.

Greedy decoding reads each frame's best token (``FRAME_TOKENS``, what `wav2vec2` sends it);
beam search reads ``LOGITS``. A direct caller may send ``LOGITS`` to either. Asked for ``WORDS``, it
aligns the words to the frames and places them by the loudness of each frame, ``FRAME_RMS``, which
`preprocess` measures (`vaani.serving.alignment`): a word ends where its sound ends.

Greedy, or beam search (with the repository's KenLM when the build put one in ``language_model/``)
when the config's ``decoder`` parameter says ``beam``. Optional per-request ``HOTWORDS`` and
``HOTWORD_WEIGHT`` steer the beam; a greedy decoder refuses a request with ``HOTWORDS`` (INVALID_ARG)
rather than ignore them. Each request is checked on its own (the step can be called
directly, past `preprocess`): a bad one gets INVALID_ARG, the rest of the batch is decoded.

Its work is bounded for any request: at most the frames of ``max_samples`` (the repository's
``--max-audio-seconds``) per utterance, a ``WINDOW_LAYOUT`` only as `preprocess` makes it, and a beam
search in pieces of one window's frames, greedy for a piece whose logits are too flat to search
cheaply or once the request has spent its search time (`vaani.serving.beam`; the step logs a
warning when that happens). Under beam search the requests it holds take turns
(`vaani.serving.steps.turns`): one piece of each per round, so a short request is decoded between
the pieces of a long one; a request that Triton reports cancelled is dropped before its next piece.

Greedy decoding takes no turns: ``execute()`` decodes its requests and returns their answers. It is
one pass over a request's frames (about 4 µs per second of audio; an hour, the longest recording a
server takes by default, in 15-30 ms), so no request waits long behind another. Through the
turns each answer cost more than its decoding: a response sender's IPC round trip and two
``is_cancelled()`` ones per request, and Triton's ``compute_infer`` timed admission only. Answers
returned go back in one message per execution, and ``compute_infer`` is the decoding again
(`benchmarks/decoder_step.py`; the figures in benchmarks/results/ctc-decoder-cpu-2026-12-05/).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.alignment import WordAligner
from vaani.serving.beam import DEFAULT_BEAM_WIDTH, LM_DIR, MAX_CANDIDATES_PER_FRAME, SEARCH_SHARE, BeamDecoder
from vaani.serving.contract import (
    FRAME_RMS,
    FRAME_TOKENS,
    HOTWORD_WEIGHT,
    HOTWORDS,
    LOGITS,
    NUM_SAMPLES,
    SAMPLING_RATE,
    TRANSCRIPT,
    WORDS,
)
from vaani.serving.ctc import (
    DecoderInputError,
    GreedyDecoder,
    Word,
    check_decoder_inputs,
    transcript,
    words_json,
)
from vaani.serving.step import StepContext
from vaani.serving.steps.boundary import Refused, asked_for, failed, layout, optional, read, refused, strings
from vaani.serving.steps.turns import Job, Turns
from vaani.serving.windowing import breaks


@dataclass(frozen=True)
class Checked:
    """A request's inputs once checked: what its decoding reads."""

    logits: np.ndarray | None
    tokens: np.ndarray | None
    num_samples: np.ndarray
    cuts: list[int]
    hotwords: list[str] | None
    weight: float


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.spec = context.spec()
        self.windowing = context.windowing()
        self.max_samples = context.max_samples()
        self.greedy = GreedyDecoder(self.spec)
        self.aligner = WordAligner(self.spec)
        self.beam = None
        if context.parameters.get("decoder") == "beam":
            lm_dir = context.version_dir / LM_DIR
            self.beam = BeamDecoder(
                self.spec,
                lm_dir if lm_dir.is_dir() else None,
                int(context.number("beam_width", DEFAULT_BEAM_WIDTH)),
                piece_frames=self.windowing.chunk // self.spec.samples_per_frame,
                longest_seconds=self.max_samples / SAMPLING_RATE,
            )
        self.turns = None if self.beam is None else Turns(self._round, context.max_batch_size, "ctc_decoder")

    def execute(self, requests):
        if self.turns is None:  # greedy: each request decoded and answered here, in one pass
            return [self._greedy(request) for request in requests]
        self.turns.admit(requests, self._admit)
        return None

    def finalize(self):
        if self.turns is not None:
            self.turns.close()

    def _greedy(self, request) -> pb_utils.InferenceResponse:
        """The request's answer: its transcripts (and words when asked), or its own error."""
        return self._checked_then(request, self._greedy_answer)

    def _admit(self, request):
        """The request's beam search, to be served in turns, once its inputs are checked; or its refusal."""
        return self._checked_then(request, self._searching)

    def _checked_then(self, request, work: Callable[[Any, Checked], Any]):
        """``work`` on the request and its checked inputs; or the request's own error, never the batch's."""
        try:
            return work(request, self._checked(request))
        except (DecoderInputError, Refused) as error:
            return refused(str(error))
        except Exception as error:  # a decoder failure fails its request, not the batch
            return failed("ctc_decoder", error)

    def _greedy_answer(self, request, checked: Checked) -> pb_utils.InferenceResponse:
        paths = (
            self.greedy.best_paths(checked.logits, checked.num_samples)
            if checked.tokens is None
            else self.greedy.own_frames(checked.tokens, checked.num_samples)
        )
        words = [self.greedy.words_ids(path, checked.cuts) for path in paths]
        return self._answer(request, checked, words, paths)

    def _round(self, jobs: list[Job]) -> None:
        """One turn of each request: one piece of its beam search."""
        for job in jobs:
            try:
                next(job.work)
            except StopIteration as done:
                job.answer(done.value)
            except Exception as error:  # a decoder failure fails its request, not the others
                job.answer(failed("ctc_decoder", error))

    def _checked(self, request) -> Checked:
        logits, tokens = optional(request, LOGITS), optional(request, FRAME_TOKENS)
        if self.beam is not None and (logits is None or tokens is not None):
            raise DecoderInputError("the beam-search decoder takes LOGITS (and no FRAME_TOKENS)")
        if (logits is None) == (tokens is None):
            raise DecoderInputError("the greedy decoder takes one of LOGITS and FRAME_TOKENS")
        num_samples = read(request, NUM_SAMPLES)
        hotwords, weight = check_decoder_inputs(
            self.spec,
            logits if tokens is None else tokens,
            num_samples,
            self.max_samples,
            optional(request, HOTWORDS),
            optional(request, HOTWORD_WEIGHT),
        )
        if hotwords and self.beam is None:
            raise DecoderInputError(
                "HOTWORDS need beam search, and this server decodes greedily (built with --decoder "
                "greedy, or --decoder auto for a model without an LM): send no HOTWORDS, or rebuild "
                "with --decoder beam"
            )
        windows = layout(request, num_samples, self.windowing, self.max_samples)
        # Decoding starts afresh at the pauses of a long recording's windows (none: one window).
        cuts = [0] if windows is None else breaks(windows, self.spec.samples_per_frame)
        return Checked(logits, tokens, num_samples, cuts, hotwords, weight)

    def _searching(self, request, checked: Checked) -> Generator[None, None, pb_utils.InferenceResponse]:
        """The beam search of a request, a piece a turn, then its answer."""
        words = yield from self._beam(
            checked.logits, checked.num_samples, checked.cuts, checked.hotwords, checked.weight
        )
        return self._answer(request, checked, words, None)

    def _answer(
        self, request, checked: Checked, words: list[list[Word]], paths: list[np.ndarray] | None
    ) -> pb_utils.InferenceResponse:
        """The response from the decoded ``words``; asked for ``WORDS``, their times from the frames
        (``paths``: greedy's best paths, None after beam search) and the audio's energy."""
        if asked_for(request, WORDS):
            best = paths if paths is not None else self.greedy.best_paths(checked.logits, checked.num_samples)
            scores = checked.logits if self.beam is not None else None
            words = self.aligner.batch(words, checked.cuts, best, scores, optional(request, FRAME_RMS))
        return self._response(request, words)

    def _beam(
        self,
        logits: np.ndarray,
        num_samples: np.ndarray,
        cuts: list[int],
        hotwords: list[str] | None,
        weight: float,
    ) -> Generator[None, None, list[list[Word]]]:
        """Beam search within its budgets, a piece a turn; a fallback to greedy is said in the log."""
        decoded = yield from self.beam.decoding(logits, num_samples, cuts, hotwords=hotwords, weight=weight)
        self._warn_greedy(sum(d.greedy_frames for d in decoded))
        return [d.words for d in decoded]

    def _response(self, request, words: list[list[Word]]):
        """Each utterance's transcript from its words (computed once), and the words when asked for."""
        outputs = [strings(TRANSCRIPT, [transcript(w) for w in words])]
        if asked_for(request, WORDS):
            outputs.append(strings(WORDS, [words_json(w, self.spec.frame_seconds) for w in words]))
        return pb_utils.InferenceResponse(outputs)

    @staticmethod
    def _warn_greedy(frames: int) -> None:
        """Say in the server's log when part of a request was decoded greedily, past the search's budget."""
        if frames:
            pb_utils.Logger.log_warn(
                f"ctc_decoder: {frames} frames of a request decoded greedily, past the beam search's budget "
                f"({MAX_CANDIDATES_PER_FRAME:g} tokens a frame on average, {SEARCH_SHARE:.0%} of the audio's "
                "duration in search time)"
            )
