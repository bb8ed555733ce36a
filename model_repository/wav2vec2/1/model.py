"""Step 2 of `asr` for python-backend engines: one engine call for requests of any lengths."""

import triton_python_backend_utils as pb_utils

from vaani.batching import run_ragged
from vaani.engines import instance_device, load_engine
from vaani.triton_step import StepContext


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.frames = context.spec().frames
        self.max_padding = context.number("max_padding", 1.0)
        device = instance_device(context.instance_kind, context.device_id)
        self.engine = load_engine(
            context.parameters["engine"], context.version_dir, context.parameters, device
        )
        # Engines on a GPU take Triton's tensors through DLPack and pad on their device.
        self.dlpack = getattr(self.engine, "takes_dlpack", False)

    def execute(self, requests):
        values = [pb_utils.get_input_tensor_by_name(r, "INPUT_VALUES") for r in requests]
        masks = [pb_utils.get_input_tensor_by_name(r, "ATTENTION_MASK") for r in requests]
        try:
            if self.dlpack:
                logits = self.engine.run_ragged(
                    [v.to_dlpack() for v in values],
                    [m.to_dlpack() for m in masks],
                    self.frames,
                    self.max_padding,
                )
                outputs = [pb_utils.Tensor.from_dlpack("LOGITS", out.__dlpack__()) for out in logits]
            else:
                values = [v.as_numpy() for v in values]
                masks = [m.as_numpy() for m in masks]
                logits = run_ragged(values, masks, self.engine, self.frames, self.max_padding)
                outputs = [pb_utils.Tensor("LOGITS", out) for out in logits]
        except Exception as error:  # an engine failure fails these requests, not the server
            message = f"wav2vec2 engine failed: {type(error).__name__}: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        return [pb_utils.InferenceResponse([out]) for out in outputs]
