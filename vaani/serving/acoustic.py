"""Facts about a wav2vec2 CTC model that serving needs, without torch or transformers.

Written by `vaani build` into the repository as ``acoustic.json`` and read by every
step, so the steps agree on frame counts, vocabulary and limits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from vaani.serving.contract import SAMPLING_RATE

Length = TypeVar("Length")


def conv_frames(samples: Length, kernels: Sequence[int], strides: Sequence[int]) -> Length:
    """Frames of the convolution feature encoder for ``samples`` (HF `_get_feat_extract_output_lengths`).

    Generic over ints, numpy and torch integer arrays (floor division on each), so the host and
    the GPU engine count frames with one formula; negative means "shorter than one frame".
    """
    for kernel, stride in zip(kernels, strides):
        samples = (samples - kernel) // stride + 1
    return samples


def conv_receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Samples the convolution feature encoder reads for its first frame (400 for wav2vec2)."""
    size = 1
    for kernel, stride in zip(reversed(kernels), reversed(strides)):
        size = (size - 1) * stride + kernel
    return size


@dataclass(frozen=True)
class AcousticSpec:
    vocab_size: int
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    uses_attention_mask: bool
    blank_id: int
    word_delimiter: str
    tokens: tuple[str, ...] = field(repr=False)
    special_ids: tuple[int, ...] = ()

    @property
    def receptive_field(self) -> int:
        """Samples the feature encoder needs for its first frame (400 for wav2vec2)."""
        return conv_receptive_field(self.conv_kernel, self.conv_stride)

    @property
    def samples_per_frame(self) -> int:
        """Samples between two frames: the product of the convolution strides (320 for wav2vec2)."""
        return int(np.prod(self.conv_stride))

    @property
    def frame_seconds(self) -> float:
        """Seconds between CTC frames (20 ms for wav2vec2): where word times come from."""
        return self.samples_per_frame / SAMPLING_RATE

    def frames(self, num_samples: int) -> int:
        """Frames the feature encoder emits for ``num_samples``."""
        return max(conv_frames(num_samples, self.conv_kernel, self.conv_stride), 0)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> AcousticSpec:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        for key in ("conv_kernel", "conv_stride", "tokens", "special_ids"):
            raw[key] = tuple(raw[key])
        return cls(**raw)
