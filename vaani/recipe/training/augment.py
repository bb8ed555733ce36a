"""Waveform augmentation on the training device: speed perturbation and additive noise.

espeak-ng is very regular (same voice, same word → nearly the same samples), so without
perturbation a model memorises the synthesiser. Speed changes (which shift pitch and
formants too, as `sox speed` does) and white noise at random SNRs make it listen instead.
Time masking (SpecAugment) happens inside `Wav2Vec2ForCTC` through `mask_time_prob`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Augmentation:
    speed: tuple[float, float] = (0.88, 1.12)
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (12.0, 40.0)


def change_speed(audio, mask, factor: float):
    """Resample a padded batch by ``factor`` (>1 is faster and shorter) with linear interpolation."""
    import torch.nn.functional as F

    if abs(factor - 1.0) < 1e-3:
        return audio, mask
    new_length = max(1, round(audio.shape[1] / factor))
    audio = F.interpolate(audio[:, None, :], size=new_length, mode="linear", align_corners=False)[:, 0]
    lengths = (mask.sum(dim=1).float() / factor).round().long().clamp(1, new_length)
    steps = audio.new_ones(new_length).cumsum(0) - 1
    mask = steps[None, :] < lengths[:, None]
    return audio * mask, mask


def add_noise(audio, mask, probability: float, snr_db: tuple[float, float], generator):
    """White noise at a random SNR on a random subset of the batch (valid samples only)."""
    import torch

    batch = audio.shape[0]
    device = audio.device
    valid = mask.to(audio.dtype)
    power = (audio**2 * valid).sum(dim=1) / valid.sum(dim=1)
    snr = torch.empty(batch, device=device).uniform_(*snr_db, generator=generator)
    noise_std = torch.sqrt(power / 10 ** (snr / 10))
    chosen = torch.rand(batch, device=device, generator=generator) < probability
    noise = torch.randn(audio.shape, device=device, generator=generator) * (noise_std * chosen)[:, None]
    return audio + noise * valid


def augment(audio, mask, settings: Augmentation, rng: random.Random, generator):
    """Speed (one factor per batch, so the batch stays rectangular), then noise."""
    audio, mask = change_speed(audio, mask, rng.uniform(*settings.speed))
    return add_noise(audio, mask, settings.noise_probability, settings.snr_db, generator), mask
