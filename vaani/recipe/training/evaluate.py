"""The PyTorch reference: transcripts of a saved model on a manifest, and their CER/WER.

Input goes through the model's own `Wav2Vec2FeatureExtractor` and output through its
tokenizer (greedy CTC), so this is the number the served pipeline must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaani.manifest import read_manifest
from vaani.recipe.training import data


def greedy_transcripts(model, tokenizer, logits, attention_mask) -> list[str]:
    """Argmax over each utterance's valid frames, the tokenizer's CTC collapse, single spaces.

    The tokenizer turns a delimiter, blank, delimiter run into two spaces; the served
    `TRANSCRIPT` has single spaces between words, and so must the reference.
    """
    frames = model._get_feat_extract_output_lengths(attention_mask.sum(-1)).tolist()
    ids = logits.argmax(dim=-1).cpu()
    texts = tokenizer.batch_decode([row[:count].tolist() for row, count in zip(ids, frames, strict=True)])
    specials = [t for t in tokenizer.all_special_tokens if t != tokenizer.word_delimiter_token]
    for token in specials:
        texts = [text.replace(token, "") for text in texts]
    return [" ".join(text.split()) for text in texts]


def transcribe(model_dir: Path, audios: list[np.ndarray], device: str = "cpu", batch_seconds: float = 120.0):
    """Transcripts of ``audios`` (16 kHz float32) by the model in ``model_dir``, in input order."""
    import torch
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(str(model_dir)).to(device).eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(model_dir))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(str(model_dir))
    transcripts: list[str] = [""] * len(audios)
    lengths = [len(a) for a in audios]
    for batch in data.length_batches(lengths, int(batch_seconds * data.SAMPLING_RATE)):
        features = extractor(
            [audios[i] for i in batch],
            sampling_rate=data.SAMPLING_RATE,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            mask = features["attention_mask"].to(device)
            logits = model(features["input_values"].to(device), attention_mask=mask).logits
        for index, text in zip(batch, greedy_transcripts(model, tokenizer, logits, mask), strict=True):
            transcripts[index] = text
    return transcripts


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """CER and WER (fractions) over the whole set, computed by jiwer."""
    import jiwer

    return {"cer": float(jiwer.cer(references, hypotheses)), "wer": float(jiwer.wer(references, hypotheses))}


def evaluate_manifest(model_dir: Path, manifest: Path, device: str = "cpu") -> dict:
    """Reference CER/WER of a saved model on a manifest, with the worst utterances for a look."""
    entries = read_manifest(manifest)
    audios = data.load_audio([str(e.audio_path) for e in entries])
    references = [" ".join(e.text.split()) for e in entries]
    hypotheses = transcribe(model_dir, audios, device)
    seconds = sum(len(a) for a in audios) / data.SAMPLING_RATE
    rates = error_rates(references, hypotheses)
    mistakes = [(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True) if ref != hyp]
    return {
        **rates,
        "utterances": len(entries),
        "hours": seconds / 3600,
        "sentence_errors": len(mistakes),
        "examples": [{"reference": ref, "hypothesis": hyp} for ref, hyp in mistakes[:10]],
    }
