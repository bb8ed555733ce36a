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

PYTHON_ENGINES = ("onnxruntime",)


def load_engine(name: str, version_dir: Path, parameters: dict[str, str]) -> Engine:
    """Build the engine ``name`` from the files `vaani build` put in ``version_dir``."""
    if name == "onnxruntime":
        from vaani.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(version_dir / "model.onnx", threads=int(parameters.get("threads", "0")))
    raise ValueError(f"unknown python-backend engine {name!r}; known: {', '.join(PYTHON_ENGINES)}")
