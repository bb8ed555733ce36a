"""Manifests in, padded and normalized batches out: the data side of training.

A whole corpus fits in accelerator memory (tens of hours of 16 kHz audio is a few GB), so
audio is kept as one flat tensor on the training device and batches are gathered there:
no data loader workers, no host-to-device copies per step.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaani.errors import UserFacingError
from vaani.manifest import read_manifest
from vaani.recipe import hindi
from vaani.serving.contract import SAMPLING_RATE


def load_audio(paths: list[str], threads: int = 16) -> list[np.ndarray]:
    """Decode audio files (16 kHz mono expected) to float32 arrays, in parallel."""
    import soundfile

    def one(path: str) -> np.ndarray:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=False)
        if rate != SAMPLING_RATE:
            raise UserFacingError(f"{path} is {rate} Hz; training expects {SAMPLING_RATE} Hz")
        return audio if audio.ndim == 1 else audio.mean(axis=1)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(one, paths))


def encode(text: str, vocab: dict[str, int]) -> list[int]:
    """Label ids of a transcript: letters as themselves, spaces as the word delimiter."""
    unknown = sorted({ch for ch in text if ch != " " and ch not in vocab})
    if unknown:
        raise UserFacingError(f"transcript has characters outside the alphabet {unknown}: {text!r}")
    return [vocab[hindi.WORD_DELIMITER] if ch == " " else vocab[ch] for ch in " ".join(text.split())]


@dataclass
class Split:
    """One split held on the training device: flat audio, per-utterance offsets, labels."""

    audio: object  # torch.Tensor [total_samples], float32
    offsets: object  # torch.Tensor [n], int64
    lengths: object  # torch.Tensor [n], int64
    labels: list[list[int]]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / SAMPLING_RATE / 3600


def load_split(manifest: Path, device: str, threads: int = 16) -> Split:
    import torch

    entries = read_manifest(manifest)
    audios = load_audio([str(e.audio_path) for e in entries], threads)
    vocab = hindi.ctc_vocabulary()
    lengths = torch.tensor([len(a) for a in audios], dtype=torch.int64)
    offsets = torch.cumsum(lengths, 0) - lengths
    flat = torch.from_numpy(np.concatenate(audios)).to(device)
    return Split(
        audio=flat,
        offsets=offsets.to(device),
        lengths=lengths.to(device),
        labels=[encode(e.text, vocab) for e in entries],
        texts=[" ".join(e.text.split()) for e in entries],
    )


def length_batches(lengths: list[int], max_samples: int, rng: random.Random | None = None) -> list[list[int]]:
    """Indices grouped by similar length so that a batch's padded size stays under ``max_samples``.

    With ``rng`` the lengths are jittered before sorting and the batch order is shuffled, so
    each epoch sees different neighbours without much extra padding.
    """
    jitter = (lambda n: n * rng.uniform(0.9, 1.1)) if rng else float
    order = sorted(range(len(lengths)), key=lambda i: jitter(lengths[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if current and longest_if_added * (len(current) + 1) > max_samples:
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    if rng:
        rng.shuffle(batches)
    return batches


def gather(split: Split, indices: list[int]):
    """Padded audio [B, T] and its boolean mask for ``indices``, gathered on the split's device."""
    import torch

    index = torch.tensor(indices, device=split.audio.device)
    lengths = split.lengths[index]
    longest = int(lengths.max())
    steps = torch.arange(longest, device=split.audio.device)
    mask = steps[None, :] < lengths[:, None]
    positions = (split.offsets[index][:, None] + steps[None, :]).clamp(max=split.audio.numel() - 1)
    audio = torch.where(mask, split.audio[positions], torch.zeros((), device=split.audio.device))
    return audio, mask


def normalize(audio, mask):
    """Zero mean, unit variance over each utterance's valid samples, zeros after them.

    The same arithmetic as `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm` (variance
    plus 1e-7), which the serving `preprocess` step reproduces.
    """
    import torch

    valid = mask.to(audio.dtype)
    count = valid.sum(dim=1, keepdim=True)
    mean = (audio * valid).sum(dim=1, keepdim=True) / count
    variance = (((audio - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
    return torch.where(mask, (audio - mean) / torch.sqrt(variance + 1e-7), torch.zeros_like(audio))


def pad_labels(labels: list[list[int]], device: str):
    """Label ids [B, L] padded with -100, which the CTC loss of `Wav2Vec2ForCTC` ignores."""
    import torch

    longest = max(len(label) for label in labels)
    padded = torch.full((len(labels), longest), -100, dtype=torch.int64)
    for row, label in enumerate(labels):
        padded[row, : len(label)] = torch.tensor(label, dtype=torch.int64)
    return padded.to(device)
