"""Step 1 of `asr`: check the audio, cut it into windows (at pauses), normalize each as HF does,
and measure each frame's loudness for the decoder's word times (``FRAME_RMS``).

A recording of one window or less is one window: the whole utterance, normalized as before.
A request that Triton reports cancelled is answered CANCELLED before any of this.
Where the acoustic engine normalizes on its own device (the `torch` engine, parameter
``normalize`` false here), the windows leave as they came.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.alignment import frame_rms
from vaani.serving.contract import AUDIO, FRAME_RMS, NUM_SAMPLES, WINDOW_LAYOUT, WINDOWS
from vaani.serving.preprocessing import AudioError, AudioLimits, normalize
from vaani.serving.step import StepContext
from vaani.serving.steps.boundary import cancelled, read, refused
from vaani.serving.windowing import cut, to_tensor


def _as_is(audio: np.ndarray) -> np.ndarray:
    return audio


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.limits = AudioLimits(
            min_samples=int(context.number("min_samples", 400)),
            max_samples=context.max_samples(),
        )
        self.windowing = context.windowing()
        self.spec = context.spec()
        self.normalize = normalize if context.parameters.get("normalize", "true") == "true" else _as_is

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        if request.is_cancelled():  # the client gave up: nothing is spent on it
            return cancelled()
        audio = read(request, AUDIO)
        try:
            self.limits.check(audio)
        except AudioError as error:
            return refused(str(error))
        windows = self.windowing.windows(audio)
        rows = audio.shape[0]
        frames = self.spec.frames(audio.shape[1])
        rms = np.stack([frame_rms(row, frames, self.spec.samples_per_frame) for row in audio])
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(WINDOWS, cut(audio, windows, self.normalize)),
                pb_utils.Tensor(WINDOW_LAYOUT, to_tensor(windows, rows)),
                pb_utils.Tensor(NUM_SAMPLES, np.full((rows, 1), audio.shape[1], dtype=np.int64)),
                pb_utils.Tensor(FRAME_RMS, rms),
            ]
        )
