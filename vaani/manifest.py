"""NeMo-style JSONL manifests: one JSON object per line with ``audio_filepath`` and ``text``.

One reader for evaluation, load tests and training, so a manifest that one command
accepts, every command accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaani.errors import UserFacingError


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line; ``audio_path`` is already resolved against the manifest's folder.

    The manifest's ``duration`` is not trusted by the reports (they measure the audio actually
    sent); it stays in ``fields`` with every other key, e.g. the synthesis parameters.
    """

    audio_path: Path
    text: str
    fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_manifest(path: Path) -> list[ManifestEntry]:
    """Parse a manifest; relative ``audio_filepath`` values are relative to its folder.

    Every problem (bad JSON, missing key, missing audio file) is reported with its line number
    before any work starts, so a long run does not die halfway on a typo.
    """
    if not path.is_file():
        raise UserFacingError(f"manifest not found: {path}")
    entries: list[ManifestEntry] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            audio = Path(record["audio_filepath"])
            text = str(record["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise UserFacingError(
                f"{path}:{number}: expected a JSON object with 'audio_filepath' and 'text' ({error})"
            ) from error
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise UserFacingError(f"{path}:{number}: audio file not found: {audio}")
        entries.append(ManifestEntry(audio, text, record))
    if not entries:
        raise UserFacingError(f"manifest has no entries: {path}")
    return entries
