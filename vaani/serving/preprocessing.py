"""What the `preprocess` step does to a request's audio: validate, normalize, pad.

Validation turns every kind of bad audio into a message that names the problem; the
step answers that request with it and the rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaani.serving.contract import SAMPLING_RATE


class AudioError(ValueError):
    """The request's audio cannot be transcribed; the message says why."""


@dataclass(frozen=True)
class AudioLimits:
    min_samples: int
    max_samples: int

    def check(self, audio: np.ndarray) -> None:
        if audio.ndim != 2:
            raise AudioError(f"AUDIO must be [batch, samples]; got shape {list(audio.shape)}")
        if audio.dtype != np.float32:
            raise AudioError(f"AUDIO must be FP32; got {audio.dtype}")
        samples = audio.shape[1]
        if samples == 0:
            raise AudioError("AUDIO is empty (0 samples)")
        if samples < self.min_samples:
            raise AudioError(
                f"AUDIO is too short: {samples} samples ({samples / SAMPLING_RATE:.4f} s); "
                f"the model needs at least {self.min_samples} samples at {SAMPLING_RATE} Hz"
            )
        if samples > self.max_samples:
            raise AudioError(
                f"AUDIO is too long: {samples} samples ({samples / SAMPLING_RATE:.1f} s); "
                f"the configured maximum is {self.max_samples} samples "
                f"({self.max_samples / SAMPLING_RATE:.1f} s), set by --max-audio-seconds of vaani build/serve"
            )
        finite = np.isfinite(audio)
        if not finite.all():
            row, sample = np.argwhere(~finite)[0]
            raise AudioError(f"AUDIO contains NaN or Inf (first at utterance {row}, sample {sample})")


def normalize(audio: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per utterance, exactly as `Wav2Vec2FeatureExtractor` computes it.

    Float32 throughout: the extractor works on float32 arrays, and a float64 detour
    changes the rounding of every sample.
    """
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    mean = audio.mean(axis=1, keepdims=True)
    variance = audio.var(axis=1, keepdims=True)
    return ((audio - mean) / np.sqrt(variance + np.float32(1e-7))).astype(np.float32)


def pad_to_bucket(values: np.ndarray, bucket: int) -> np.ndarray:
    """Zero-pad the time axis up to a multiple of ``bucket`` samples.

    Engines that batch only equal shapes (TensorRT under Triton's dynamic batcher) then see
    few distinct lengths. ``bucket`` 0 leaves the length as it is.
    """
    batch, samples = values.shape
    padded = samples if bucket <= 0 else -(-samples // bucket) * bucket
    out = np.zeros((batch, padded), dtype=np.float32)
    out[:, :samples] = values
    return out


def sample_mask(rows: int, samples: int, valid: int) -> np.ndarray:
    """The attention mask of ``rows`` rows whose first ``valid`` of ``samples`` samples are audio.

    Only an ONNX graph or TensorRT plan takes it; the python engines take the length alone.
    """
    mask = np.zeros((rows, samples), dtype=np.int64)
    mask[:, :valid] = 1
    return mask
