"""Step 3 of `asr`: greedy CTC over each utterance's own frames, UTF-8 text out."""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import LOGITS, NUM_SAMPLES, TRANSCRIPT, WINDOW_PLAN
from vaani.serving.ctc import GreedyDecoder
from vaani.serving.step import StepContext
from vaani.serving.windowing import breaks, from_tensor


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
            texts = self.decoder.decode(logits, num_samples, cuts)
            transcript = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(TRANSCRIPT, transcript)]))
        return responses
