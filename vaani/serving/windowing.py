"""Recordings of any length: windows in, one joined stream of logits out.

A recording longer than one window is cut into segments: at pauses where it has them (the
middle of every silence of at least ``min_pause`` samples), and where speech runs on for more
than ``chunk`` samples, every ``chunk`` samples. Each segment runs as one window that reaches
past its ends: into the pause on a pause side (half of it at most, so a window holds no
neighbouring speech), by ``context`` samples of the neighbouring audio on a cut side. From each
window only its segment's frames are kept, so every kept frame saw its surroundings and none
is kept twice. Boundaries are whole frames (``samples_per_frame``, 320 for wav2vec2), so the
windows' frames fall on the recording's frame grid and the joined logits have exactly the
frames of the whole recording.

Why there: a model trained on single, tightly cut utterances (the bundled one) merges and drops
words across a pause inside its input, misreads an input that opens with silence (WER 4.4 % →
12 % with 50 ms of leading silence on its held-out sentences), and may emit an utterance's last
letter in its input's last frame. A window that starts with the speech and ends after the pause
holds one utterance the way the model knows it, and keeps that last letter.
Each window is normalized on its own, as Hugging Face's chunked ASR pipeline does. A recording
of one window or less is one window holding all of it: today's path, with identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from vaani.serving.acoustic import AcousticSpec

SILENCE_RATIO = 0.01  # a frame is silent under 1 % of the recording's loud (95th percentile) RMS
FIELDS = 5  # numbers per window in a plan tensor: start, end, keep_from, keep_to, kind

# What precedes a window: a cut through running speech (words may straddle it), a pause (a word
# break: the decoder decodes each side on its own), or nothing but silence (not run at all).
AFTER_CUT, AFTER_PAUSE, SILENT = 0, 1, 2


@dataclass(frozen=True)
class Window:
    start: int  # first sample of the window in the recording
    end: int  # one past its last sample
    keep_from: int  # first frame of the window that the joined logits keep
    keep_to: int  # one past the last kept frame
    kind: int = AFTER_CUT

    @property
    def samples(self) -> int:
        return self.end - self.start

    def first_frame(self, samples_per_frame: int) -> int:
        """The recording's frame where this window's kept frames begin."""
        return self.start // samples_per_frame + self.keep_from


@dataclass(frozen=True)
class Windowing:
    """How recordings are cut; ``chunk``, ``context`` and ``min_pause`` in samples, whole frames each."""

    chunk: int
    context: int
    min_pause: int
    spec: AcousticSpec

    def __post_init__(self) -> None:
        step = self.spec.samples_per_frame
        if self.chunk <= 0 or self.chunk % step or self.context % step or self.min_pause % step:
            raise ValueError(f"chunk, context and pause must be multiples of {step} samples, chunk above 0")
        if self.context < self.spec.receptive_field:
            raise ValueError(f"context must hold the receptive field ({self.spec.receptive_field} samples)")

    @classmethod
    def from_seconds(
        cls, chunk_s: float, context_s: float, pause_s: float, spec: AcousticSpec, rate: int
    ) -> Windowing:
        """Seconds down to whole frames, so a window never holds more than the seconds say."""
        step = spec.samples_per_frame

        def frames(seconds: float) -> int:
            return int(seconds * rate // step) * step

        return cls(max(step, frames(chunk_s)), frames(context_s), frames(pause_s), spec)

    @property
    def longest(self) -> int:
        """The most samples one window holds."""
        return self.chunk + 2 * self.context

    def pauses(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """(start, end) samples of every silence of ``min_pause`` or more in ``[rows, samples]``."""
        if self.min_pause <= 0:
            return []
        rms = self.frame_rms(audio)
        if rms.size == 0:
            return []
        return self.silences(rms, float(np.percentile(rms, 95)))

    def frame_rms(self, audio: np.ndarray) -> np.ndarray:
        """The RMS of each whole frame of ``[rows, samples]`` (all rows together)."""
        step = self.spec.samples_per_frame
        frames = audio.shape[1] // step
        whole = audio[:, : frames * step].reshape(audio.shape[0], frames, step)
        return np.sqrt((whole**2).mean(axis=(0, 2)))

    def silent(self, rms: np.ndarray, loud: float) -> np.ndarray:
        """Which frames are silent: under `SILENCE_RATIO` of ``loud``, the level speech reaches."""
        return rms < max(1e-4, SILENCE_RATIO * loud)

    def silences(self, rms: np.ndarray, loud: float) -> list[tuple[int, int]]:
        """(start, end) samples of every silence of ``min_pause`` or more among frames of ``rms``.

        A stream (`vaani.serving.streaming`) passes the loudest level it has heard so far as ``loud``:
        its unfinished audio may hold nothing but a pause.
        """
        step = self.spec.samples_per_frame
        silent = self.silent(rms, loud)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
        runs = edges.reshape(-1, 2)  # [first silent frame, one past the last]
        return [(a * step, b * step) for a, b in runs if (b - a) * step >= self.min_pause]

    def windows(self, audio: np.ndarray) -> list[Window]:
        """The windows of ``audio`` (``[rows, samples]``; one plan for all rows), in order."""
        samples = audio.shape[1]
        frames = self.spec.frames(samples)
        if samples <= self.longest:
            return [Window(0, samples, 0, frames)]
        step = self.spec.samples_per_frame
        pauses = self.pauses(audio)
        # Boundaries: (sample, reach past it on a cut, kind of the window that starts there).
        bounds: list[tuple[int, int, int]] = [(0, 0, AFTER_CUT)]
        if pauses and pauses[0][0] == 0:  # leading silence: a window of its own that is not run
            bounds = [(0, 0, SILENT)]
        for _, end in [*pauses, (samples, samples)]:
            onset = end // step * step if end < samples else samples  # where the next speech starts
            last = bounds[-1][0]
            while onset - last > self.chunk and bounds[-1][2] != SILENT:  # speech runs on: cut it
                last += self.chunk
                bounds.append((last, self.context, AFTER_CUT))
            if onset > last:
                bounds.append((onset, 0, AFTER_PAUSE))
        plan = []
        for (first, reach_left, kind), (last, reach_right, _) in pairwise(bounds):
            keep_from, keep_to = first // step, min(last // step, frames)
            if keep_to <= keep_from:
                continue
            start = max(0, first - reach_left)
            # At a pause the window ends where its last kept frame ends: a model that emits an
            # utterance's last letter in its input's last frame keeps that letter.
            tail = reach_right or self.spec.receptive_field - step
            end = min(samples, last + tail)
            plan.append(Window(start, end, keep_from - start // step, keep_to - start // step, kind))
        return plan


def to_tensor(windows: list[Window], rows: int) -> np.ndarray:
    """A plan as ``[rows, 4 × windows]`` INT64 (one copy per row: Triton batches by the first dimension)."""
    fields = [[w.start, w.end, w.keep_from, w.keep_to, w.kind] for w in windows]
    flat = np.array(fields, dtype=np.int64).reshape(-1)
    return np.repeat(flat[None, :], rows, axis=0)


def from_tensor(plan: np.ndarray) -> list[Window]:
    return [Window(*map(int, row)) for row in plan[0].reshape(-1, FIELDS)]


def breaks(windows: list[Window], samples_per_frame: int) -> list[int]:
    """Frames where the decoder starts afresh: after every pause and around silence."""
    frames = {0}
    for before, window in zip([None, *windows], windows):
        if window.kind != AFTER_CUT or (before is not None and before.kind == SILENT):
            frames.add(window.first_frame(samples_per_frame))
    return sorted(frames)


def silence_logits(rows: int, frames: int, vocab: int, blank: int) -> np.ndarray:
    """Logits of a window that is not run: every frame is the blank."""
    logits = np.full((rows, frames, vocab), -1e4, dtype=np.float32)
    logits[:, :, blank] = 0.0
    return logits


def cut(audio: np.ndarray, windows: list[Window], normalize) -> np.ndarray:
    """``[rows, samples]`` → ``[rows, flat]``: every window, normalized on its own, end to end."""
    if len(windows) == 1 and windows[0].samples == audio.shape[1]:
        return normalize(audio)  # one window: no concatenation copy
    return np.concatenate([normalize(audio[:, w.start : w.end]) for w in windows], axis=1)


def split(flat: np.ndarray, windows: list[Window]) -> list[np.ndarray]:
    """Undo `cut`'s layout: the windows of ``[rows, flat]``, each ``[rows, window samples]``."""
    pieces, offset = [], 0
    for window in windows:
        pieces.append(flat[:, offset : offset + window.samples])
        offset += window.samples
    return pieces


def join(logits: list[np.ndarray], windows: list[Window]) -> np.ndarray:
    """Each window's kept frames, in order: the logits ``[rows, frames, vocab]`` of the recording."""
    return np.concatenate(
        [piece[:, w.keep_from : w.keep_to] for piece, w in zip(logits, windows, strict=True)], axis=1
    )


def problem(windows: list[Window], samples: int, spec: AcousticSpec, longest: int) -> str | None:
    """Why a plan that came with a request is not one `Windowing` makes (the step can be called directly)."""
    step = spec.samples_per_frame
    expected = 0
    for window in windows:
        too_long = window.samples > longest and window.kind != SILENT  # silence is never run
        if not 0 <= window.start < window.end <= samples or too_long:
            return (
                f"a window must lie within the recording and hold at most {longest} samples of audio to run"
            )
        if window.start % step or not 0 <= window.keep_from < window.keep_to <= spec.frames(window.samples):
            return "a window's kept frames must lie within its own frames"
        if window.kind not in (AFTER_CUT, AFTER_PAUSE, SILENT):
            return "a window's kind must be 0 (after a cut), 1 (after a pause) or 2 (silent)"
        if window.first_frame(step) != expected:
            return "the windows' kept frames must follow each other without gap or overlap"
        expected = window.first_frame(step) - window.keep_from + window.keep_to
    if expected != spec.frames(samples):
        return f"the windows keep {expected} frames; {samples} samples have {spec.frames(samples)}"
    return None


def layout_problem(
    plan: np.ndarray, num_samples: np.ndarray, windows: Windowing, max_samples: int
) -> str | None:
    """Why ``WINDOW_LAYOUT`` and ``NUM_SAMPLES`` are not what `preprocess` sends: one recording's plan.

    Every step that reads a plan (`wav2vec2`, `windows`, `ctc_decoder`) can be called directly, so each
    checks it before it trusts an offset. Shapes and the count of windows (a kept frame each at least)
    are checked before a window is read, so a huge or garbage plan costs no loop over it.
    """
    rows = num_samples.shape[0] if num_samples.ndim == 2 else -1
    if num_samples.shape != (rows, 1) or plan.ndim != 2 or plan.shape[0] != rows or rows == 0:
        return (
            f"WINDOW_LAYOUT and NUM_SAMPLES must be [batch, …] and [batch, 1] of one batch; "
            f"got {list(plan.shape)} and {list(num_samples.shape)}"
        )
    if num_samples.dtype.kind not in "iu" or plan.dtype.kind not in "iu":
        return "WINDOW_LAYOUT and NUM_SAMPLES must be integers"
    samples = int(num_samples[0, 0])
    spec = windows.spec
    if (num_samples != samples).any() or not spec.receptive_field <= samples <= max_samples:
        return f"NUM_SAMPLES must be one length from {spec.receptive_field} to {max_samples}"
    fields = plan.shape[1]
    if fields == 0 or fields % FIELDS or fields > FIELDS * spec.frames(samples) or (plan != plan[:1]).any():
        return (
            f"WINDOW_LAYOUT must hold {FIELDS} numbers per window, at most one window per frame, "
            "the same on every row"
        )
    wrong = problem(from_tensor(plan), samples, spec, windows.longest)
    return f"WINDOW_LAYOUT: {wrong}" if wrong else None


def request_problem(
    flat: np.ndarray, plan: np.ndarray, num_samples: np.ndarray, windows: Windowing, max_samples: int
) -> str | None:
    """Why a request's WINDOWS, WINDOW_LAYOUT and NUM_SAMPLES are not what `preprocess` sends.

    The steps that take them can be called directly, so they check instead of trusting.
    """
    if flat.ndim != 2 or num_samples.shape[:1] != flat.shape[:1]:
        shapes = f"{list(flat.shape)}, {list(plan.shape)} and {list(num_samples.shape)}"
        return f"WINDOWS, WINDOW_LAYOUT and NUM_SAMPLES must be [batch, …] of one batch; got {shapes}"
    if flat.dtype != np.float32:
        return "WINDOWS must be FP32"
    wrong = layout_problem(plan, num_samples, windows, max_samples)
    if wrong:
        return wrong
    planned = sum(w.samples for w in from_tensor(plan))
    if flat.shape[1] != planned:
        return f"WINDOWS holds {flat.shape[1]} samples; its plan's windows hold {planned}"
    if not np.isfinite(flat).all():
        return "WINDOWS contains NaN or Inf"
    return None
