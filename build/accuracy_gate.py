"""Accuracy gate: an engine enters `model_repository/` only if its CER stays near FP32 PyTorch.

Half precision that "looks fine" on a smoke test can still cost accuracy, so every engine
transcribes an evaluation manifest and is compared with the FP32 PyTorch reference
(`HfModel.transcribe`: the model, its feature extractor, the tokenizer's greedy decode).
CER is scored by `vaani wer`'s own scorer (same Hindi normalization, corpus-level jiwer).

The candidate is any ``runner(values, mask) -> logits``: the TensorRT plan in production,
ONNX Runtime in tests. It sees exactly what the served step sees: the preprocess step's
normalization and bucket padding, and the ctc_decoder step's greedy decode.

Transcription (`transcribe`) needs numpy only, because it also runs inside the TensorRT
image; scoring runs on the host, where the `eval` extra is installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaani.errors import UserFacingError
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.ctc import GreedyDecoder
from vaani.serving.preprocessing import normalize, pad_to_bucket, sample_mask

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]

# "CER rises by more than 0.2 absolute" read as 0.2 percentage points: CER is a fraction here,
# and a gate that let CER rise by 0.2 (twenty points) would pass a broken engine.
DEFAULT_MAX_CER_INCREASE = 0.002


class GateRefused(UserFacingError):
    """The candidate's CER rose past the limit; the message holds the numbers."""


@dataclass(frozen=True)
class GateResult:
    utterances: int
    reference_cer: float
    candidate_cer: float
    max_increase: float
    differing: int
    agreement_cer: float

    @property
    def increase(self) -> float:
        return self.candidate_cer - self.reference_cer

    @property
    def passed(self) -> bool:
        return math.isfinite(self.candidate_cer) and self.increase <= self.max_increase + 1e-12

    def report(self) -> str:
        verdict = "accepted" if self.passed else "REFUSED"
        return (
            f"accuracy gate on {self.utterances} utterances: {verdict}\n"
            f"  CER FP32 PyTorch reference: {self.reference_cer:.4f} ({100 * self.reference_cer:.2f} %)\n"
            f"  CER candidate engine:       {self.candidate_cer:.4f} ({100 * self.candidate_cer:.2f} %)\n"
            f"  increase: {self.increase:+.4f} ({100 * self.increase:+.2f} percentage points); "
            f"allowed: {self.max_increase:.4f} ({100 * self.max_increase:.2f} points)\n"
            f"  transcripts differing from the reference: {self.differing}/{self.utterances} "
            f"(CER against the reference transcripts: {self.agreement_cer:.4f})"
        )


def transcribe(
    runner: Runner, audio: Sequence[np.ndarray], spec: AcousticSpec, bucket_samples: int
) -> list[str]:
    """Transcribe each utterance as the served ensemble does: normalize, pad to bucket, run, decode."""
    decoder = GreedyDecoder(spec)
    texts = []
    for samples in audio:
        values = pad_to_bucket(normalize(samples[np.newaxis, :]), bucket_samples)
        logits = runner(values, sample_mask(1, values.shape[1], samples.shape[0]))
        texts.append(decoder.decode(logits, np.array([samples.shape[0]]))[0])
    return texts


def save_audio_bundle(audio: Sequence[np.ndarray], path: Path) -> None:
    """Decoded 16 kHz audio in one file, so the TensorRT image needs no audio libraries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, *[np.asarray(a, dtype=np.float32) for a in audio])


def load_audio_bundle(path: Path) -> list[np.ndarray]:
    with np.load(path) as bundle:
        return [bundle[f"arr_{i}"] for i in range(len(bundle.files))]


def evaluate(
    texts: Sequence[str],
    reference: Sequence[str],
    candidate: Sequence[str],
    max_increase: float = DEFAULT_MAX_CER_INCREASE,
) -> GateResult:
    """Score reference and candidate transcripts against the manifest texts.

    When the manifest carries no texts at all, the reference transcripts stand in for
    them: the gate then measures how far the engine drifts from FP32 PyTorch.
    """
    from vaani.scoring import score

    if not (len(texts) == len(reference) == len(candidate)):
        raise ValueError(
            f"{len(texts)} texts, {len(reference)} reference, {len(candidate)} candidate transcripts"
        )
    truth = list(texts) if any(t.strip() for t in texts) else list(reference)
    agreement = score(reference, candidate).cer if any(r.strip() for r in reference) else 0.0
    return GateResult(
        utterances=len(texts),
        reference_cer=score(truth, reference).cer,
        candidate_cer=score(truth, candidate).cer,
        max_increase=max_increase,
        differing=sum(r != c for r, c in zip(reference, candidate, strict=True)),
        agreement_cer=agreement,
    )


def require(result: GateResult) -> None:
    """Print the numbers; refuse the engine when CER rose past the limit."""
    print(result.report(), flush=True)
    if not result.passed:
        raise GateRefused(
            f"engine refused: CER rose by {100 * result.increase:.2f} percentage points "
            f"(limit {100 * result.max_increase:.2f}); it was not installed into the repository"
        )
