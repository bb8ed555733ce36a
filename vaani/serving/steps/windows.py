"""Step 2 of `asr`: a recording's windows through the acoustic model, and their logits joined.

What goes on to the decoder is what it needs in its smallest form: the best token of each
frame for greedy decoding (``FRAME_TOKENS``), the logits for beam search (``LOGITS``).

Each window goes to the `wav2vec2` model as its own request (BLS), so the windows of one long
recording and of every other request meet in the acoustic model's dynamic batcher and share
its executions, whatever engine serves it (python engines, or a TensorRT plan that Triton
runs). At most ``windows_in_flight`` windows of a request are out at once, and the acoustic
model bounds the audio of each execution: memory stays bounded however long the recording.
"""

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import (
    ACOUSTIC,
    ATTENTION_MASK,
    FRAME_TOKENS,
    INPUT_VALUES,
    LOGITS,
    NUM_SAMPLES,
    WINDOW_PLAN,
    WINDOWS,
)
from vaani.serving.ctc import best_tokens
from vaani.serving.preprocessing import pad_to_bucket, sample_mask
from vaani.serving.step import StepContext
from vaani.serving.windowing import FIELDS, SILENT, from_tensor, join, problem, silence_logits, split


class WindowFailed(Exception):
    """The acoustic model refused a window; the message and code are its own."""

    def __init__(self, error):
        super().__init__(error.message())
        self.error = error


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.plan = context.window_plan()
        self.max_samples = int(context.number("max_samples", 480_000))
        self.bucket = int(context.number("bucket_samples", 0))
        self.in_flight = int(context.number("windows_in_flight", 16))
        names = context.parameters.get("acoustic_inputs", f"{INPUT_VALUES},{NUM_SAMPLES}")
        self.acoustic_inputs = names.split(",")
        self.output = context.parameters.get("decoder_input", LOGITS)

    async def execute(self, requests):
        return list(await asyncio.gather(*(self._one(request) for request in requests)))

    async def _one(self, request):
        flat = pb_utils.get_input_tensor_by_name(request, WINDOWS).as_numpy()
        plan = pb_utils.get_input_tensor_by_name(request, WINDOW_PLAN).as_numpy()
        num_samples = pb_utils.get_input_tensor_by_name(request, NUM_SAMPLES).as_numpy()
        problem = self._problem(flat, plan, num_samples)
        if problem:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(problem, pb_utils.TritonError.INVALID_ARG)
            )
        windows = from_tensor(plan)
        gate = asyncio.Semaphore(self.in_flight)
        jobs = [
            self._silence(piece.shape[0], window)
            if window.kind == SILENT
            else self._run(piece, gate, request)
            for piece, window in zip(split(flat, windows), windows)
        ]
        try:
            logits = await asyncio.gather(*jobs)
        except WindowFailed as failure:
            return pb_utils.InferenceResponse(error=failure.error)
        joined = join(logits, windows)
        if self.output == FRAME_TOKENS:
            return pb_utils.InferenceResponse([pb_utils.Tensor(FRAME_TOKENS, best_tokens(joined))])
        return pb_utils.InferenceResponse([pb_utils.Tensor(LOGITS, joined)])

    def _problem(self, flat, plan, num_samples):
        """Why these tensors are not what `preprocess` sends (the step can be called directly)."""
        rows = flat.shape[0] if flat.ndim == 2 else -1
        if flat.ndim != 2 or num_samples.shape != (rows, 1) or plan.ndim != 2 or plan.shape[0] != rows:
            shapes = f"{list(flat.shape)}, {list(plan.shape)} and {list(num_samples.shape)}"
            return f"WINDOWS, WINDOW_PLAN and NUM_SAMPLES must be [batch, …] of one batch; got {shapes}"
        samples = int(num_samples[0, 0])
        spec = self.plan.spec
        if (num_samples != samples).any() or not spec.receptive_field <= samples <= self.max_samples:
            return f"NUM_SAMPLES must be one length from {spec.receptive_field} to {self.max_samples}"
        if plan.shape[1] == 0 or plan.shape[1] % FIELDS or (plan != plan[:1]).any():
            return f"WINDOW_PLAN must hold {FIELDS} numbers per window, the same on every row"
        wrong = problem(from_tensor(plan), samples, flat.shape[1], spec, self.plan.longest)
        if wrong:
            return f"WINDOW_PLAN: {wrong}"
        if not np.isfinite(flat).all():
            return "WINDOWS contains NaN or Inf"
        return None

    async def _silence(self, rows, window):
        spec = self.plan.spec
        return silence_logits(rows, window.keep_to, spec.vocab_size, spec.blank_id)

    async def _run(self, piece, gate, request):
        values = pad_to_bucket(piece, self.bucket)
        rows, samples = values.shape
        tensors = {
            INPUT_VALUES: lambda: values,
            NUM_SAMPLES: lambda: np.full((rows, 1), piece.shape[1], dtype=np.int64),
            ATTENTION_MASK: lambda: sample_mask(rows, samples, piece.shape[1]),  # a plan's input
        }
        inputs = [pb_utils.Tensor(name, tensors[name]()) for name in self.acoustic_inputs]
        async with gate:
            if request.is_cancelled():
                raise WindowFailed(
                    pb_utils.TritonError("cancelled by the client", pb_utils.TritonError.CANCELLED)
                )
            call = pb_utils.InferenceRequest(
                model_name=ACOUSTIC, requested_output_names=[LOGITS], inputs=inputs
            )
            response = await call.async_exec()
        if response.has_error():
            raise WindowFailed(response.error())
        return pb_utils.get_output_tensor_by_name(response, LOGITS).as_numpy()
