"""Step 1 of `asr`: check the audio, normalize it as Wav2Vec2FeatureExtractor does, pad to a bucket."""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import ATTENTION_MASK, AUDIO, INPUT_VALUES, NUM_SAMPLES
from vaani.serving.preprocessing import AudioError, AudioLimits, normalize, pad_to_bucket
from vaani.serving.step import StepContext


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.limits = AudioLimits(
            min_samples=int(context.number("min_samples", 400)),
            max_samples=int(context.number("max_samples", 480_000)),
        )
        self.bucket = int(context.number("bucket_samples", 0))

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        audio = pb_utils.get_input_tensor_by_name(request, AUDIO).as_numpy()
        try:
            self.limits.check(audio)
        except AudioError as error:
            invalid = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)  # HTTP 400
            return pb_utils.InferenceResponse(error=invalid)
        values, mask = pad_to_bucket(normalize(audio), self.bucket)
        num_samples = np.full((audio.shape[0], 1), audio.shape[1], dtype=np.int64)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(INPUT_VALUES, values),
                pb_utils.Tensor(ATTENTION_MASK, mask),
                pb_utils.Tensor(NUM_SAMPLES, num_samples),
            ]
        )
