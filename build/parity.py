"""The parity gate: the exported graph must agree with PyTorch before it is served.

Checked on several lengths one at a time and on one zero-padded batch of all of them
(the padded batch is where a wrong attention mask shows). The gate fails on the first
of: any greedy transcript that differs, or a logit difference above the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vaani.errors import UserFacingError
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import SAMPLING_RATE
from vaani.serving.ctc import GreedyDecoder

DEFAULT_SECONDS = (0.6, 1.7, 3.2, 5.0)


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    logit_scale: float
    tolerance: float
    reference: list[str]
    candidate: list[str]

    @property
    def transcripts_equal(self) -> bool:
        return self.reference == self.candidate

    @property
    def passed(self) -> bool:
        return self.transcripts_equal and self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"parity {verdict}: max |logit diff| = {self.max_abs_diff:.3e} "
            f"(tolerance {self.tolerance:.1e}, logit range ±{self.logit_scale:.2f}); "
            f"transcripts {'identical' if self.transcripts_equal else 'DIFFER'} "
            f"on {len(self.reference)} utterances"
        ]
        for index, (ref, hyp) in enumerate(zip(self.reference, self.candidate)):
            if ref != hyp:
                lines.append(f"  utterance {index}: pytorch {ref!r} vs exported {hyp!r}")
        return "\n".join(lines)


def probe_audio(seconds: tuple[float, ...] = DEFAULT_SECONDS, seed: int = 0) -> list[np.ndarray]:
    """Deterministic speech-like signals: a glottal pulse train through moving formants, plus noise."""
    rng = np.random.default_rng(seed)
    clips = []
    for duration in seconds:
        n = round(duration * SAMPLING_RATE)
        t = np.arange(n) / SAMPLING_RATE
        pitch = 110 + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
        pulses = np.sign(np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLING_RATE))
        formant = rng.uniform(300, 2500)
        signal = pulses * np.sin(2 * np.pi * formant * t) + 0.05 * rng.standard_normal(n)
        clips.append((0.3 * signal / np.abs(signal).max()).astype(np.float32))
    return clips


Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def compare(
    reference: Runner,
    candidate: Runner,
    features: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]],
    spec: AcousticSpec,
    audio: list[np.ndarray],
    relative_tolerance: float = 1e-3,
) -> ParityReport:
    """Run both on each clip alone and on the padded batch; compare logits and transcripts."""
    decoder = GreedyDecoder(spec)
    diffs, scale = [], 0.0
    ref_texts: list[str] = []
    hyp_texts: list[str] = []
    batches = [[clip] for clip in audio] + [audio]
    for batch in batches:
        values, mask = features(batch)
        lengths = np.array([len(clip) for clip in batch])
        expected = reference(values, mask)
        got = candidate(values, mask)
        for row, samples in enumerate(lengths):
            frames = spec.frames(int(samples))
            diffs.append(float(np.abs(expected[row, :frames] - got[row, :frames]).max()))
            scale = max(scale, float(np.abs(expected[row, :frames]).max()))
        ref_texts += decoder.decode(expected, lengths)
        hyp_texts += decoder.decode(got, lengths)
    return ParityReport(
        max_abs_diff=max(diffs),
        logit_scale=scale,
        tolerance=relative_tolerance * max(scale, 1.0),
        reference=ref_texts,
        candidate=hyp_texts,
    )


def require(report: ParityReport) -> None:
    """Fail the build loudly, with the numbers, when the exported graph disagrees."""
    print(report.describe())
    if not report.passed:
        raise UserFacingError(
            "the exported model disagrees with PyTorch; not installing it\n" + report.describe()
        )
