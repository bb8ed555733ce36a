"""Step 3 of `asr`: CTC over each utterance's own frames; UTF-8 text out, and word times if asked.

Greedy decoding reads each frame's best token (``FRAME_TOKENS``, what `wav2vec2` sends it);
beam search reads ``LOGITS``. A direct caller may send ``LOGITS`` to either.

Greedy, or beam search (with the repository's KenLM when the build put one in ``language_model/``)
when the config's ``decoder`` parameter says ``beam``. Optional per-request ``HOTWORDS`` and
``HOTWORD_WEIGHT`` steer the beam. Each request is checked on its own (the step can be called
directly, past `preprocess`): a bad one gets INVALID_ARG, the rest of the batch is decoded.

Its work is bounded for any request: at most the frames of ``max_samples`` (the repository's
``--max-audio-seconds``) per utterance, a ``WINDOW_PLAN`` only as `preprocess` makes it, and a beam
search in pieces of one window's frames, greedy for a piece whose logits are too flat to search
cheaply or once the request has spent its search time (`vaani.serving.beam`; the step logs a
warning when that happens).
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.beam import LM_DIR, MAX_CANDIDATES_PER_FRAME, SEARCH_SHARE, BeamDecoder
from vaani.serving.contract import (
    FRAME_TOKENS,
    HOTWORD_WEIGHT,
    HOTWORDS,
    LOGITS,
    NUM_SAMPLES,
    SAMPLING_RATE,
    TRANSCRIPT,
    WINDOW_PLAN,
    WORDS,
)
from vaani.serving.ctc import DecoderInputError, GreedyDecoder, check_decoder_inputs, words_json
from vaani.serving.step import StepContext
from vaani.serving.windowing import breaks, from_tensor, plan_problem


def _strings(values: list[str]) -> np.ndarray:
    return np.array([[v.encode("utf-8")] for v in values], dtype=np.object_)


def _optional(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _error(message: str, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.spec = context.spec()
        self.plan = context.window_plan()
        self.max_samples = int(context.number("max_samples", 480_000))
        self.greedy = GreedyDecoder(self.spec)
        self.beam = None
        if context.parameters.get("decoder") == "beam":
            lm_dir = context.version_dir / LM_DIR
            self.beam = BeamDecoder(
                self.spec,
                lm_dir if lm_dir.is_dir() else None,
                int(context.number("beam_width", 64)),
                piece_frames=self.plan.chunk // self.spec.samples_per_frame,
                longest_seconds=self.max_samples / SAMPLING_RATE,
            )

    def _cuts(self, request, num_samples: np.ndarray) -> list[int]:
        """Frames where decoding starts afresh: the pauses of a checked plan (none: one window)."""
        plan = _optional(request, WINDOW_PLAN)
        if plan is None:
            return [0]
        problem = plan_problem(plan, num_samples.reshape(-1, 1), self.plan, self.max_samples)
        if problem:
            raise DecoderInputError(problem)
        return breaks(from_tensor(plan), self.spec.samples_per_frame)

    def _decode(self, request):
        logits, tokens = _optional(request, LOGITS), _optional(request, FRAME_TOKENS)
        if self.beam is not None and (logits is None or tokens is not None):
            raise DecoderInputError("the beam-search decoder takes LOGITS (and no FRAME_TOKENS)")
        if (logits is None) == (tokens is None):
            raise DecoderInputError("the greedy decoder takes one of LOGITS and FRAME_TOKENS")
        num_samples = pb_utils.get_input_tensor_by_name(request, NUM_SAMPLES).as_numpy()
        hotwords, weight = check_decoder_inputs(
            self.spec,
            logits if tokens is None else tokens,
            num_samples,
            self.max_samples,
            _optional(request, HOTWORDS),
            _optional(request, HOTWORD_WEIGHT),
        )
        cuts = self._cuts(request, num_samples)
        if self.beam is not None:
            decoded = self._beam(logits, num_samples, cuts, hotwords, weight)
        else:
            paths = (
                self.greedy.best_paths(logits, num_samples)
                if tokens is None
                else self.greedy.own_frames(tokens, num_samples)
            )
            decoded = [(self.greedy.decode_ids(p, cuts), self.greedy.words_ids(p, cuts)) for p in paths]
        return self._response(request, decoded)

    def _beam(
        self,
        logits: np.ndarray,
        num_samples: np.ndarray,
        cuts: list[int],
        hotwords: list[str] | None,
        weight: float,
    ) -> list[tuple[str, list]]:
        """Beam search within its budgets; a fallback to greedy decoding is said in the log."""
        decoded = self.beam.decode(logits, num_samples, cuts, hotwords=hotwords, weight=weight)
        self._warn_greedy(sum(d.greedy_frames for d in decoded))
        return [(d.text, d.words) for d in decoded]

    def _response(self, request, decoded: list[tuple[str, list]]):
        outputs = [pb_utils.Tensor(TRANSCRIPT, _strings([text for text, _ in decoded]))]
        if WORDS in request.requested_output_names():
            words = [words_json(w, self.spec.frame_seconds) for _, w in decoded]
            outputs.append(pb_utils.Tensor(WORDS, _strings(words)))
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

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._decode(request))
            except DecoderInputError as error:
                responses.append(_error(str(error), pb_utils.TritonError.INVALID_ARG))
            except Exception as error:  # a decoder failure fails its request, not the batch
                message = f"ctc_decoder failed: {type(error).__name__}: {error}"
                responses.append(_error(message, pb_utils.TritonError.INTERNAL))
        return responses
