"""Step 2 of `asr` for python-backend engines: one engine call for requests of any lengths.

The step can be called directly, so the engine checks each request's tensors and limits
itself (`Engine.run_ragged`): a bad request gets its own error and the rest of the batch
runs. A request its client cancelled is dropped before the engine spends anything on it.
"""

import triton_python_backend_utils as pb_utils

from vaani.serving.contract import INPUT_VALUES, LOGITS, NUM_SAMPLES
from vaani.serving.engines import InvalidRequest, Limits, instance_device, load_engine
from vaani.serving.step import StepContext


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        spec = context.spec()
        self.frames = spec.frames
        self.max_padding = context.number("max_padding", 1.0)
        device = instance_device(context.instance_kind, context.device_id)
        self.engine = load_engine(
            context.parameters["engine"], context.version_dir, context.parameters, device
        )
        self.engine.limits = Limits(
            min_samples=spec.receptive_field,
            max_samples=int(context.number("max_samples", Limits.max_samples)),
            max_batch_samples=int(context.number("max_batch_samples", Limits.max_batch_samples)),
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        live = []
        for index, request in enumerate(requests):
            if request.is_cancelled():
                cancelled = pb_utils.TritonError("cancelled by the client", pb_utils.TritonError.CANCELLED)
                responses[index] = pb_utils.InferenceResponse(error=cancelled)
            else:
                live.append(index)
        values = [pb_utils.get_input_tensor_by_name(requests[i], INPUT_VALUES) for i in live]
        lengths = [pb_utils.get_input_tensor_by_name(requests[i], NUM_SAMPLES) for i in live]
        try:
            outputs = self.engine.run_ragged(values, lengths, self.frames, self.max_padding)
        except Exception as error:  # an engine failure fails these requests, not the server
            message = f"wav2vec2 engine failed: {type(error).__name__}: {error}"
            outputs = [pb_utils.TritonError(message)] * len(live)
        for index, out in zip(live, outputs):
            responses[index] = self._response(out)
        return responses

    def _response(self, out):
        if isinstance(out, InvalidRequest):
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(str(out), pb_utils.TritonError.INVALID_ARG)
            )
        if isinstance(out, pb_utils.TritonError):
            return pb_utils.InferenceResponse(error=out)
        return pb_utils.InferenceResponse([self.engine.to_triton(pb_utils.Tensor, LOGITS, out)])
