"""Hindi text normalization for WER/CER, as the Vistaar benchmark applies it before `jiwer`.

Both reference and hypothesis pass through :func:`normalize` so that spellings which read the
same do not count as errors: punctuation (Latin and Devanagari ``।`` / ``॥``) goes, nukta letters
are compared in one form, invisible joiners vanish, and spacing is canonical.

Why a small function here instead of ``indic-nlp-library``: its normalizer is what Vistaar calls,
but the wheel pulls in Sphinx, pandas, Morfessor and numpy 2 (the python backend needs numpy<2),
while the part of it that matters for Hindi WER is the few rules below, each pinned by a test in
``tests/test_normalize.py``.
"""

from __future__ import annotations

import unicodedata

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
