"""Step 3 of `asr`: CTC over each utterance's own frames; UTF-8 text out, and word times if asked."""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import LOGITS, NUM_SAMPLES, TRANSCRIPT, WINDOW_PLAN, WORDS
from vaani.serving.ctc import GreedyDecoder, words_json
from vaani.serving.step import StepContext
from vaani.serving.windowing import breaks, from_tensor


def _strings(values: list[str]) -> np.ndarray:
    return np.array([[v.encode("utf-8")] for v in values], dtype=np.object_)


class TritonPythonModel:
    def initialize(self, args):
        self.spec = StepContext(args).spec()
        self.decoder = GreedyDecoder(self.spec)

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, LOGITS).as_numpy()
            num_samples = pb_utils.get_input_tensor_by_name(request, NUM_SAMPLES).as_numpy()
            plan = pb_utils.get_input_tensor_by_name(request, WINDOW_PLAN).as_numpy()
            cuts = breaks(from_tensor(plan), self.spec.samples_per_frame)
            paths = self.decoder.best_paths(logits, num_samples)
            texts = [self.decoder.decode_ids(p, cuts) for p in paths]
            outputs = [pb_utils.Tensor(TRANSCRIPT, _strings(texts))]
            if WORDS in request.requested_output_names():
                words = [words_json(self.decoder.words_ids(p, cuts), self.spec.frame_seconds) for p in paths]
                outputs.append(pb_utils.Tensor(WORDS, _strings(words)))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
