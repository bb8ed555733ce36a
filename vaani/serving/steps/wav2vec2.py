"""Step 2 of `asr` for python-backend engines: every window of every request in one engine call.

`preprocess` sends each recording as its windows end to end (``WINDOWS``, ``WINDOW_LAYOUT``).
Here the windows of all requests in the execution go to the engine together (packed on a
GPU), and each request's logits are joined from its windows' kept frames: long recordings
and short clips share the same runs, with no BLS hop between steps (the `windows` step does
this by BLS for a TensorRT plan, which cannot). The engine bounds the audio of each run
(`Limits.max_batch_samples`), so memory stays bounded however long the recording. The
decoder gets what it reads: each frame's best token for greedy decoding, else the logits.

The step can be called directly, so each request is checked on its own: a bad one gets its
own error and the rest of the execution runs. A cancelled request is dropped before the
engine spends anything on it.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import FRAME_TOKENS, LOGITS
from vaani.serving.ctc import best_tokens
from vaani.serving.engines.base import Limits, host_array
from vaani.serving.engines.registry import instance_device, load_engine
from vaani.serving.step import StepContext
from vaani.serving.steps.boundary import Refused, Windowed, cancelled, failed, refused, windowed
from vaani.serving.windowing import SILENT, join, silence_logits


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.spec = context.spec()
        self.windowing = context.windowing()
        self.max_samples = context.max_samples()
        self.max_padding = context.number("max_padding", 1.0)
        self.output = context.parameters.get("decoder_input", LOGITS)
        device = instance_device(context.instance_kind, context.device_id)
        self.engine = load_engine(
            context.parameters["engine"], context.version_dir, context.parameters, device
        )
        self.engine.limits = Limits(
            min_samples=self.spec.receptive_field,
            max_samples=self.windowing.longest,
            max_batch_samples=int(context.number("max_batch_samples", Limits.max_batch_samples)),
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        accepted: list[tuple[int, Windowed]] = []  # (index of the request, its checked windows)
        for index, request in enumerate(requests):
            if request.is_cancelled():
                responses[index] = cancelled()
                continue
            try:
                accepted.append((index, windowed(request, self.windowing, self.max_samples, host_array)))
            except Refused as error:
                responses[index] = refused(str(error))
        try:
            logits = self._logits([recording for _, recording in accepted])
        except Exception as error:  # an engine failure fails these requests, not the server
            for index, _ in accepted:
                responses[index] = failed("wav2vec2 engine", error)
            return responses
        for (index, recording), parts in zip(accepted, logits):
            responses[index] = self._response(join(parts, recording.windows))
        return responses

    def _logits(self, recordings: list[Windowed]) -> list[list[np.ndarray]]:
        """Each recording's per-window logits; the audible windows of all run together."""
        audible = [
            (n, k)
            for n, recording in enumerate(recordings)
            for k, w in enumerate(recording.windows)
            if w.kind != SILENT
        ]
        arrays = [self.engine.view(recordings[n].audio[k]) for n, k in audible]
        lengths = [[a.shape[1]] * a.shape[0] for a in arrays]
        ran = dict(zip(audible, self.engine.run_groups(arrays, lengths, self.spec.frames, self.max_padding)))
        return [
            [
                np.asarray(ran[(n, k)])
                if (n, k) in ran
                else silence_logits(piece.shape[0], window.keep_to, self.spec.vocab_size, self.spec.blank_id)
                for k, (window, piece) in enumerate(zip(recording.windows, recording.audio))
            ]
            for n, recording in enumerate(recordings)
        ]

    def _response(self, logits: np.ndarray):
        output = best_tokens(logits) if self.output == FRAME_TOKENS else logits
        return pb_utils.InferenceResponse([self.engine.to_triton(pb_utils.Tensor, self.output, output)])
