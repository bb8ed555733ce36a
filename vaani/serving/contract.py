"""The tensor contract of the `asr` ensemble: every name and unit that crosses a step boundary.

Steps, configs, clients, load tests and tests import these names instead of spelling them,
so renaming a tensor is a one-line change that no file can miss.
"""

from __future__ import annotations

from pathlib import Path

SAMPLING_RATE = 16_000
"""Hz of the audio `asr` takes: mono PCM in [-1, 1]."""

ENSEMBLE = "asr"
PREPROCESS = "preprocess"
ACOUSTIC = "wav2vec2"  # the acoustic model: a recording's windows in, joined logits (or best tokens) out
WINDOWS_STEP = "windows"  # with a TensorRT plan only: sends each window to the plan (BLS), joins
DECODER = "ctc_decoder"
ENSEMBLE_STEPS = (PREPROCESS, ACOUSTIC, DECODER)
STREAM = "asr_stream"  # live recognition: one Triton sequence per stream (see below)
STEPS = (PREPROCESS, ACOUSTIC, DECODER, WINDOWS_STEP, STREAM)  # every model that can have a `model.py`

# Public tensors of `asr`.
AUDIO = "AUDIO"
TRANSCRIPT = "TRANSCRIPT"
WORDS = "WORDS"
"""Optional output: UTF-8 JSON ``[{"word", "start", "end"}]``, seconds from the start of the audio."""
HOTWORDS = "HOTWORDS"
"""Optional input: words or phrases the beam search favours for this request (STRING, one per element)."""
HOTWORD_WEIGHT = "HOTWORD_WEIGHT"
"""Optional input: how strongly (FP32, one per request; pyctcdecode's default 10)."""

# Between the steps.
WINDOWS = "WINDOWS"  # a recording's windows, each normalized, end to end (`vaani.serving.windowing`)
WINDOW_LAYOUT = "WINDOW_LAYOUT"  # where each window lies and which of its frames the join keeps
INPUT_VALUES = "INPUT_VALUES"
ATTENTION_MASK = "ATTENTION_MASK"
NUM_SAMPLES = "NUM_SAMPLES"
LOGITS = "LOGITS"
FRAME_RMS = "FRAME_RMS"
"""Each frame's RMS of the client's audio (FP32, `preprocess` to `ctc_decoder`): where speech is, so
that a word's time ends where its sound does; 1/320 of the audio's bytes."""
FRAME_TOKENS = "FRAME_TOKENS"
"""The most probable token of each frame (INT32): all greedy decoding needs, 1/vocab of LOGITS' bytes."""

VERSION = "1"
"""The one model version `vaani build` writes for every step."""

SPEC_FILE = "acoustic.json"
"""Per-step copy of the model's `AcousticSpec`, written by `vaani build`."""


def version_dir(repository: Path, model: str) -> Path:
    """The folder of ``model``'s served version inside ``repository``."""
    return Path(repository) / model / VERSION


# Streaming: `asr_stream`, one Triton sequence per stream (sequence batching, START / END / READY /
# CORRID control inputs, so tritonclient's `start_stream` / `async_stream_infer(sequence_id=...,
# sequence_start=..., sequence_end=...)` work unchanged). Each request carries `AUDIO`: the stream's
# next chunk (FP32 [-1], 16 kHz mono, from `STREAM_MIN_CHUNK_SECONDS` up to the repository's cap).
STREAM_STEP = STREAM  # the python-backend step that serves it (its `model.py`)
STREAM_MIN_CHUNK_SECONDS = 0.1
"""The shortest chunk a stream may send (except its last, which may be shorter)."""
PARTIAL = "PARTIAL"
"""Output of `asr_stream` (STRING [1]): the trailing part of TRANSCRIPT that may still change, or empty.
TRANSCRIPT is the stream's text so far: its finished segments, then this partial."""
STREAM_START = "START"
STREAM_END = "END"
STREAM_READY = "READY"
STREAM_CORRID = "CORRID"
"""Triton's sequence control inputs of `asr_stream` (START/END/READY INT32 0 or 1, CORRID UINT64)."""
