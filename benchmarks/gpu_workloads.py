"""What the GPU benchmark measures on: the model's shape, the clips of each workload, the test set.

Why a module of its own: the engine suite, the normalization suite and the served suite must time
the same shape on the same kind of audio, or their numbers do not compare; so the shape
(wav2vec2-large, built from its config: no download), its arithmetic per audio-second (what
"fraction of ceiling" divides by), the named workloads and the speech-like clips are defined once,
here. The bundled test set is packed here too (`--prepare-eval`), on the machine that has it, into
the one file that travels to the GPU machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vaani.serving.contract import SAMPLING_RATE

WORKLOADS = {"1x5s": [5.0], "32x10s": [10.0] * 32, "64x10s": [10.0] * 64}
MIXED_COUNT = 64
MIXED_RANGE = (2.0, 15.0)


def large_config():
    """wav2vec2-large (LV-60 family): 24 layers, 1024 hidden, 16 heads, stable layer norm."""
    from transformers import Wav2Vec2Config

    from vaani.recipe import hindi

    vocab = hindi.ctc_vocabulary()
    return Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        pad_token_id=vocab[hindi.PAD],
        layerdrop=0.0,
        mask_time_prob=0.0,
    )


def mixed_seconds(seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(s), 3) for s in rng.uniform(*MIXED_RANGE, size=MIXED_COUNT)]


def workloads() -> dict[str, list[float]]:
    """The named workloads; ``mixed4`` is the size of a served round at concurrency 64 (the first
    four mixed clips), where launches, not the GPU, bound an eager packed run."""
    mixed = mixed_seconds()
    return {**WORKLOADS, "mixed": mixed, "mixed4": mixed[:4]}


def speechlike(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    """Normalized noise clips (never zeros: zeros run faster than real data)."""
    rng = np.random.default_rng(seed)
    clips = []
    for duration in seconds:
        clip = rng.standard_normal(round(duration * SAMPLING_RATE)).astype(np.float32)
        clips.append((clip - clip.mean()) / clip.std())
    return clips


def flops_per_audio_second(config, seconds: float = 10.0) -> float:
    """Multiply-adds × 2 of one clip of ``seconds``, per audio-second (conv encoder, pos conv, layers)."""
    samples = round(seconds * SAMPLING_RATE)
    total, length, channels = 0.0, samples, 1
    for dim, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
        total += 2 * length * dim * channels * kernel
        channels = dim
    frames, hidden = length, config.hidden_size
    total += 2 * frames * channels * hidden  # feature projection
    total += (
        2
        * frames
        * hidden
        * (hidden // config.num_conv_pos_embedding_groups)
        * config.num_conv_pos_embeddings
    )
    per_layer = 2 * frames * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    per_layer += 2 * 2 * frames * frames * hidden  # QK^T and PV
    total += config.num_hidden_layers * per_layer + 2 * frames * hidden * config.vocab_size
    return total / seconds


def prepare_eval(manifest: Path, out: Path, limit: int) -> None:
    """Pack a NeMo-style manifest's audio (16 kHz, int16) and texts into one .npz for the GPU machine.

    The first ``limit`` utterances only: the file travels with the working tree, which is size-limited.
    """
    from vaani.audio import load_audio

    lines = [line for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines[:limit]]
    clips = [load_audio(manifest.parent / r["audio_filepath"]) for r in records]
    offsets = np.cumsum([0] + [len(c) for c in clips])
    audio = np.concatenate([np.clip(c * 32768.0, -32768, 32767).astype(np.int16) for c in clips])
    np.savez_compressed(out, audio=audio, offsets=offsets, texts=np.array([r["text"] for r in records]))
    print(f"{len(clips)} utterances, {offsets[-1] / SAMPLING_RATE / 60:.1f} min → {out}")
