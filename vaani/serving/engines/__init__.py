"""Engines of the `wav2vec2` step that run inside the python backend, behind one interface.

Every engine is an `Engine`: the step hands it the tensors of one Triton execution (requests
of any lengths) and gets back each request's logits as Triton tensors. Grouping by length
is written once, here; an engine says only how to make and pad arrays on its device and how
to run one padded batch. The `tensorrt` engine is not here: Triton runs that plan itself
(``platform: "tensorrt_plan"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaani.serving.batching import plan_groups, prefix_lengths

PYTHON_ENGINES = ("onnxruntime", "torch")

Array = Any
"""An engine's array type: `numpy.ndarray` or `torch.Tensor`."""


class Engine(ABC):
    """Normalized audio ``[rows, samples]`` (FP32) with its mask in, logits ``[rows, frames, vocab]`` out."""

    def run_ragged(
        self,
        values: Sequence[Any],
        masks: Sequence[Any],
        frames: Callable[[int], int],
        max_padding: float = 1.0,
    ) -> list[Array]:
        """Each request's logits ``[rows_i, frames(samples_i), vocab]``, equal to running it alone.

        ``values[i]`` and ``masks[i]`` are ``[rows_i, samples_i]``: Triton's tensors (`pb_utils.Tensor`)
        or the engine's own arrays; the mask is ones, then zeros, per row.
        """
        arrays = [self.take(v) for v in values]
        row_lengths = [self.valid_lengths(self.take(m)) for m in masks]
        return self.run_groups(arrays, row_lengths, frames, max_padding)

    def run_groups(
        self,
        arrays: list[Array],
        row_lengths: list[list[int]],
        frames: Callable[[int], int],
        max_padding: float,
    ) -> list[Array]:
        """`run_ragged` once the arrays are on the device and each row's valid samples are counted."""
        widths = [a.shape[1] for a in arrays]
        rows = [a.shape[0] for a in arrays]
        results: list[Array | None] = [None] * len(arrays)
        for group in plan_groups(widths, rows, max_padding):
            lengths = [n for i in group.requests for n in row_lengths[i]]
            batch = self.zeros(len(lengths), group.samples)
            start = 0
            for i in group.requests:
                batch[start : start + rows[i], : widths[i]] = arrays[i]
                start += rows[i]
            logits = self.to_host(self.forward(batch, lengths))
            start = 0
            for i in group.requests:
                results[i] = self.contiguous(logits[start : start + rows[i], : frames(widths[i])])
                start += rows[i]
        return results  # type: ignore[return-value]

    def __call__(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """A padded numpy batch and its mask in, numpy logits out (the parity and accuracy gates)."""
        batch = self.take(np.ascontiguousarray(values, dtype=np.float32))
        return np.asarray(self.to_host(self.forward(batch, prefix_lengths(mask))))

    @abstractmethod
    def take(self, tensor: Any) -> Array:
        """The engine's array, on its device, for a Triton tensor or an array."""

    @abstractmethod
    def valid_lengths(self, mask: Array) -> list[int]:
        """Valid samples per row of a mask that is ones, then zeros."""

    @abstractmethod
    def zeros(self, rows: int, samples: int) -> Array:
        """A zero FP32 batch on the engine's device."""

    @abstractmethod
    def forward(self, batch: Array, lengths: list[int]) -> Array:
        """Logits of one padded batch whose rows hold ``lengths`` valid samples."""

    def to_host(self, logits: Array) -> Array:
        """Logits where Triton can take them (host memory); CPU engines have them there."""
        return logits

    def contiguous(self, logits: Array) -> Array:
        return np.ascontiguousarray(logits)

    def to_triton(self, tensor_type: Any, name: str, logits: Array) -> Any:
        """A response tensor of ``tensor_type`` (the step passes `pb_utils.Tensor`) holding ``logits``.

        Numpy arrays go in by value: the stub's DLPack import of a numpy capsule fails to release it.
        """
        return tensor_type(name, logits)


def instance_device(kind: str, device_id: int) -> str:
    """The torch device of a Triton model instance (``model_instance_kind``/``_device_id``)."""
    return f"cuda:{device_id}" if kind.upper().endswith("GPU") else "cpu"


def load_engine(name: str, version_dir: Path, parameters: dict[str, str], device: str = "cpu") -> Engine:
    """Build the engine ``name`` from the files `vaani build` put in ``version_dir``.

    ``device`` is where the instance runs (`instance_device`); CPU-only engines ignore it.
    The engine modules import their runtime (ONNX Runtime, PyTorch), so only the chosen one loads.
    """
    if name == "onnxruntime":
        from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(version_dir / "model.onnx", threads=int(parameters.get("threads", "0")))
    if name == "torch":
        from vaani.serving.engines.torch_engine import HF_SUBDIR, TorchEngine, TorchEngineOptions

        options = TorchEngineOptions.from_parameters(parameters)
        return TorchEngine.load(version_dir / HF_SUBDIR, device, options)
    raise ValueError(f"unknown python-backend engine {name!r}; known: {', '.join(PYTHON_ENGINES)}")
