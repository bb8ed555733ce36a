"""Step 3 of `asr`: CTC over each utterance's own frames; UTF-8 text out, and word times if asked.

Greedy decoding reads each frame's best token (``FRAME_TOKENS``, what `wav2vec2` sends it);
beam search reads ``LOGITS``. A direct caller may send ``LOGITS`` to either.

Greedy, or beam search (with the repository's KenLM when the build put one in ``language_model/``)
when the config's ``decoder`` parameter says ``beam``. Optional per-request ``HOTWORDS`` and
``HOTWORD_WEIGHT`` steer the beam. Each request is checked on its own (the step can be called
directly, past `preprocess`): a bad one gets INVALID_ARG, the rest of the batch is decoded.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import (
    FRAME_TOKENS,
    HOTWORD_WEIGHT,
    HOTWORDS,
    LOGITS,
    NUM_SAMPLES,
    TRANSCRIPT,
    WINDOW_PLAN,
    WORDS,
)
from vaani.serving.ctc import DecoderInputError, GreedyDecoder, check_decoder_inputs, words_json
from vaani.serving.step import StepContext
from vaani.serving.windowing import FIELDS, breaks, from_tensor


def _strings(values: list[str]) -> np.ndarray:
    return np.array([[v.encode("utf-8")] for v in values], dtype=np.object_)


def _optional(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.spec = context.spec()
        self.greedy = GreedyDecoder(self.spec)
        self.beam = None
        if context.parameters.get("decoder") == "beam":
            from vaani.serving.beam import LM_DIR, BeamDecoder

            lm_dir = context.version_dir / LM_DIR
            self.beam = BeamDecoder(
                self.spec, lm_dir if lm_dir.is_dir() else None, int(context.number("beam_width", 64))
            )

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
            _optional(request, HOTWORDS),
            _optional(request, HOTWORD_WEIGHT),
        )
        plan = _optional(request, WINDOW_PLAN)  # a direct caller may send none: one window
        if plan is not None and (plan.ndim != 2 or plan.shape[1] == 0 or plan.shape[1] % FIELDS):
            shape = list(plan.shape)
            raise DecoderInputError(f"WINDOW_PLAN must be [batch, {FIELDS} × windows]; got {shape}")
        cuts = [0] if plan is None else breaks(from_tensor(plan), self.spec.samples_per_frame)
        if self.beam is not None:
            decoded = self.beam.decode(logits, num_samples, cuts, hotwords=hotwords, weight=weight)
        else:
            paths = (
                self.greedy.best_paths(logits, num_samples)
                if tokens is None
                else self.greedy.own_frames(tokens, num_samples)
            )
            decoded = [(self.greedy.decode_ids(p, cuts), self.greedy.words_ids(p, cuts)) for p in paths]
        outputs = [pb_utils.Tensor(TRANSCRIPT, _strings([text for text, _ in decoded]))]
        if WORDS in request.requested_output_names():
            words = [words_json(w, self.spec.frame_seconds) for _, w in decoded]
            outputs.append(pb_utils.Tensor(WORDS, _strings(words)))
        return pb_utils.InferenceResponse(outputs)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._decode(request))
            except DecoderInputError as error:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                    )
                )
        return responses
