"""The Devanagari alphabet that ai4bharat/indicwav2vec-hindi transcribes into.

The bundled model and the synthetic corpus share this table, so a transcript of the
bundled model and of the real model use the same characters: nukta (U+093C) is a
separate mark (``क़`` is ``क`` + ``़``), no digits, no Latin, ``|`` between words.
"""

from __future__ import annotations

PAD = "<pad>"
BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
WORD_DELIMITER = "|"

INDEPENDENT_VOWELS = "अआइईउऊऋएऐऑओऔ"
CONSONANTS = "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह"
VOWEL_SIGNS = "ािीुूृॅेैॉोौ"
MARKS = "ँंः़्"  # chandrabindu, anusvara, visarga, virama, nukta

LETTERS = INDEPENDENT_VOWELS + CONSONANTS + VOWEL_SIGNS + MARKS


def ctc_vocabulary() -> dict[str, int]:
    """Token → id in fairseq order: specials first, so ``<pad>`` (the CTC blank) is id 1."""
    tokens = [BOS, PAD, EOS, UNK, WORD_DELIMITER, *LETTERS]
    return {token: index for index, token in enumerate(tokens)}


def is_transcribable(text: str) -> bool:
    """True when every character of ``text`` is a letter of the alphabet or a space."""
    return all(ch == " " or ch in LETTERS for ch in text)
