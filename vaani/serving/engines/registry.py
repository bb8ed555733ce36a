"""The python-backend engines by name: what the `wav2vec2` step's `engine` parameter picks.

The one module that knows every engine, so the base (`vaani.serving.engines.base`) knows none
and the arrows run one way: registry → engine → base. Each engine module imports its runtime
(ONNX Runtime, PyTorch) at module level, so the registry imports an engine only when it is
chosen: a CPU server never loads torch.
"""

from __future__ import annotations

from pathlib import Path

from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import SPEC_FILE
from vaani.serving.engines.base import Engine

PYTHON_ENGINES = ("onnxruntime", "torch")


def instance_device(kind: str, device_id: int) -> str:
    """The torch device of a Triton model instance (``model_instance_kind``/``_device_id``)."""
    return f"cuda:{device_id}" if kind.upper().endswith("GPU") else "cpu"


def load_engine(name: str, version_dir: Path, parameters: dict[str, str], device: str = "cpu") -> Engine:
    """Build the engine ``name`` from the files `vaani build` put in ``version_dir``.

    ``device`` is where the instance runs (`instance_device`); CPU-only engines ignore it.
    """
    if name == "onnxruntime":
        from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(
            version_dir / "model.onnx",
            threads=int(parameters.get("threads", "0")),
            memory_arena=parameters.get("memory_arena", "false") == "true",
            frames=AcousticSpec.load(version_dir / SPEC_FILE).frames,
        )
    if name == "torch":
        from vaani.serving.engines.torch_engine import HF_SUBDIR, TorchEngine, TorchEngineOptions

        options = TorchEngineOptions.from_parameters(parameters)
        return TorchEngine.load(version_dir / HF_SUBDIR, device, options)
    raise ValueError(f"unknown python-backend engine {name!r}; known: {', '.join(PYTHON_ENGINES)}")
