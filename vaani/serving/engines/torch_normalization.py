"""Wav2Vec2's input normalization on the `torch` engine's device, for padded and packed audio.

Why here and not in `preprocess`: on a GPU the statistics of a whole execution's audio cost
microseconds, while `preprocess` on the CPU spent milliseconds per request on them, with
Triton waiting. The arithmetic is `vaani.serving.preprocessing.normalize`'s (FP32, population
variance, ``1e-7`` under the root) over each row's valid samples; padding stays zero.
Normalizing audio that is already normalized changes it by under one part in ten million,
so a direct caller that sends normalized `INPUT_VALUES` gets what it got before.
"""

from __future__ import annotations

import numpy as np
import torch

from vaani.serving.engines.torch_packing import Packing

EPSILON = 1e-7


def normalize_padded(batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``batch`` ``[rows, samples]`` with each row's first ``lengths`` samples normalized, zeros after."""
    valid = torch.arange(batch.shape[1], device=batch.device)[None, :] < lengths[:, None]
    count = lengths.to(batch.dtype)[:, None].clamp(min=1)
    mean = batch.masked_fill(~valid, 0.0).sum(dim=1, keepdim=True) / count
    centered = (batch - mean).masked_fill(~valid, 0.0)
    variance = centered.square().sum(dim=1, keepdim=True) / count
    return centered * torch.rsqrt(variance + EPSILON)


def normalize_packed(audio: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Packed ``audio`` (`Packing`'s layout) with each utterance normalized; the gaps stay zero.

    Utterance *i* and the gap after it are segments ``2i`` and ``2i + 1``: one scatter-add sums
    every segment at once, whatever the number of utterances.
    """
    # Host arithmetic in numpy: torch's CPU ops wake its OpenMP pool, which spins against the
    # server's other processes.
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
