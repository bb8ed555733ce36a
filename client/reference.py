"""The FP32 PyTorch reference beside a served run: same audio, same scoring, transcripts compared.

Accuracy is part of correctness: an engine or precision is judged by whether its
transcripts equal the reference ones, not only by its logits. Needs the build extra
(torch, transformers), so it is imported only when `vaani wer --reference` asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from vaani.audio import load_audio
from vaani.client.decoders import ServedDecoder
from vaani.client.transcription import Transcription
from vaani.scoring import score

if TYPE_CHECKING:
    from vaani.build.hf_model import HfModel


def compare_with_reference(
    transcriptions: Sequence[Transcription], model_dir: Path, decoder: ServedDecoder, progress: bool = True
) -> dict[str, Any]:
    """Transcribe the same files with the PyTorch model one at a time, decoded as the server decodes;
    WER/CER and identical count."""
    from vaani.build.hf_model import HfModel

    model = HfModel.load(model_dir)
    decode = decoder.on(model.spec(), model_dir)
    items = tqdm(transcriptions, desc="PyTorch FP32 reference", unit="utt", disable=not progress)
    reference = [decode(_logits(model, load_audio(t.entry.audio_path))) for t in items]
    scores = score([t.entry.text for t in transcriptions], reference)
    differing = [
        {"audio_filepath": str(t.entry.audio_path), "served": t.hypothesis, "pytorch": ref}
        for t, ref in zip(transcriptions, reference, strict=True)
        if t.hypothesis != ref
    ]
    return {
        "model": str(model_dir),
        "decoder": str(decoder),
        "wer": scores.wer,
        "cer": scores.cer,
        "identical_transcripts": len(transcriptions) - len(differing),
        "utterances": len(transcriptions),
        "differing": differing,
    }


def _logits(model: HfModel, audio: np.ndarray) -> np.ndarray:
    """One utterance's FP32 logits over its own frames."""
    values, mask = model.features([audio])
    return model.logits(values, mask)[0][: model.spec_frames(len(audio))]
