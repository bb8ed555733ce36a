"""Step 2 of `asr` for python-backend engines: one engine call for requests of any lengths."""

import triton_python_backend_utils as pb_utils

from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS
from vaani.serving.engines import instance_device, load_engine
from vaani.serving.step import StepContext


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.frames = context.spec().frames
        self.max_padding = context.number("max_padding", 1.0)
        device = instance_device(context.instance_kind, context.device_id)
        self.engine = load_engine(
            context.parameters["engine"], context.version_dir, context.parameters, device
        )

    def execute(self, requests):
        values = [pb_utils.get_input_tensor_by_name(r, INPUT_VALUES) for r in requests]
        masks = [pb_utils.get_input_tensor_by_name(r, ATTENTION_MASK) for r in requests]
        try:
            logits = self.engine.run_ragged(values, masks, self.frames, self.max_padding)
        except Exception as error:  # an engine failure fails these requests, not the server
            message = f"wav2vec2 engine failed: {type(error).__name__}: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        outputs = [self.engine.to_triton(pb_utils.Tensor, LOGITS, out) for out in logits]
        return [pb_utils.InferenceResponse([out]) for out in outputs]
