"""Wav2Vec2's input normalization on the `torch` engine's device, for padded and packed audio.

Why here and not in `preprocess`: on a GPU the statistics of a whole execution's audio cost
microseconds, while `preprocess` on the CPU spent milliseconds per request on them, with
Triton waiting. The arithmetic is `vaani.serving.preprocessing.normalize`'s (FP32, population
variance, ``1e-7`` under the root) over each row's valid samples; padding stays zero.
Normalizing audio that is already normalized changes it by under one part in ten million,
so a direct caller that sends normalized `INPUT_VALUES` gets what it got before.

Packed audio is summed in blocks, not by scatter-add: two `index_add_` calls (every sample to one
of a few hundred addresses) serialized on their atomics and took 15 ms of a 53 ms engine call at
32 × 10 s on an H200 (issue 22); the scatter-add is kept, for comparison, in
`vaani.benchmarks.normalization_alternatives`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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


@dataclass(frozen=True)
class Segments:
    """Where each utterance of a `Packing` lies, in blocks of ``stride`` samples, on the device.

    Built from host-known sizes only (one small host-to-device copy, no synchronisation):
    utterance *i* takes blocks ``first[i]`` to ``first[i] + blocks[i]`` and holds ``samples[i]``
    samples; ``last[j]`` is the final block of the *j*-th utterance that ends inside a block,
    of which only the first ``kept[j]`` samples are audio (the rest, gap zeros, stay zero).
    """

    stride: int
    longest: int  # the most blocks any utterance has (host int: it shapes a tensor)
    first: torch.Tensor
    blocks: torch.Tensor
    samples: torch.Tensor
    last: torch.Tensor
    kept: torch.Tensor

    @classmethod
    def of(cls, packing: Packing, device: torch.device) -> Segments:
        # Host arithmetic in numpy: torch's CPU ops wake its OpenMP pool, which spins against
        # the server's other processes.
        stride = packing.stride
        samples = np.asarray(packing.samples, dtype=np.int64)
        first = packing.sample_starts // stride
        blocks = -(-samples // stride)
        ragged = np.flatnonzero(samples % stride)
        last, kept = first[ragged] + blocks[ragged] - 1, samples[ragged] % stride
        table = torch.from_numpy(np.concatenate([first, blocks, samples, last, kept])).to(device)
        first_t, blocks_t, samples_t, last_t, kept_t = table.split([len(samples)] * 3 + [len(ragged)] * 2)
        longest = int(blocks.max(initial=0))
        return cls(stride, longest, first_t, blocks_t, samples_t, last_t, kept_t)


def block_sums(audio: torch.Tensor, segments: Segments) -> torch.Tensor:
    """``[2, utterances]`` float64: each utterance's sum and sum of squares, from block sums.

    Each block's two sums are row reductions of the ``[blocks, stride]`` view; an utterance's
    are its own blocks', gathered into ``[utterances, longest]`` rows and added along them.
    Gap zeros add nothing, and no sum ever holds another utterance's values (a float64 cumulative
    sum differenced at the boundaries would: a quiet clip packed after loud ones loses digits).
    """
    rows = audio.view(-1, segments.stride)
    # Squares in float64 too (a float32 square rounds, and E[x²] − mean² would magnify that).
    squares = torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64).square()
    sums = torch.stack([rows.sum(1, dtype=torch.float64), squares])
    sums = F.pad(sums, (0, 1))  # a zero column for the gather's places past an utterance's end
    column = torch.arange(segments.longest, device=audio.device)
    inside = column < segments.blocks[:, None]
    index = torch.where(inside, segments.first[:, None] + column, rows.shape[0])
    return sums[:, index].sum(-1)


def normalize_packed(audio: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Packed ``audio`` (`Packing`'s layout) with each utterance normalized; the gaps stay zero.

    Every utterance's slot is a whole number of blocks of ``packing.stride`` samples (320 in
    wav2vec2) whose gap holds zeros, so `block_sums` gives each utterance's sum and sum of squares.
    """
    if not packing.samples:
        return audio
    segments = Segments.of(packing, audio.device)
    return normalize_segments(audio, segments, block_sums(audio, segments))


def normalize_segments(audio: torch.Tensor, segments: Segments, total: torch.Tensor) -> torch.Tensor:
    """The audio normalized from each utterance's float64 sums ``total`` ``[2, utterances]``: one
    subtraction and one multiplication over the audio, and the gap samples, which lie in an
    utterance's last block only, set back to zero.

    Float64 sums of float32 samples are exact to ~1e-16 relative, so the variance as
    ``E[x²] − mean²`` loses nothing FP32 would keep unless the mean exceeds the standard
    deviation ~10⁴-fold (where the float32 input itself has already lost those digits).
    """
    n = segments.samples.clamp(min=1).to(torch.float64)
    mean = total[0] / n
    variance = (total[1] / n - mean.square()).clamp(min=0.0)
    per_block = torch.repeat_interleave(
        torch.stack([mean, torch.rsqrt(variance + EPSILON)]).to(audio.dtype),
        segments.blocks,
        dim=1,
        output_size=audio.numel() // segments.stride,
    )
    out = (audio.view(-1, segments.stride) - per_block[0][:, None]).mul_(per_block[1][:, None])
    if segments.last.numel():
        keep = torch.arange(segments.stride, device=audio.device) < segments.kept[:, None]
        out[segments.last] = out[segments.last] * keep
    return out.view(-1)
