"""The optimization profile of a plan: the batch and length range it accepts, and the shape it is tuned for.

Derived from the serving settings, and needed in two places that must agree: the plan's
build (`builder`, which runs in the TensorRT image) and the `wav2vec2` config Triton serves
it with (`vaani.build.repository`). So it imports neither: the settings it reads are a
protocol that `RepositorySettings` satisfies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from vaani.serving.contract import SAMPLING_RATE


class ProfileSettings(Protocol):
    """What of `RepositorySettings` decides the profile."""

    @property
    def bucket_samples(self) -> int: ...

    @property
    def max_samples(self) -> int: ...

    @property
    def max_batch_size(self) -> int: ...

    @property
    def profile_opt_batch(self) -> int: ...

    @property
    def profile_opt_seconds(self) -> float: ...

    @property
    def window_seconds(self) -> float: ...

    @property
    def context_seconds(self) -> float: ...


@dataclass(frozen=True)
class ShapeProfile:
    """One optimization profile: batch and samples, each as (min, opt, max)."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_samples: int
    opt_samples: int
    max_samples: int

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``[batch, samples]`` at min, opt and max: the shape of both inputs."""
        return (
            (self.min_batch, self.min_samples),
            (self.opt_batch, self.opt_samples),
            (self.max_batch, self.max_samples),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": [s / SAMPLING_RATE for s in self.shapes_samples()]}

    def shapes_samples(self) -> tuple[int, int, int]:
        return self.min_samples, self.opt_samples, self.max_samples


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def shape_profile(settings: ProfileSettings) -> ShapeProfile:
    """The profile that serving with ``settings`` needs.

    Min and max are not choices: Triton may send one utterance of one bucket, and up to
    `max_batch_size` rows of one window (or of `max_audio_seconds`, when shorter) padded up to a whole
    bucket; any narrower profile fails those requests at run time. Only the tuned-for shape is free.
    """
    bucket = settings.bucket_samples
    if bucket <= 0:
        raise ValueError(
            "the tensorrt engine needs bucket_seconds > 0: a TensorRT plan runs equal shapes only, "
            "so the preprocess step must pad audio to buckets for requests to share a batch"
        )
    if settings.profile_opt_batch < 1 or settings.profile_opt_seconds <= 0:
        raise ValueError("profile_opt_batch must be at least 1 and profile_opt_seconds above 0")
    window = round((settings.window_seconds + 2 * settings.context_seconds) * SAMPLING_RATE)
    max_samples = _round_up(min(window, settings.max_samples), bucket)
    opt_samples = _round_up(round(settings.profile_opt_seconds * SAMPLING_RATE), bucket)
    return ShapeProfile(
        min_batch=1,
        opt_batch=min(settings.profile_opt_batch, settings.max_batch_size),
        max_batch=settings.max_batch_size,
        min_samples=bucket,
        opt_samples=min(max(opt_samples, bucket), max_samples),
        max_samples=max_samples,
    )
