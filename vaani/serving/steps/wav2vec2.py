"""Step 2 of `asr` for python-backend engines: every window of every request in one engine call.

`preprocess` sends each recording as its windows end to end (``WINDOWS``, ``WINDOW_PLAN``).
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

from vaani.serving.contract import FRAME_TOKENS, LOGITS, NUM_SAMPLES, WINDOW_PLAN, WINDOWS
from vaani.serving.ctc import best_tokens
from vaani.serving.engines.base import Limits, host_array
from vaani.serving.engines.registry import instance_device, load_engine
from vaani.serving.step import StepContext
from vaani.serving.windowing import SILENT, from_tensor, join, request_problem, silence_logits, split


def _error(message: str, code=None):
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(error=error)


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.spec = context.spec()
        self.plan = context.window_plan()
        self.max_samples = int(context.number("max_samples", 480_000))
        self.max_padding = context.number("max_padding", 1.0)
        self.output = context.parameters.get("decoder_input", LOGITS)
        device = instance_device(context.instance_kind, context.device_id)
        self.engine = load_engine(
            context.parameters["engine"], context.version_dir, context.parameters, device
        )
        self.engine.limits = Limits(
            min_samples=self.spec.receptive_field,
            max_samples=self.plan.longest,
            max_batch_samples=int(context.number("max_batch_samples", Limits.max_batch_samples)),
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        accepted = []  # (index of the request, its windows, their audio)
        for index, request in enumerate(requests):
            if request.is_cancelled():
                responses[index] = _error("cancelled by the client", pb_utils.TritonError.CANCELLED)
                continue
            flat, plan, num_samples = (
                host_array(pb_utils.get_input_tensor_by_name(request, name))
                for name in (WINDOWS, WINDOW_PLAN, NUM_SAMPLES)
            )
            problem = request_problem(flat, plan, num_samples, self.plan, self.max_samples)
            if problem:
                responses[index] = _error(problem, pb_utils.TritonError.INVALID_ARG)
                continue
            windows = from_tensor(plan)
            accepted.append((index, windows, split(flat, windows)))
        try:
            logits = self._logits(accepted)
        except Exception as error:  # an engine failure fails these requests, not the server
            for index, _, _ in accepted:
                responses[index] = _error(f"wav2vec2 engine failed: {type(error).__name__}: {error}")
            return responses
        for (index, windows, _), parts in zip(accepted, logits):
            responses[index] = self._response(join(parts, windows))
        return responses

    def _logits(self, accepted):
        """Each accepted request's per-window logits; the audible windows of all run together."""
        audible = [
            (n, k)
            for n, (_, windows, _) in enumerate(accepted)
            for k, w in enumerate(windows)
            if w.kind != SILENT
        ]
        arrays = [self.engine.view(accepted[n][2][k]) for n, k in audible]
        lengths = [[a.shape[1]] * a.shape[0] for a in arrays]
        ran = dict(zip(audible, self.engine.run_groups(arrays, lengths, self.spec.frames, self.max_padding)))
        return [
            [
                np.asarray(ran[(n, k)])
                if (n, k) in ran
                else silence_logits(piece.shape[0], window.keep_to, self.spec.vocab_size, self.spec.blank_id)
                for k, (window, piece) in enumerate(zip(windows, pieces))
            ]
            for n, (_, windows, pieces) in enumerate(accepted)
        ]

    def _response(self, logits: np.ndarray):
        output = best_tokens(logits) if self.output == FRAME_TOKENS else logits
        return pb_utils.InferenceResponse([self.engine.to_triton(pb_utils.Tensor, self.output, output)])
