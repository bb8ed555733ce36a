"""`vaani wer --compare-decoders`: greedy vs beam without LM vs beam with LM on the same logits.

The logits come from the FP32 PyTorch model once, so the three rows differ only in the decoder;
decoder time is one process on one core, reported as audio-seconds decoded per second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaani.audio import load_audio
from vaani.manifest import read_manifest
from vaani.scoring import score
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.beam import ATTRS_FILE, LM_DIR, BeamDecoder
from vaani.serving.contract import SAMPLING_RATE
from vaani.serving.ctc import GreedyDecoder

Decode = Callable[[np.ndarray], str]
"""One utterance's logits (its own frames) → its transcript."""


@dataclass(frozen=True)
class ServedDecoder:
    """How a served `ctc_decoder` decodes (its config's ``decoder`` and ``beam_width``)."""

    kind: str  # greedy | beam
    beam_width: int = 0

    def __str__(self) -> str:
        return "greedy" if self.kind == "greedy" else f"beam {self.beam_width}"

    def on(self, spec: AcousticSpec, model_dir: Path) -> Decode:
        """The same decoding over ``model_dir``'s logits, with the model folder's own LM for beam search."""
        if self.kind == "greedy":
            return _greedy(spec)
        return _beam(BeamDecoder(spec, _model_lm(model_dir), self.beam_width))


def _model_lm(model_dir: Path) -> Path | None:
    return model_dir / LM_DIR if (model_dir / LM_DIR).is_dir() else None


def _greedy(spec: AcousticSpec) -> Decode:
    greedy = GreedyDecoder(spec)
    return lambda x: greedy.decode_ids(np.argmax(x, axis=-1))


def compare_decoders(
    manifests: Path | list[Path], model_dir: Path, lm: Path | None = None, beam_width: int = 64
) -> list[dict[str, Any]]:
    """One row per set and decoder: WER, CER, decoder seconds and audio-seconds per second on one core.

    ``manifests`` are decoded in order (e.g. the held-out test set, then the out-of-vocabulary set);
    each row names its set by its manifest.
    """
    from vaani.build.hf_model import HfModel

    hf = HfModel.load(model_dir)
    spec = hf.spec()
    lm = lm or _model_lm(model_dir)
    decoders = {"greedy": _greedy(spec)}
    decoders["beam, no LM"] = _beam(BeamDecoder(spec, None, beam_width))
    if lm is not None:
        decoders[f"beam + LM ({lm}{_weights(lm)})"] = _beam(BeamDecoder(spec, lm, beam_width))
    rows = []
    for manifest in [manifests] if isinstance(manifests, Path) else manifests:
        entries = read_manifest(manifest)
        logits, seconds = [], 0.0
        for entry in entries:
            audio = load_audio(entry.audio_path)
            seconds += len(audio) / SAMPLING_RATE
            values, mask = hf.features([audio])
            logits.append(hf.logits(values, mask)[0][: spec.frames(len(audio))])
        references = [e.text for e in entries]
        for name, decode in decoders.items():
            start = time.perf_counter()
            hypotheses = [decode(x) for x in logits]
            elapsed = time.perf_counter() - start
            result = score(references, hypotheses)
            rows.append(
                {
                    "set": str(manifest),
                    "decoder": name,
                    "utterances": len(entries),
                    "audio_s": round(seconds, 1),
                    "wer": result.wer,
                    "cer": result.cer,
                    "decoder_s": round(elapsed, 3),
                    "audio_s_per_s_per_core": round(seconds / elapsed, 1),
                }
            )
    return rows


def _weights(lm: Path) -> str:
    """``, alpha A, beta B`` of a ``language_model/`` folder's attrs.json (what its beam search uses)."""
    attrs = Path(lm) / ATTRS_FILE
    if not attrs.is_file():
        return ""
    values = json.loads(attrs.read_text(encoding="utf-8"))
    return f", alpha {values['alpha']:g}, beta {values['beta']:g}"


def _beam(decoder: BeamDecoder) -> Decode:
    return lambda x: decoder.decode_one(x)[0]


def format_decoders(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `compare_decoders`' rows: one block of decoders per set."""
    lines = [
        "| set | decoder | WER % | CER % | decoder time (s) | audio-s per s, one core |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    shown = None
    for row in rows:
        name = ""
        if row.get("set") != shown:
            shown = row.get("set")
            name = f"{shown} ({row['utterances']} utt., {row['audio_s']:.0f} s)"
        lines.append(
            f"| {name} | {row['decoder']} | {100 * row['wer']:.2f} | {100 * row['cer']:.2f} "
            f"| {row['decoder_s']:.2f} | {row['audio_s_per_s_per_core']:,.0f} |"
        )
    return "\n".join(lines)
