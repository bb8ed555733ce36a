"""WER/CER scoring: Hindi text normalization as the Vistaar benchmark applies it, then `jiwer`.

Scores are corpus-level (one `jiwer` call over every pair), as published WERs are computed.

Both reference and hypothesis pass through :func:`normalize` so that spellings which read the
same do not count as errors: punctuation (Latin and Devanagari ``।`` / ``॥``) goes, nukta letters
are compared in one form, invisible joiners vanish, and spacing is canonical.

Why a small function here instead of ``indic-nlp-library``: its normalizer is what Vistaar calls,
but the wheel pulls in Sphinx, pandas, Morfessor and numpy 2 (the python backend needs numpy<2),
while the part of it that matters for Hindi WER is the few rules below, each pinned by a test in
``tests/test_normalize.py``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jiwer

from vaani.errors import UserFacingError

NUKTA = "\u093c"

# Precomposed nukta letters → base letter + nukta. U+0958–U+095F are Unicode composition
# exclusions (NFC never produces them) but U+0929, U+0931 and U+0934 are not, so NFC/NFD cannot
# be relied on for a single canonical form; an explicit table is.
_DECOMPOSE_NUKTA = {
    "\u0929": "\u0928" + NUKTA,  # Letter Nnna
    "\u0931": "\u0930" + NUKTA,  # Letter Rra
    "\u0934": "\u0933" + NUKTA,  # Letter Llla
    "\u0958": "\u0915" + NUKTA,  # Letter Qa
    "\u0959": "\u0916" + NUKTA,  # Letter Khha
    "\u095a": "\u0917" + NUKTA,  # Letter Ghha
    "\u095b": "\u091c" + NUKTA,  # Letter Za
    "\u095c": "\u0921" + NUKTA,  # Letter Dddha
    "\u095d": "\u0922" + NUKTA,  # Letter Rha
    "\u095e": "\u092b" + NUKTA,  # Letter Fa
    "\u095f": "\u092f" + NUKTA,  # Letter Yya
}

# Zero-width joiner / non-joiner only change how a conjunct is drawn, never the word; a byte-order
# mark is an encoding artifact that some transcript files carry at the start of a line.
_INVISIBLE = {"\u200c": "", "\u200d": "", "\ufeff": ""}

# ``|`` is not Unicode punctuation (it is a math symbol) but transcripts use it for a danda, and
# it is the CTC word delimiter: it must never survive into a scored word.
_EXTRA_PUNCTUATION = {"|"}

_TABLE = str.maketrans({**_DECOMPOSE_NUKTA, **_INVISIBLE})


def _is_punctuation(char: str) -> bool:
    """Unicode punctuation (categories P*), which covers ``।`` (U+0964) and ``॥`` (U+0965)."""
    return char in _EXTRA_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize(text: str) -> str:
    """Return ``text`` as scored: punctuation gone, nukta letters decomposed, joiners gone, single spaces.

    Punctuation becomes a space rather than nothing, so ``राम,श्याम`` stays two words as it is
    spoken; the final whitespace collapse removes the extra spaces this leaves. Chandrabindu
    (ँ) and anusvara (ं) are distinct letters and are left as they are.
    """
    text = text.translate(_TABLE)
    text = "".join(" " if _is_punctuation(char) else char for char in text)
    return " ".join(text.split())


@dataclass(frozen=True)
class UtteranceScore:
    """Per-utterance view of the corpus alignment; rates are NaN when the reference is empty."""

    reference: str
    hypothesis: str
    wer: float
    cer: float
    alignment: str


@dataclass(frozen=True)
class Scores:
    """Corpus-level word and character scores plus the per-utterance breakdown."""

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    utterances: list[UtteranceScore]


def _rate(errors: int, reference_length: int) -> float:
    return errors / reference_length if reference_length else math.nan


def _render_alignment(reference: list[str], hypothesis: list[str], chunks: list[Any], sep: str) -> str:
    """One-line alignment: matches as they are, ``[S ref→hyp]``, ``[D ref]``, ``[I hyp]``.

    A single line keeps the CSV one row per utterance and still shows every error in place.
    """
    parts: list[str] = []
    for chunk in chunks:
        ref = sep.join(reference[chunk.ref_start_idx : chunk.ref_end_idx])
        hyp = sep.join(hypothesis[chunk.hyp_start_idx : chunk.hyp_end_idx])
        if chunk.type == "equal":
            parts.append(ref)
        elif chunk.type == "substitute":
            parts.append(f"[S {ref}→{hyp}]")
        elif chunk.type == "delete":
            parts.append(f"[D {ref}]")
        else:
            parts.append(f"[I {hyp}]")
    return " ".join(parts)


def _counts(chunks: list[Any]) -> tuple[int, int]:
    """(errors, reference length) of one sentence's alignment."""
    errors = reference_length = 0
    for chunk in chunks:
        ref_len = chunk.ref_end_idx - chunk.ref_start_idx
        hyp_len = chunk.hyp_end_idx - chunk.hyp_start_idx
        reference_length += ref_len
        if chunk.type != "equal":
            errors += max(ref_len, hyp_len)
    return errors, reference_length


def score(references: Sequence[str], hypotheses: Sequence[str]) -> Scores:
    """Normalize both sides and score them with jiwer, corpus-level and per utterance."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize(text) for text in references]
    hyps = [normalize(text) for text in hypotheses]
    if not any(refs):
        raise UserFacingError("every reference is empty after normalization: nothing to score")
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    utterances = []
    for index, (ref, hyp) in enumerate(zip(refs, hyps, strict=True)):
        word_errors, ref_words = _counts(words.alignments[index])
        char_errors, ref_chars = _counts(chars.alignments[index])
        alignment = _render_alignment(
            words.references[index], words.hypotheses[index], words.alignments[index], " "
        )
        utterances.append(
            UtteranceScore(ref, hyp, _rate(word_errors, ref_words), _rate(char_errors, ref_chars), alignment)
        )
    return Scores(
        wer=words.wer,
        cer=chars.cer,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        hits=words.hits,
        utterances=utterances,
    )
