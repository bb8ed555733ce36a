"""The FP32 PyTorch reference beside a served run: same audio, same scoring, transcripts compared.

Accuracy is part of correctness: an engine or precision is judged by whether its
transcripts equal the reference ones, not only by its logits. Needs the build extra
(torch, transformers), so it is imported only when `vaani wer --reference` asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vaani.audio import load_audio
from vaani.client.wer import Transcription
from vaani.scoring import score


def compare_with_reference(
    transcriptions: Sequence[Transcription], model_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Transcribe the same files with the PyTorch model one at a time; WER/CER and identical count."""
    from vaani.build.hf_model import HfModel

    model = HfModel.load(model_dir)
    items = tqdm(transcriptions, desc="PyTorch FP32 reference", unit="utt", disable=not progress)
    reference = [model.transcribe([load_audio(t.entry.audio_path)])[0] for t in items]
    scores = score([t.entry.text for t in transcriptions], reference)
    differing = [
        {"audio_filepath": str(t.entry.audio_path), "served": t.hypothesis, "pytorch": ref}
        for t, ref in zip(transcriptions, reference, strict=True)
        if t.hypothesis != ref
    ]
    return {
        "model": str(model_dir),
        "wer": scores.wer,
        "cer": scores.cer,
        "identical_transcripts": len(transcriptions) - len(differing),
        "utterances": len(transcriptions),
        "differing": differing,
    }
