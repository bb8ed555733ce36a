"""Engines of the `wav2vec2` step that run inside the python backend.

Each takes normalized audio ``[batch, samples]`` (float32) and its attention mask
(int64) and returns logits ``[batch, frames, vocab]`` (float32). The `tensorrt` engine
is not here: Triton runs that plan itself (``platform: "tensorrt_plan"``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Engine = Callable[[np.ndarray, np.ndarray], np.ndarray]

PYTHON_ENGINES = ("onnxruntime", "torch")


def instance_device(kind: str, device_id: int) -> str:
    """The torch device of a Triton model instance (``model_instance_kind``/``_device_id``)."""
    return f"cuda:{device_id}" if kind.upper().endswith("GPU") else "cpu"


def load_engine(name: str, version_dir: Path, parameters: dict[str, str], device: str = "cpu") -> Engine:
    """Build the engine ``name`` from the files `vaani build` put in ``version_dir``.

    ``device`` is where the instance runs (`instance_device`); CPU-only engines ignore it.
    """
    if name == "onnxruntime":
        from vaani.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(version_dir / "model.onnx", threads=int(parameters.get("threads", "0")))
    if name == "torch":
        from vaani.engines.torch_engine import HF_SUBDIR, TorchEngine, TorchEngineOptions

        options = TorchEngineOptions.from_parameters(parameters)
        return TorchEngine.load(version_dir / HF_SUBDIR, device, options)
    raise ValueError(f"unknown python-backend engine {name!r}; known: {', '.join(PYTHON_ENGINES)}")
