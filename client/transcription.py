"""One manifest entry as the server transcribed it: what `vaani wer` scores and compares.

Its own module because two others read it: `wer` makes and scores transcriptions, and
`reference` (which `wer` runs when asked) compares them with the PyTorch model's. Kept in
`wer`, it made `reference` import the module that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaani.manifest import ManifestEntry


@dataclass(frozen=True)
class Transcription:
    """What the server returned for one entry, and how long the request took."""

    entry: ManifestEntry
    hypothesis: str
    latency_s: float
    audio_seconds: float
