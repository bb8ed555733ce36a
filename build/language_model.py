"""Finding, checking and installing the n-gram LM of the beam-search decoder at build time.

A model folder may carry ``language_model/`` in Hugging Face's `Wav2Vec2ProcessorWithLM` layout
(one KenLM ``.arpa``/``.bin``, ``unigrams.txt``, ``attrs.json`` with alpha and beta); ``--lm`` names
such a folder or a bare KenLM file instead. The LM is loaded here once, so a bad path or a broken
folder stops the build with one line instead of a server that fails to start.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from vaani.build.repository import RepositorySettings
from vaani.errors import UserFacingError
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.beam import ATTRS_FILE, KENLM_SUFFIXES, LM_DIR, UNIGRAMS_FILE, BeamDecoder, kenlm_file

DEFAULT_ATTRS = {"alpha": 0.5, "beta": 1.5, "unk_score_offset": -10.0, "score_boundary": True}


def find(model_dir: Path, settings: RepositorySettings) -> Path | None:
    """The LM to use (a folder or a KenLM file), or None for no LM."""
    if settings.decoder == "greedy":
        return None
    if settings.lm:
        path = Path(settings.lm).expanduser()
        if not path.exists():
            raise UserFacingError(f"--lm {settings.lm}: no such file or folder")
        return path
    bundled = Path(model_dir) / LM_DIR
    return bundled if bundled.is_dir() else None


def resolve_decoder(settings: RepositorySettings, lm: Path | None) -> str:
    """``auto`` → ``beam`` when there is an LM, else ``greedy``."""
    if settings.decoder == "auto":
        return "beam" if lm is not None else "greedy"
    return settings.decoder


def install(lm: Path, target: Path, spec: AcousticSpec, settings: RepositorySettings) -> None:
    """Write ``lm`` into ``target`` (the decoder's version folder) as ``language_model/`` and load it."""
    out = target / LM_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        if lm.is_dir():
            source = kenlm_file(lm)
            attrs = {**DEFAULT_ATTRS, **json.loads((lm / ATTRS_FILE).read_text(encoding="utf-8"))}
            unigrams = lm / UNIGRAMS_FILE
            if not unigrams.is_file():
                raise ValueError(f"{unigrams.name} is missing")
        else:
            if lm.suffix not in KENLM_SUFFIXES:
                raise ValueError(f"expected a KenLM file ending in {', '.join(KENLM_SUFFIXES)}")
            source, attrs, unigrams = lm, dict(DEFAULT_ATTRS), None
        for key, value in (("alpha", settings.lm_alpha), ("beta", settings.lm_beta)):
            if not math.isnan(value):
                attrs[key] = value
        _link_or_copy(source, out / source.name)
        if unigrams is not None:
            shutil.copyfile(unigrams, out / UNIGRAMS_FILE)
        (out / ATTRS_FILE).write_text(json.dumps(attrs, indent=1), encoding="utf-8")
        BeamDecoder(spec, out, settings.beam_width)  # loads the KenLM file: fails here, not in the server
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        shutil.rmtree(out, ignore_errors=True)
        raise UserFacingError(f"language model {lm} cannot be used: {error}") from None
    print(f"beam search with the n-gram LM {lm} (alpha {attrs['alpha']}, beta {attrs['beta']})")


def _link_or_copy(source: Path, target: Path) -> None:
    """LMs run to gigabytes: a hard link where the file system allows it."""
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)
