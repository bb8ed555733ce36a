"""Packed execution for the `torch` engine: every utterance of a run, end to end, with no padding.

Why: on mixed 2–15 s traffic a padded batch is ~1.85× its real tokens, and every matrix
product, norm and (quadratically) attention pays for the padding. Packed, the transformer
sees one ``[tokens, hidden]`` matrix holding only real frames, and attention runs per
utterance through a variable-length kernel.

The layout (`Packing`, host arithmetic only):

* **Audio.** Utterance *i* starts at a multiple of the feature encoder's total stride (320
  samples in wav2vec2), so at every convolution layer its frames start at a whole position and
  its valid frames read only its own samples: one convolution over the packed audio gives each
  utterance exactly the frames it gets alone. Garbage frames at the seams are dropped.
* **Tokens.** The valid frames, utterance after utterance: ``cu_seqlens`` marks where each starts.
* **Positional convolution.** It sees ``kernel // 2`` frames on each side; a copy of the tokens
  with that many zeros between utterances makes each one see zeros beyond its ends, as alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from vaani.serving.acoustic import conv_frames
from vaani.serving.contract import SAMPLING_RATE


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without a Python loop."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total)


@dataclass(frozen=True)
class Packing:
    """Where each utterance lies in the packed audio, the packed frames and the token matrix."""

    samples: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def stride(self) -> int:
        return math.prod(self.strides)

    @cached_property
    def sample_starts(self) -> np.ndarray:
        slots = -(-np.asarray(self.samples, dtype=np.int64) // self.stride) * self.stride
        return np.cumsum(slots) - slots

    @property
    def total_samples(self) -> int:
        if not self.samples:
            return 0
        return int(self.sample_starts[-1]) + -(-self.samples[-1] // self.stride) * self.stride

    def frames_after(self, layers: int) -> tuple[np.ndarray, np.ndarray]:
        """Each utterance's first position and valid frame count after the first ``layers`` convolutions."""
        starts = self.sample_starts // math.prod(self.strides[:layers])
        samples = np.asarray(self.samples, dtype=np.int64)
        counts = conv_frames(samples, self.kernels[:layers], self.strides[:layers])
        return starts, np.maximum(counts, 0)

    @cached_property
    def frames(self) -> np.ndarray:
        """Valid frames per utterance (what each gets alone)."""
        return self.frames_after(len(self.strides))[1]

    @cached_property
    def cu_seqlens(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.frames)])

    @property
    def tokens(self) -> int:
        return int(self.cu_seqlens[-1])

    def token_positions(self) -> np.ndarray:
        """For each token, its frame in the feature encoder's output over the packed audio."""
        return ranges(*self.frames_after(len(self.strides)))

    def gapped_positions(self, gap: int) -> np.ndarray:
        """For each token, its row in a copy that has ``gap`` zero rows around every utterance."""
        utterance = np.repeat(np.arange(len(self.samples)), self.frames)
        return np.arange(self.tokens) + gap * (utterance + 1)

    def segments_after(self, layers: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the valid frames after ``layers`` convolutions, and the utterance of each."""
        starts, counts = self.frames_after(layers)
        return ranges(starts, counts), np.repeat(np.arange(len(self.samples)), counts)


@dataclass
class DevicePacking:
    """A `Packing`'s indices on the device, made once per run (a few small host-to-device copies)."""

    packing: Packing
    tokens: torch.Tensor  # long [N]: token → frame of the packed feature encoder output
    cu_seqlens: torch.Tensor  # int32 [n + 1]
    max_frames: int
    gapped: torch.Tensor  # long [N]: token → row of the gapped copy
    gapped_rows: int
    gap: int

    @classmethod
    def of(cls, packing: Packing, device: torch.device, gap: int) -> DevicePacking:
        def put(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)

        return cls(
            packing=packing,
            tokens=put(packing.token_positions(), torch.long),
            cu_seqlens=put(packing.cu_seqlens, torch.int32),
            max_frames=int(packing.frames.max(initial=0)),
            gapped=put(packing.gapped_positions(gap), torch.long),
            gapped_rows=packing.tokens + gap * (len(packing.samples) + 1),
            gap=gap,
        )

    def bounds(self) -> list[tuple[int, int]]:
        """Each utterance's token range (host ints)."""
        cu = self.packing.cu_seqlens.tolist()
        return [(start, end) for start, end in itertools.pairwise(cu) if end > start]


def segment_channel_norm(
    x: torch.Tensor, positions: torch.Tensor, segments: torch.Tensor, count: int, norm: torch.nn.GroupNorm
) -> torch.Tensor:
    """GroupNorm with one group per channel over each utterance's valid frames of ``x`` ``[1, C, T]``.

    What `GroupNorm` does to an utterance run alone (statistics over its own frames only), in
    FP32, for all utterances of the packed audio at once. Frames outside ``positions`` stay zero.
    """
    if norm.num_groups != norm.num_channels:
        raise ValueError("packed GroupNorm needs one group per channel (as wav2vec2 has)")
    valid = x[0].float().index_select(1, positions)  # [C, M]
    sizes = torch.zeros(count, device=x.device).index_add_(
        0, segments, torch.ones_like(segments, dtype=torch.float32)
    )
    mean = valid.new_zeros(valid.shape[0], count).index_add_(1, segments, valid) / sizes
    centred = valid - mean.index_select(1, segments)
    variance = centred.new_zeros(mean.shape).index_add_(1, segments, centred * centred) / sizes
    scale = torch.rsqrt(variance + norm.eps).index_select(1, segments)
    y = centred * scale * norm.weight[:, None] + norm.bias[:, None]
    out = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
    out.index_copy_(1, positions, y.to(x.dtype))
    return out[None]


def attention_per_utterance(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: DevicePacking
) -> torch.Tensor:
    """Attention of ``[tokens, heads, dim]`` within each utterance, one SDPA call per utterance.

    The portable path (CPU, FP32 on a GPU): the same function as the variable-length kernel.
    """
    out = torch.empty_like(q)
    for start, end in packed.bounds():
        out[start:end] = F.scaled_dot_product_attention(
            q[start:end].transpose(0, 1), k[start:end].transpose(0, 1), v[start:end].transpose(0, 1)
        ).transpose(0, 1)
    return out


def attention_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: DevicePacking) -> torch.Tensor:
    """PyTorch's variable-length attention (the flash kernel): one launch for all utterances."""
    from torch.nn.attention.varlen import varlen_attn

    cu, longest = packed.cu_seqlens, packed.max_frames
    return varlen_attn(q, k, v, cu, cu, longest, longest)


def attention_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: DevicePacking) -> torch.Tensor:
    """cuDNN's fused attention on the same ragged layout (faster than flash on Hopper where it runs)."""
    cu, longest = packed.cu_seqlens, packed.max_frames
    return torch.ops.aten._cudnn_attention_forward(
        q, k, v, None, cu, cu, longest, longest, False, 0.0, False, False
    )[0]


PACKED_ATTENTION = {"cudnn": attention_cudnn, "flash": attention_flash}


def _time_ms(run: Callable[[], object], repeats: int = 10) -> float:
    run()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        run()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / repeats


def packed_attention(
    device: torch.device, dtype: torch.dtype, heads: int, head_dim: int, choice: str = "auto"
) -> Callable[..., torch.Tensor]:
    """The fastest variable-length attention that runs here and equals `attention_per_utterance`.

    Checked once, when the engine starts, on strided inputs as the engine passes them (views into
    one QKV product) and mixed lengths of 2–15 s; timed on the same. ``choice`` names one kernel
    ("cudnn", "flash") instead of the fastest. Falls back to per-utterance SDPA (CPU, FP32, or
    no kernel that runs).
    """
    if device.type != "cuda" or dtype == torch.float32:
        return attention_per_utterance
    lengths = tuple(int(s * SAMPLING_RATE) for s in np.linspace(2.0, 15.0, 24))
    packing = Packing(lengths, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    packed = DevicePacking.of(packing, device, gap=1)
    q, k, v = torch.randn(packing.tokens, 3, heads, head_dim, device=device, dtype=dtype).unbind(1)
    expected = attention_per_utterance(q, k, v, packed)
    timings: dict[str, float] = {}
    for name, attend in PACKED_ATTENTION.items():
        if choice not in ("auto", name):
            continue
        try:
            torch.testing.assert_close(attend(q, k, v, packed), expected, atol=2e-2, rtol=2e-2)
            timings[name] = _time_ms(lambda attend=attend: attend(q, k, v, packed))
        except Exception as error:  # an old PyTorch, no such kernel for this GPU or layout
            print(f"torch engine: {name} varlen attention unavailable ({type(error).__name__}: {error})")
    if not timings:
        print("torch engine: no variable-length attention kernel; per-utterance SDPA")
        return attention_per_utterance
    fastest = min(timings, key=timings.__getitem__)
    measured = ", ".join(f"{name} {ms:.3f} ms" for name, ms in timings.items())
    print(f"torch engine: packed attention {fastest} ({measured})")
    return PACKED_ATTENTION[fastest]
