"""The TensorRT plan of the `wav2vec2` step, from build to serving, one module per idea.

`route` (where the plan is built: here or in the TensorRT image; the host-side work around
the build) runs `builder` (the in-image program: build the plan, transcribe with it) as a
command, never as an import; `half_precision` writes the strongly typed ONNX graph it builds
from, in one of the `precision` names; `shape_profile` derives the optimization profile
that both the builder and the model config use; `metadata` names the file beside a plan
that `plan_guard`, the GPU image's entrypoint, checks before `tritonserver` starts.

This file imports nothing: `builder` and `plan_guard` run in images where only the standard
library, numpy and vaani (without its dependencies) exist.
"""
