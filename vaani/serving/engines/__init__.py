"""Engines of the `wav2vec2` step that run inside the python backend, behind one interface.

`base` holds the interface (`Engine`) and what every engine shares; each engine is its own
module (`onnxruntime`, `torch_engine` and its helpers) and imports its runtime at module level;
`registry` picks one by name and imports only that one. This file imports nothing, so loading
an engine module loads no other engine. The `tensorrt` engine is not here: Triton runs that
plan itself (``platform: "tensorrt_plan"``).
"""
