"""Beam-search CTC decoding with an optional KenLM n-gram LM and per-request hotwords (pyctcdecode).

pyctcdecode is the decoder of Hugging Face's `Wav2Vec2ProcessorWithLM`, so a model folder's
``language_model/`` (KenLM ``.arpa``/``.bin``, ``unigrams.txt``, ``attrs.json``) is read as
transformers reads it. It is imported inside `BeamDecoder` only: a greedy repository never
loads it (the serving core keeps numpy as its one module-level import).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vaani.serving.acoustic import AcousticSpec
from vaani.serving.ctc import Word

LM_DIR = "language_model"
"""The HF `Wav2Vec2ProcessorWithLM` folder name, in a model folder and in the decoder's version folder."""
ATTRS_FILE = "attrs.json"
UNIGRAMS_FILE = "unigrams.txt"
KENLM_SUFFIXES = (".arpa", ".bin", ".binary")
DEFAULT_BEAM_WIDTH = 64
DEFAULT_HOTWORD_WEIGHT = 10.0
_SUPPRESSED = (
    -1e4
)  # logit for special tokens (<s>, </s>, <unk>): greedy drops them, the beam never emits them


def kenlm_file(lm_dir: Path) -> Path:
    """The one KenLM file of an HF-layout ``language_model/`` folder."""
    found = sorted(p for p in Path(lm_dir).iterdir() if p.suffix in KENLM_SUFFIXES)
    if len(found) != 1:
        raise ValueError(
            f"{lm_dir} must hold exactly one KenLM file ({', '.join(KENLM_SUFFIXES)}); found {len(found)}"
        )
    return found[0]


def labels(spec: AcousticSpec) -> list[str]:
    """pyctcdecode's alphabet in vocabulary order: blank ``""``, word delimiter ``" "``."""
    out = list(spec.tokens)
    out[spec.blank_id] = ""
    out[spec.tokens.index(spec.word_delimiter)] = " "
    return out


class BeamDecoder:
    """Beam search over each utterance's own frames; returns the best beam's text and word frames."""

    def __init__(self, spec: AcousticSpec, lm_dir: Path | None, beam_width: int = DEFAULT_BEAM_WIDTH) -> None:
        from pyctcdecode import build_ctcdecoder

        self._spec = spec
        self.beam_width = beam_width
        self._special = [i for i in spec.special_ids if i != spec.blank_id]
        if lm_dir is None:
            self._decoder = build_ctcdecoder(labels(spec))
            return
        attrs = json.loads((Path(lm_dir) / ATTRS_FILE).read_text(encoding="utf-8"))
        unigrams_path = Path(lm_dir) / UNIGRAMS_FILE
        unigrams = unigrams_path.read_text(encoding="utf-8").split() if unigrams_path.exists() else None
        self._decoder = build_ctcdecoder(
            labels(spec),
            str(kenlm_file(lm_dir)),
            unigrams,
            alpha=float(attrs["alpha"]),
            beta=float(attrs["beta"]),
            **{k: attrs[k] for k in ("unk_score_offset",) if k in attrs},
        )

    def decode_one(
        self, logits: np.ndarray, hotwords: list[str] | None = None, weight: float = DEFAULT_HOTWORD_WEIGHT
    ) -> tuple[str, list[Word]]:
        """``[frames, vocab]`` of one utterance → transcript and words with frame spans."""
        if logits.shape[0] == 0:
            return "", []
        logits = np.array(logits, dtype=np.float32)
        logits[:, self._special] = _SUPPRESSED
        beams = self._decoder.decode_beams(
            logits, beam_width=self.beam_width, hotwords=hotwords or None, hotword_weight=weight
        )
        words = [Word(w, int(s), int(e)) for w, (s, e) in beams[0][2]]
        return " ".join(w.word for w in words), words

    def decode(
        self, logits: np.ndarray, num_samples: np.ndarray, breaks: Sequence[int] = (0,), **hotwords
    ) -> list[tuple[str, list[Word]]]:
        """Decode a batch ``[batch, frames, vocab]``; frames past each utterance's length are padding.

        Each part between ``breaks`` (frames where a long recording was cut at a pause) is searched
        on its own; its words are placed at their frames in the recording.
        """
        decoded = []
        for row, n in zip(logits, num_samples.reshape(-1)):
            frames = self._spec.frames(int(n))
            bounds = [b for b in sorted(set(breaks) | {0}) if b < frames]
            words: list[Word] = []
            for first, last in zip(bounds, [*bounds[1:], frames]):
                _, part = self.decode_one(row[first:last], **hotwords)
                words += [Word(w.word, w.start_frame + first, w.end_frame + first) for w in part]
            decoded.append((" ".join(w.word for w in words), words))
        return decoded
