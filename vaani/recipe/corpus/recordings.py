"""Long recordings with known timing: held-out sentences joined with pauses of known length.

Tests and benchmarks of windowing and word timestamps need audio of minutes whose every
sentence onset is known. Each sentence is spoken by espeak-ng (test-split sentences only,
never training ones) and placed, as espeak-ng made it, after a pause drawn from ``pauses``;
its onset and end are where its speech starts and stops inside the clip.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from vaani.recipe.corpus import synth
from vaani.serving.contract import SAMPLING_RATE

SILENCE = 0.001  # amplitude under which a sample counts as silence (espeak-ng pads with true zeros)


@dataclass(frozen=True)
class PlacedSentence:
    text: str
    onset: float  # seconds from the start of the recording to the first sample of speech
    end: float  # seconds to one past its last sample of speech
    clip: tuple[int, int] = (0, 0)  # samples of the whole synthesized clip, silences included


def speech_span(audio: np.ndarray) -> tuple[int, int]:
    """First and one past the last sample of speech in a synthesized sentence."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, audio.size)


def long_recording(
    count: int, seed: int = 2027, pauses: tuple[float, float] = (0.3, 0.8)
) -> tuple[np.ndarray, list[PlacedSentence]]:
    """``count`` held-out sentences joined with random pauses: the audio and where each sentence is."""
    rng = random.Random(seed)
    pieces: list[np.ndarray] = []
    placed: list[PlacedSentence] = []
    position = 0
    for utterance in synth.plan("test", count, seed=seed):
        pause = np.zeros(round(rng.uniform(*pauses) * SAMPLING_RATE), dtype=np.float32)
        clip = synth.synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)
        first, last = speech_span(clip)
        start = position + pause.size
        pieces += [pause, clip]
        onset, end = (start + first) / SAMPLING_RATE, (start + last) / SAMPLING_RATE
        placed.append(PlacedSentence(utterance.text, onset, end, (start, start + clip.size)))
        position = start + clip.size
    pieces.append(np.zeros(SAMPLING_RATE // 2, dtype=np.float32))
    return np.concatenate(pieces), placed
