"""Packed normalizations that may replace the `torch` engine's, waiting here for a GPU run.

Why this exists: the engine's `normalize_packed`
(`vaani/serving/engines/torch_normalization.py`) sums each utterance with two `index_add_`
scatter-adds; every sample goes to one of a few hundred addresses, so the atomics serialize,
and issue 22's H200 profile of 32 × 10 s gave them 15 ms of a 53 ms call.
`normalize_packed_blocks` with `block_sums` takes the same sums without atomics. It agrees with
`vaani.serving.preprocessing.normalize` on the CPU (tests/test_torch_engine.py), but a change to
the engine must come with an H200 run in the same submission, and none could be made when it was
written; so it waits here, and the next `benchmarks/gpu-machine.sh` run times it against the
engine as it is, alone (`gpu_normalization_suite.normalization_suite`, with `cumulative_sums` and
`segment_reduce_sums`, the alternatives considered) and inside the engine (the variant
"engine, block-sums normalization (candidate)").

To switch, once that run shows it faster: replace the body of the engine's `normalize_packed`
with `normalize_packed_blocks`'s (moving `Segments` and `block_sums` beside it), point the tests
and the benchmark at the engine's function, and drop the candidate variant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vaani.serving.engines.torch_normalization import EPSILON
from vaani.serving.engines.torch_packing import Packing


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


SegmentSums = Callable[[torch.Tensor, Segments], torch.Tensor]


def block_sums(audio: torch.Tensor, segments: Segments) -> torch.Tensor:
    """``[2, utterances]`` float64: each utterance's sum and sum of squares, from block sums.

    Each block's two sums are row reductions of the ``[blocks, stride]`` view; an utterance's
    are its own blocks', gathered into ``[utterances, longest]`` rows and added along them.
    Gap zeros add nothing, and no sum ever holds another utterance's values.
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


def cumulative_sums(audio: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Segment sums as a float64 cumulative sum read at utterance boundaries (timed, rejected).

    Fast, but its rounding grows with everything summed before an utterance: a quiet clip
    packed after loud ones loses digits (tests/test_torch_engine.py holds the case that fails it).
    """
    x = audio.double()
    sums = F.pad(torch.stack([x, x * x]).cumsum(1), (1, 0))
    start = segments.first * segments.stride
    return sums[:, start + segments.samples] - sums[:, start]


def segment_reduce_sums(audio: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Segment sums through `torch.segment_reduce` over utterances and their gaps, in float64 (timed)."""
    x = audio.double()
    gaps = segments.blocks * segments.stride - segments.samples
    lengths = torch.stack([segments.samples, gaps], 1).reshape(-1)
    return torch.stack([torch.segment_reduce(v, "sum", lengths=lengths)[::2] for v in (x, x * x)])


def normalize_packed_blocks(
    audio: torch.Tensor, packing: Packing, sums: SegmentSums = block_sums
) -> torch.Tensor:
    """The candidate for the engine's `normalize_packed`: same arguments, same result, no atomics.

    Every utterance's slot is a whole number of blocks of ``packing.stride`` samples (320 in
    wav2vec2) whose gap holds zeros, so ``sums`` (`block_sums`; the benchmark passes the
    alternatives) gives each utterance's sum and sum of squares; then one subtraction and one
    multiplication over the audio, and the gap samples, which lie in an utterance's last block
    only, set back to zero.

    Float64 sums of float32 samples are exact to ~1e-16 relative, so the variance as
    ``E[x²] − mean²`` loses nothing FP32 would keep unless the mean exceeds the standard
    deviation ~10⁴-fold (where the float32 input itself has already lost those digits).
    """
    if not packing.samples:
        return audio
    segments = Segments.of(packing, audio.device)
    total = sums(audio, segments)
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
