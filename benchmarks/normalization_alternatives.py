"""The packed normalizations the `torch` engine does not use, timed beside its own by the GPU benchmark.

Why they are kept: the engine's scatter-add (2026-12-04) cost it a third of its speed before anyone
re-ran the benchmark, and it was replaced by block sums (`vaani.serving.engines.torch_normalization`)
on a GPU run that timed both; every later run times them again side by side (normalization alone,
and the engine with the scatter-add swapped back in), so the choice stays measured. The two other
ways to take segment sums that were considered are here too, with why they lost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vaani.serving.engines.torch_normalization import EPSILON, Segments, normalize_segments
from vaani.serving.engines.torch_packing import Packing


def normalize_packed_scatter(audio: torch.Tensor, packing: Packing) -> torch.Tensor:
    """The engine's normalization before block sums: utterance *i* and the gap after it are segments
    ``2i`` and ``2i + 1``, summed by two `index_add_` scatter-adds (whose atomics serialize on a GPU)."""
    samples = np.asarray(packing.samples, dtype=np.int64)
    slots = np.diff(np.append(packing.sample_starts, packing.total_samples))
    lengths = torch.from_numpy(np.stack([samples, slots - samples], axis=1).reshape(-1)).to(audio.device)
    segment = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=audio.device), lengths, output_size=audio.numel()
    )
    count = lengths.to(audio.dtype).clamp(min=1)
    mean = torch.zeros_like(count).index_add_(0, segment, audio) / count
    centered = audio - mean[segment]
    variance = torch.zeros_like(count).index_add_(0, segment, centered.square()) / count
    return centered * torch.rsqrt(variance + EPSILON)[segment]


def cumulative_sums(audio: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Segment sums as a float64 cumulative sum read at utterance boundaries (rejected).

    Fast, but its rounding grows with everything summed before an utterance: a quiet clip
    packed after loud ones loses digits (tests/test_torch_engine.py holds the case that fails it).
    """
    x = audio.double()
    sums = F.pad(torch.stack([x, x * x]).cumsum(1), (1, 0))
    start = segments.first * segments.stride
    return sums[:, start + segments.samples] - sums[:, start]


def segment_reduce_sums(audio: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Segment sums through `torch.segment_reduce` over utterances and their gaps, in float64."""
    x = audio.double()
    gaps = segments.blocks * segments.stride - segments.samples
    lengths = torch.stack([segments.samples, gaps], 1).reshape(-1)
    return torch.stack([torch.segment_reduce(v, "sum", lengths=lengths)[::2] for v in (x, x * x)])


def normalize_with(sums: Callable[[torch.Tensor, Segments], torch.Tensor]) -> Callable:
    """The engine's normalization with ``sums`` (`cumulative_sums`, `segment_reduce_sums`) in place of
    its block sums."""

    def normalize(audio: torch.Tensor, packing: Packing) -> torch.Tensor:
        if not packing.samples:
            return audio
        segments = Segments.of(packing, audio.device)
        return normalize_segments(audio, segments, sums(audio, segments))

    return normalize
