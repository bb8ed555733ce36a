"""Step 2 of `asr` when a TensorRT plan is the acoustic model: windows to it, their logits joined.

Python engines do this inside the `wav2vec2` step itself (no BLS hop); a plan cannot, so
this step cuts each request into the plan's requests.

What goes on to the decoder is what it needs in its smallest form: the best token of each
frame for greedy decoding (``FRAME_TOKENS``), the logits for beam search (``LOGITS``).

Each window goes to the plan as its own request (BLS), so the windows of one long recording
and of every other request meet in the plan's dynamic batcher and share its executions. At
most ``windows_in_flight`` windows of a request are out at once, and the plan's profile bounds
the audio of each execution: memory stays bounded however long the recording.
"""

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import ACOUSTIC, ATTENTION_MASK, FRAME_TOKENS, INPUT_VALUES, LOGITS
from vaani.serving.ctc import best_tokens
from vaani.serving.preprocessing import pad_to_bucket, sample_mask
from vaani.serving.step import StepContext
from vaani.serving.steps.boundary import Refused, Unanswered, cancelled, passed_on, refused, windowed
from vaani.serving.windowing import SILENT, Window, join, silence_logits


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.windowing = context.windowing()
        self.max_samples = context.max_samples()
        self.bucket = int(context.number("bucket_samples", 0))
        self.in_flight = int(context.number("windows_in_flight", 16))
        names = context.parameters.get("acoustic_inputs", f"{INPUT_VALUES},{ATTENTION_MASK}")
        self.takes_mask = ATTENTION_MASK in names.split(",")
        self.output = context.parameters.get("decoder_input", LOGITS)

    async def execute(self, requests):
        return list(await asyncio.gather(*(self._one(request) for request in requests)))

    async def _one(self, request):
        try:
            recording = windowed(request, self.windowing, self.max_samples)
        except Refused as error:
            return refused(str(error))
        gate = asyncio.Semaphore(self.in_flight)
        jobs = [
            self._silence(piece.shape[0], window)
            if window.kind == SILENT
            else self._run(piece, gate, request)
            for piece, window in zip(recording.audio, recording.windows)
        ]
        try:
            logits = await asyncio.gather(*jobs)
        except Unanswered as failure:
            return failure.answer
        joined = join(logits, recording.windows)
        if self.output == FRAME_TOKENS:
            return pb_utils.InferenceResponse([pb_utils.Tensor(FRAME_TOKENS, best_tokens(joined))])
        return pb_utils.InferenceResponse([pb_utils.Tensor(LOGITS, joined)])

    async def _silence(self, rows: int, window: Window) -> np.ndarray:
        spec = self.windowing.spec
        return silence_logits(rows, window.keep_to, spec.vocab_size, spec.blank_id)

    async def _run(self, piece: np.ndarray, gate: asyncio.Semaphore, request) -> np.ndarray:
        values = pad_to_bucket(piece, self.bucket)
        inputs = [pb_utils.Tensor(INPUT_VALUES, values)]
        if self.takes_mask:
            inputs.append(pb_utils.Tensor(ATTENTION_MASK, sample_mask(*values.shape, piece.shape[1])))
        async with gate:
            if request.is_cancelled():
                raise Unanswered(cancelled())
            call = pb_utils.InferenceRequest(
                model_name=ACOUSTIC, requested_output_names=[LOGITS], inputs=inputs
            )
            response = await call.async_exec()
        if response.has_error():
            raise Unanswered(passed_on(response.error()))
        return pb_utils.get_output_tensor_by_name(response, LOGITS).as_numpy()
