"""Hindi WER normalization: each rule on real Devanagari, because a wrong rule silently moves WER."""

from __future__ import annotations

import jiwer
import pytest

from vaani.scoring import normalize

NUKTA = "\u093c"


@pytest.mark.parametrize(
    ("precomposed", "decomposed"),
    [
        ("\u0958", "\u0915" + NUKTA),  # क़ (qa)
        ("\u0959", "\u0916" + NUKTA),  # ख़
        ("\u095a", "\u0917" + NUKTA),  # ग़
        ("\u095b", "\u091c" + NUKTA),  # ज़
        ("\u095c", "\u0921" + NUKTA),  # ड़
        ("\u095d", "\u0922" + NUKTA),  # ढ़
        ("\u095e", "\u092b" + NUKTA),  # फ़
        ("\u095f", "\u092f" + NUKTA),  # य़
        ("\u0929", "\u0928" + NUKTA),  # ऩ: NFC would compose this one back
        ("\u0931", "\u0930" + NUKTA),  # ऱ
        ("\u0934", "\u0933" + NUKTA),  # ऴ
    ],
)
def test_precomposed_nukta_letters_are_decomposed(precomposed: str, decomposed: str) -> None:
    assert normalize(precomposed) == decomposed
    assert normalize(decomposed) == decomposed


def test_nukta_spellings_of_a_word_score_as_the_same_word() -> None:
    # "ज़रूर" and "क़िला", once typed with precomposed letters, once with letter + nukta.
    precomposed = "\u095b\u0930\u0942\u0930 \u0958\u093f\u0932\u093e"
    decomposed = "\u091c\u093c\u0930\u0942\u0930 \u0915\u093c\u093f\u0932\u093e"
    assert precomposed != decomposed
    assert normalize(precomposed) == normalize(decomposed)
    assert jiwer.wer(normalize(decomposed), normalize(precomposed)) == 0.0


def test_nukta_is_not_dropped() -> None:
    # ज़मीन (land) and जमीन are different spellings; normalization must not merge them.
    assert normalize("ज़मीन") != normalize("जमीन")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("मैं घर जा रहा हूँ।", "मैं घर जा रहा हूँ"),
        ("राम ने कहा । ठीक है ।", "राम ने कहा ठीक है"),
        ("सत्यमेव जयते ॥", "सत्यमेव जयते"),
        ("पहला वाक्य। दूसरा वाक्य॥ तीसरा", "पहला वाक्य दूसरा वाक्य तीसरा"),
        ("राम | श्याम", "राम श्याम"),
    ],
)
def test_danda_and_double_danda_are_removed(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("नमस्ते, आप कैसे हैं?", "नमस्ते आप कैसे हैं"),
        ('उसने कहा: "चलो!" (अभी)', "उसने कहा चलो अभी"),
        ("राम-श्याम; सीता...", "राम श्याम सीता"),
        ("राम,श्याम", "राम श्याम"),
        ("‘हाँ’ — ठीक", "हाँ ठीक"),
    ],
)
def test_latin_and_unicode_punctuation_is_removed(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_zwj_and_zwnj_are_removed() -> None:
    zwj, zwnj = "\u200d", "\u200c"
    plain = "क्षत्रिय"
    assert normalize("क्" + zwj + "षत्रिय") == plain
    assert normalize("क्" + zwnj + "षत्रिय") == plain
    assert normalize("\ufeff" + plain) == plain


def test_chandrabindu_is_kept_and_distinct_from_anusvara() -> None:
    chandrabindu, anusvara = "\u0901", "\u0902"
    assert normalize("हँसना") == "हँसना"
    assert chandrabindu in normalize("माँ")
    assert anusvara in normalize("हंस")
    assert normalize("हँस") != normalize("हंस")


def test_spaces_are_collapsed_and_stripped() -> None:
    assert normalize("  मैं   घर \t जा\u00a0रहा\nहूँ  ") == "मैं घर जा रहा हूँ"
    assert normalize(" ।  ॥ ") == ""


def test_devanagari_letters_and_signs_pass_unchanged() -> None:
    text = "क्षत्रिय ऋषि ॐ अः कृष्ण श्री"
    assert normalize(text) == text
