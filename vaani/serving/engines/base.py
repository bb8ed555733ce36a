"""The interface every python-backend engine of the `wav2vec2` step implements: `Engine`.

The step hands an engine the tensors of one Triton execution (requests of any lengths) and
gets back each request's logits as Triton tensors. Grouping by length is written once, here;
an engine says only how to make and pad arrays on its device and how to run one padded batch.
This module knows no engine by name (`registry` does), so an engine module imports it and
nothing here imports back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaani.serving.batching import plan_groups, prefix_lengths

Array = Any
"""An engine's array type: `numpy.ndarray` or `torch.Tensor`."""


class InvalidRequest(ValueError):
    """One request's tensors cannot be run; the message says why. The others of its batch go on."""


NOT_FINITE = "INPUT_VALUES contains NaN or Inf"


@dataclass(frozen=True)
class Limits:
    """What one request and one engine call may hold (the `wav2vec2` config's parameters)."""

    min_samples: int = 1
    max_samples: int = 2**62
    max_batch_samples: int = 2**62


class Engine(ABC):
    """Audio ``[rows, samples]`` (FP32) with each row's valid length in, logits ``[rows, frames, vocab]`` out.

    The audio comes normalized by `preprocess`, except for an engine that normalizes it on its
    own device (the `torch` engine, `TorchEngineOptions.normalize`).

    With ``best_tokens`` set (a greedy decoder reads only each frame's best token), `run_groups`
    gives ``[rows, frames]`` INT32 tokens instead of logits, taken where the logits are: on a GPU
    only the tokens cross to the host.
    """

    limits = Limits()
    best_tokens = False

    def warm(self) -> None:
        """Prepare, once ``limits`` and ``best_tokens`` are set, what the first requests would otherwise
        wait for (the `wav2vec2` step calls it before Triton says the model is ready); nothing here."""
        return

    def run_ragged(
        self,
        values: Sequence[Any],
        num_samples: Sequence[Any],
        frames: Callable[[int], int],
        max_padding: float = 1.0,
    ) -> list[Array | InvalidRequest]:
        """Each request's logits ``[rows_i, frames(samples_i), vocab]``, equal to running it alone.

        ``values[i]`` is ``[rows_i, samples_i]`` and ``num_samples[i]`` ``[rows_i, 1]``, the valid
        samples of each row (the rest is padding): Triton's tensors (`pb_utils.Tensor`) or the
        engine's own arrays. One length per row instead of a sample mask: the mask was two
        thirds of the bytes Triton copied into this step. A request that breaks the contract or
        the limits gets an `InvalidRequest` in its place and is not run.
        """
        results: list[Array | InvalidRequest | None] = [None] * len(values)
        arrays, row_lengths, valid = [], [], []
        for i, (value, counts) in enumerate(zip(values, num_samples)):
            try:
                array, lengths = self._checked(value, counts)
            except InvalidRequest as error:
                results[i] = error
                continue
            arrays.append(array)
            row_lengths.append(lengths)
            valid.append(i)
        for i, result in zip(valid, self.run_finite(arrays, row_lengths, frames, max_padding)):
            results[i] = result
        return results  # type: ignore[return-value]

    def run_finite(
        self,
        arrays: list[Array],
        row_lengths: list[list[int]],
        frames: Callable[[int], int],
        max_padding: float,
    ) -> list[Array | InvalidRequest]:
        """`run_groups` of the requests whose audio is finite; each other one gets an `InvalidRequest`.

        Checked here on the host; an engine that can check where it runs overrides this.
        """
        finite = [self.all_finite(a) for a in arrays]
        ran = iter(
            self.run_groups(
                [a for a, ok in zip(arrays, finite) if ok],
                [n for n, ok in zip(row_lengths, finite) if ok],
                frames,
                max_padding,
            )
        )
        return [next(ran) if ok else InvalidRequest(NOT_FINITE) for ok in finite]

    def run_groups(
        self,
        arrays: list[Array],
        row_lengths: list[list[int]],
        frames: Callable[[int], int],
        max_padding: float,
    ) -> list[Array]:
        """Each request's logits once its tensors are checked and each row's valid samples counted.

        Requests of similar lengths share a padded run; no run holds more than
        ``limits.max_batch_samples`` samples (rows are split across runs), which bounds memory.
        """
        arrays = [self.take(a) for a in arrays]
        widths = [a.shape[1] for a in arrays]
        rows = [a.shape[0] for a in arrays]
        results: list[Array | None] = [None] * len(arrays)
        for group in plan_groups(widths, rows, max_padding):
            per_call = max(1, self.limits.max_batch_samples // group.samples)
            pieces = [(i, r) for i in group.requests for r in range(rows[i])]
            blocks: dict[int, list[Array]] = {i: [] for i in group.requests}
            for start in range(0, len(pieces), per_call):
                chunk = pieces[start : start + per_call]
                batch = self.zeros(len(chunk), group.samples)
                lengths = [row_lengths[i][r] for i, r in chunk]
                for row, (i, r) in enumerate(chunk):
                    batch[row, : lengths[row]] = arrays[i][r, : lengths[row]]
                logits = self.to_host(self.reduced(self.forward(batch, lengths)))
                for row, (i, _) in enumerate(chunk):
                    blocks[i].append(logits[row : row + 1, : frames(widths[i])])
            for i in group.requests:
                results[i] = self.contiguous(self.concat(blocks[i]))
        return results  # type: ignore[return-value]

    def _checked(self, value: Any, num_samples: Any) -> tuple[Array, list[int]]:
        """The request's array and valid lengths per row, after the checks of shape and limits that
        `preprocess` made upstream (a client may call this step directly); `run_finite` checks the values."""
        array = self.view(value)
        counts = host_array(num_samples)
        if array.ndim != 2 or counts.shape != (array.shape[0], 1) or counts.dtype.kind not in "iu":
            raise InvalidRequest(
                f"INPUT_VALUES must be [batch, samples] and NUM_SAMPLES [batch, 1] integers of the same "
                f"batch; got {list(array.shape)} and {list(counts.shape)} ({counts.dtype})"
            )
        samples = array.shape[1]
        if not self.limits.min_samples <= samples <= self.limits.max_samples:
            raise InvalidRequest(
                f"INPUT_VALUES holds {samples} samples per row; this step takes "
                f"{self.limits.min_samples} to {self.limits.max_samples}"
            )
        lengths = [int(n) for n in counts.reshape(-1)]
        if not all(self.limits.min_samples <= n <= samples for n in lengths):
            raise InvalidRequest(
                f"NUM_SAMPLES must be from {self.limits.min_samples} (the model's receptive field) "
                f"to the {samples} samples of a row; got {lengths}"
            )
        return array, lengths

    def __call__(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """A padded numpy batch and its mask in, numpy logits out (the parity and accuracy gates)."""
        batch = self.take(np.ascontiguousarray(values, dtype=np.float32))
        return np.asarray(self.to_host(self.forward(batch, prefix_lengths(mask))))

    def view(self, tensor: Any) -> Array:
        """The engine's array for a Triton tensor or an array, where it already is (checks read it)."""
        return self.take(tensor)

    @abstractmethod
    def take(self, tensor: Any) -> Array:
        """The engine's array, on its device, for a Triton tensor or an array."""

    @abstractmethod
    def zeros(self, rows: int, samples: int) -> Array:
        """A zero FP32 batch on the engine's device."""

    @abstractmethod
    def forward(self, batch: Array, lengths: list[int]) -> Array:
        """Logits of one padded batch whose rows hold ``lengths`` valid samples."""

    def reduced(self, logits: Array) -> Array:
        """What `run_groups` gives for ``logits`` ``[..., vocab]``: themselves, or their best tokens."""
        return logits.argmax(axis=-1).astype(np.int32) if self.best_tokens else logits

    def to_host(self, logits: Array) -> Array:
        """Logits where Triton can take them (host memory); CPU engines have them there."""
        return logits

    def contiguous(self, logits: Array) -> Array:
        return np.ascontiguousarray(logits)

    def all_finite(self, array: Array) -> bool:
        return bool(np.isfinite(array).all())

    def concat(self, blocks: list[Array]) -> Array:
        return np.concatenate(blocks)

    def to_triton(self, tensor_type: Any, name: str, array: np.ndarray) -> Any:
        """A response tensor of ``tensor_type`` (the step passes `pb_utils.Tensor`) holding ``array``.

        Numpy arrays go in by value: the stub's DLPack import of a numpy capsule fails to release it.
        """
        return tensor_type(name, array)


def host_array(tensor: Any) -> np.ndarray:
    """A Triton input tensor (host memory) as numpy, read through DLPack.

    Through DLPack, not `as_numpy`: in a stub whose numpy is 2.x (the `torch` engine's, for
    transformers) `as_numpy` misreads INT64 tensors as INT32, and the dtype DLPack carries is
    exact. Triton hands python-backend inputs over in host memory (``FORCE_CPU_ONLY_INPUT_TENSORS``
    is left at its default).
    """
    if isinstance(tensor, np.ndarray):
        return tensor
    if hasattr(tensor, "__dlpack__"):
        return np.from_dlpack(tensor)
    if hasattr(tensor, "as_numpy"):  # a stand-in of the stub's tensor (tests)
        return tensor.as_numpy()
    return tensor.cpu().numpy()
