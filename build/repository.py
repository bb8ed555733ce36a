"""Every `config.pbtxt` of the repository, generated from one typed source of truth.

The source is the model's own facts (`AcousticSpec`) plus `RepositorySettings`; configs
are Triton's own `ModelConfig` protobuf messages written with `text_format`, so a typo
in a field name fails here rather than at server start.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vaani.build.tensorrt.shape_profile import shape_profile
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import (
    ACOUSTIC,
    ATTENTION_MASK,
    AUDIO,
    DECODER,
    ENSEMBLE,
    ENSEMBLE_STEPS,
    FRAME_RMS,
    FRAME_TOKENS,
    HOTWORD_WEIGHT,
    HOTWORDS,
    INPUT_VALUES,
    LOGITS,
    NUM_SAMPLES,
    PARTIAL,
    PREPROCESS,
    SAMPLING_RATE,
    STEPS,
    STREAM,
    STREAM_CORRID,
    STREAM_END,
    STREAM_MIN_CHUNK_SECONDS,
    STREAM_READY,
    STREAM_START,
    TRANSCRIPT,
    WINDOW_LAYOUT,
    WINDOWS,
    WINDOWS_STEP,
    WORDS,
)
from vaani.serving.engines.torch_options import TorchEngineOptions
from vaani.serving.windowing import Windowing

ENGINES = ("onnxruntime", "torch", "tensorrt")
DECODERS = ("auto", "greedy", "beam")


@dataclass(frozen=True)
class RepositorySettings:
    """Serving knobs; every field is a `vaani build`/`vaani serve` option of the same name."""

    engine: str = "onnxruntime"
    max_batch_size: int = 32
    max_audio_seconds: float = 3600.0
    # Dynamic batching: how long a step holds a request hoping for a batch. queue_delay_us is
    # `wav2vec2`'s (the engine, or the TensorRT plan; and `asr_stream`'s chunks);
    # host_steps_queue_delay_us that of the host steps around it (`preprocess`, `ctc_decoder`,
    # `windows`), -1: the same. At low load every request pays each step's wait (2 ms each by
    # default); 0 at the host steps takes it off and they still batch what queued while an instance
    # was busy, but on a CPU whose engine is slow the waits upstream also gather the engine's rounds:
    # the bundled model served fewer requests a second without them at 16 in flight, mostly
    # (docs/load-tests.md, "The fixed cost of one request"), so 0 is for a fast engine (a GPU).
    queue_delay_us: int = 2_000
    host_steps_queue_delay_us: int = -1
    threads: int = 0
    acoustic_instances: int = 1
    python_instances: int = 1
    max_padding: float = 0.35
    bucket_seconds: float = 0.0
    # TensorRT optimization profile: min and max follow from the fields above (batch 1 and one
    # bucket up to max_batch_size and max_audio_seconds); these pick the shape tuned for.
    profile_opt_batch: int = 8
    profile_opt_seconds: float = 10.0
    # Recordings longer than one window (chunk + context on both sides) are cut into windows.
    window_seconds: float = 20.0
    context_seconds: float = 2.0
    pause_seconds: float = 0.3  # a silence this long cuts a long recording (0: cut every window_seconds)
    windows_in_flight: int = 16  # with a TensorRT plan: windows of one request out to the plan at once
    # Bounded load: each step queues at most this many requests (more are refused at once with
    # UNAVAILABLE, HTTP 503) and drops a request that waited longer than its timeout (the default
    # below, or the request's own `timeout` parameter) before it reaches the step.
    max_queue_size: int = 64
    request_timeout_s: float = 120.0
    # Audio one call of a python-backend engine takes at most (rows are split across calls): bounds
    # the activations, and so the peak memory, of one execution whatever the batch holds.
    max_batch_audio_seconds: float = 240.0
    # Fairness: `wav2vec2` serves the requests it holds in rounds, each request running at most this much
    # of its audio (one window at least) per round, so a long recording shares every engine run with the
    # requests that came meanwhile (`vaani.serving.steps.turns`). 0: a request's windows all in one round.
    turn_audio_seconds: float = 8.0
    # ONNX Runtime's CPU memory arena keeps the peak of a large batch for the life of the process.
    memory_arena: bool = False
    # onnxruntime engine: the graph's weight matrix products in INT8 (dynamic quantization; the
    # convolutional feature encoder stays FP32), installed only if the accuracy gate accepts its
    # transcripts of the evaluation manifest (`vaani.build.quantization`). Off by default: the gate
    # needs the synthesized test set and minutes before a first serve (`vaani.build.quantization`).
    quantize: bool = False
    # torch engine: one wav2vec2 instance group per GPU 0 … gpus-1, each of acoustic_instances
    # (0: a single group that Triton repeats on every GPU it sees).
    gpus: int = 0
    # CTC decoding: "auto" is beam search when the model folder has `language_model/` (or `lm` is
    # given), else greedy. NaN alpha/beta mean "the LM's attrs.json".
    decoder: str = "auto"
    lm: str = ""
    beam_width: int = 64
    lm_alpha: float = math.nan
    lm_beta: float = math.nan
    decoder_instances: int = 0
    # Live recognition (`asr_stream`, docs/streaming.md): chunks from 0.1 s up to stream_max_chunk_seconds;
    # a segment finishes at a pause or at stream_segment_seconds (the partial is recomputed over it at every
    # chunk); at most max_streams live streams, each dropped stream_idle_seconds after its last chunk.
    # stream_instances: processes of the step, each holding its share of the streams (Triton keeps a
    # stream on one instance); each waits on `asr` for its chunks, so more instances keep more in flight.
    # stream_partial_seconds: the least new audio between two recomputations of a stream's partial; a
    # chunk in between is answered at once with the standing partial (0: every chunk with speech).
    stream_max_chunk_seconds: float = 2.0
    stream_segment_seconds: float = 8.0
    max_streams: int = 256
    stream_idle_seconds: float = 30.0
    stream_instances: int = 4
    stream_partial_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}; got {self.decoder!r}")
        if self.beam_width < 1:
            raise ValueError("beam_width must be at least 1")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.max_batch_audio_seconds < self.window_seconds + 2 * self.context_seconds:
            raise ValueError("max_batch_audio_seconds must hold at least one window (window + 2 × context)")
        if self.queue_delay_us < 0 or self.host_steps_queue_delay_us < -1:
            raise ValueError(
                "queue_delay_us must be 0 (no wait) or above, host_steps_queue_delay_us too or -1 (the same)"
            )
        if self.turn_audio_seconds < 0:
            raise ValueError("turn_audio_seconds must be 0 (a request's windows in one round) or above")
        if self.quantize and self.engine != "onnxruntime":
            raise ValueError("quantize (INT8 matrix products) is an onnxruntime engine option")
        if self.gpus < 0:
            raise ValueError("gpus must be 0 (every GPU Triton sees) or a count of GPUs")
        if not STREAM_MIN_CHUNK_SECONDS <= self.stream_max_chunk_seconds <= self.stream_segment_seconds:
            raise ValueError(
                f"stream_max_chunk_seconds must lie from {STREAM_MIN_CHUNK_SECONDS} to stream_segment_seconds"
            )
        if self.stream_partial_seconds < 0:
            raise ValueError("stream_partial_seconds must be 0 (a partial at every chunk) or above")
        if self.max_streams < 1 or self.stream_idle_seconds <= 0 or self.stream_instances < 1:
            raise ValueError(
                "max_streams and stream_instances must be at least 1, stream_idle_seconds above 0"
            )

    @property
    def host_steps_delay_us(self) -> int:
        """The host steps' batching delay: ``host_steps_queue_delay_us``, or ``queue_delay_us`` for -1."""
        return self.queue_delay_us if self.host_steps_queue_delay_us == -1 else self.host_steps_queue_delay_us

    @property
    def max_samples(self) -> int:
        return round(self.max_audio_seconds * SAMPLING_RATE)

    @property
    def bucket_samples(self) -> int:
        return round(self.bucket_seconds * SAMPLING_RATE)

    def windowing(self, spec: AcousticSpec) -> Windowing:
        return Windowing.from_seconds(
            self.window_seconds, self.context_seconds, self.pause_seconds, spec, SAMPLING_RATE
        )

    def window_samples(self, spec: AcousticSpec) -> int:
        """The most samples the acoustic model gets in one row: a window, padded up to a bucket."""
        longest = self.windowing(spec).longest
        bucket = self.bucket_samples
        return longest if bucket <= 0 else -(-longest // bucket) * bucket


def settings_changes(text: str) -> dict[str, object]:
    """``field=value,…`` as `RepositorySettings` values, each parsed as its field's annotation says
    (``none`` for a field that may be None): the benchmarks' way to name a variant of the settings."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(RepositorySettings)}
    changes: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in kinds:
            raise ValueError(f"no RepositorySettings field {name!r}")
        kind = kinds[name]
        if value.lower() == "none" and "None" in kind:
            changes[name] = None
        elif kind.startswith("bool"):
            changes[name] = value.lower() in ("1", "true", "yes")
        else:
            changes[name] = {"int": int, "float": float}.get(kind.split(" | ")[0], str)(value)
    return changes


def _io(cls, name: str, dtype: int, dims: list[int], ragged: bool = False):
    tensor = cls(name=name, data_type=dtype, dims=dims)
    if ragged:
        tensor.allow_ragged_batch = True
    return tensor


def _parameters(config: mc.ModelConfig, values: dict[str, object]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _batching(settings: RepositorySettings, delay_us: int, **extra: object) -> mc.ModelDynamicBatching:
    """The dynamic batcher of a step, with its bounded queue and timeouts (see `RepositorySettings`);
    ``delay_us``: the acoustic step's ``queue_delay_us`` or the host steps' (`host_steps_delay_us`)."""
    policy = mc.ModelQueuePolicy(
        timeout_action=mc.ModelQueuePolicy.REJECT,
        default_timeout_microseconds=round(settings.request_timeout_s * 1_000_000),
        allow_timeout_override=True,
        max_queue_size=settings.max_queue_size,
    )
    return mc.ModelDynamicBatching(
        max_queue_delay_microseconds=delay_us, default_queue_policy=policy, **extra
    )


def _python_step(name: str, settings: RepositorySettings, kind: int = mc.ModelInstanceGroup.KIND_CPU):
    return mc.ModelConfig(
        name=name,
        backend="python",
        max_batch_size=settings.max_batch_size,
        dynamic_batching=_batching(settings, settings.host_steps_delay_us),
        instance_group=[mc.ModelInstanceGroup(count=settings.python_instances, kind=kind)],
    )


def _window_parameters(spec: AcousticSpec, settings: RepositorySettings) -> dict[str, object]:
    windowing = settings.windowing(spec)
    return {
        "chunk_samples": windowing.chunk,
        "context_samples": windowing.context,
        "pause_samples": windowing.min_pause,
        "max_samples": settings.max_samples,
    }


def preprocess_config(
    spec: AcousticSpec, settings: RepositorySettings, normalize: bool = True
) -> mc.ModelConfig:
    """``normalize`` False when the acoustic engine normalizes on its own device (`torch`)."""
    config = _python_step(PREPROCESS, settings)
    config.input.append(_io(mc.ModelInput, AUDIO, mc.TYPE_FP32, [-1], ragged=True))
    config.output.extend(
        [
            _io(mc.ModelOutput, WINDOWS, mc.TYPE_FP32, [-1]),
            _io(mc.ModelOutput, WINDOW_LAYOUT, mc.TYPE_INT64, [-1]),
            _io(mc.ModelOutput, NUM_SAMPLES, mc.TYPE_INT64, [1]),
            _io(mc.ModelOutput, FRAME_RMS, mc.TYPE_FP32, [-1]),
        ]
    )
    _parameters(
        config,
        {
            "min_samples": spec.receptive_field,
            "normalize": str(normalize).lower(),
            **_window_parameters(spec, settings),
        },
    )
    return config


def decoder_input(decoder: str) -> str:
    """What the decoder reads: each frame's best token for greedy, the logits for beam search."""
    return FRAME_TOKENS if decoder == "greedy" else LOGITS


def _windows_inputs() -> list[mc.ModelInput]:
    """What `preprocess` sends on: a recording's windows end to end, where they lie, its length."""
    return [
        _io(mc.ModelInput, WINDOWS, mc.TYPE_FP32, [-1], ragged=True),
        _io(mc.ModelInput, WINDOW_LAYOUT, mc.TYPE_INT64, [-1], ragged=True),
        _io(mc.ModelInput, NUM_SAMPLES, mc.TYPE_INT64, [1]),
    ]


def windows_config(
    spec: AcousticSpec,
    settings: RepositorySettings,
    acoustic_inputs: tuple[str, ...],
    decoder: str = "greedy",
) -> mc.ModelConfig:
    """The BLS step between `preprocess` and the decoder when `wav2vec2` is a TensorRT plan:
    windows to the plan, logits joined (python engines do this in `wav2vec2` itself).

    ``acoustic_inputs`` are the inputs the plan declares (``ATTENTION_MASK`` only when its
    model takes one).
    """
    config = _python_step(WINDOWS_STEP, settings)
    config.input.extend(_windows_inputs())
    _decoder_output(config, spec, decoder)
    _parameters(
        config,
        {
            **_window_parameters(spec, settings),
            "decoder_input": decoder_input(decoder),
            "bucket_samples": settings.bucket_samples,
            "windows_in_flight": settings.windows_in_flight,
            "acoustic_inputs": ",".join(acoustic_inputs),
        },
    )
    return config


def _decoder_output(config: mc.ModelConfig, spec: AcousticSpec, decoder: str) -> None:
    """The step's output for the decoder: each frame's best token (greedy), else the logits."""
    if decoder_input(decoder) == FRAME_TOKENS:
        config.output.append(_io(mc.ModelOutput, FRAME_TOKENS, mc.TYPE_INT32, [-1]))
    else:
        config.output.append(_io(mc.ModelOutput, LOGITS, mc.TYPE_FP32, [-1, spec.vocab_size]))


def python_acoustic_config(
    spec: AcousticSpec, settings: RepositorySettings, decoder: str = "greedy"
) -> mc.ModelConfig:
    """`wav2vec2` as a python-backend engine: `preprocess`'s windows in, what the decoder reads out.

    Ragged batches: the windows of every request of an execution run together, packed or
    padded inside `execute()`.
    """
    config = mc.ModelConfig(
        name=ACOUSTIC,
        backend="python",
        max_batch_size=settings.max_batch_size,
        dynamic_batching=_batching(settings, settings.queue_delay_us),
        instance_group=[
            mc.ModelInstanceGroup(count=settings.acoustic_instances, kind=mc.ModelInstanceGroup.KIND_CPU)
        ],
    )
    config.input.extend(_windows_inputs())
    _decoder_output(config, spec, decoder)
    _parameters(
        config,
        {
            "engine": settings.engine,
            "threads": settings.threads,
            "max_padding": settings.max_padding,
            "max_batch_samples": round(settings.max_batch_audio_seconds * SAMPLING_RATE),
            "turn_samples": round(settings.turn_audio_seconds * SAMPLING_RATE),
            "memory_arena": str(settings.memory_arena).lower(),
            "decoder_input": decoder_input(decoder),
            **_window_parameters(spec, settings),
        },
    )
    return config


def ctc_decoder_config(
    spec: AcousticSpec, settings: RepositorySettings, decoder: str = "greedy"
) -> mc.ModelConfig:
    """``decoder`` is what the build resolved ``settings.decoder`` to: ``greedy`` or ``beam``."""
    config = _python_step(DECODER, settings)
    if settings.decoder_instances:
        config.instance_group[0].count = settings.decoder_instances
    config.input.extend(
        [
            _io(mc.ModelInput, NUM_SAMPLES, mc.TYPE_INT64, [1]),
            _io(mc.ModelInput, LOGITS, mc.TYPE_FP32, [-1, spec.vocab_size], ragged=True),
            _io(mc.ModelInput, FRAME_TOKENS, mc.TYPE_INT32, [-1], ragged=True),
            _io(mc.ModelInput, WINDOW_LAYOUT, mc.TYPE_INT64, [-1], ragged=True),
            _io(mc.ModelInput, HOTWORDS, mc.TYPE_STRING, [-1], ragged=True),
            _io(mc.ModelInput, HOTWORD_WEIGHT, mc.TYPE_FP32, [1]),
            # Each frame's loudness: word times end where the sound does (`vaani.serving.alignment`).
            _io(mc.ModelInput, FRAME_RMS, mc.TYPE_FP32, [-1], ragged=True),
        ]
    )
    for tensor in config.input[1:]:  # `wav2vec2` sends one of LOGITS and FRAME_TOKENS
        tensor.optional = True
    config.output.extend(
        [
            _io(mc.ModelOutput, TRANSCRIPT, mc.TYPE_STRING, [1]),
            _io(mc.ModelOutput, WORDS, mc.TYPE_STRING, [1]),
        ]
    )
    # The window layout and max_samples: the decoder checks a direct caller's WINDOW_LAYOUT as `wav2vec2`
    # does, caps its frames at the longest audio, and beam-searches one window's frames at a time.
    _parameters(
        config,
        {"decoder": decoder, "beam_width": settings.beam_width, **_window_parameters(spec, settings)},
    )
    return config


def ensemble_config(settings: RepositorySettings, decoder: str = "greedy") -> mc.ModelConfig:
    """The public contract: AUDIO (FP32 [-1]) in, TRANSCRIPT (STRING [1]) and optional WORDS out,
    through preprocess → wav2vec2 → ctc_decoder. A TensorRT plan cannot take windows, so with
    it the middle step is `windows`, which sends each window to the plan (BLS)."""
    step = mc.ModelEnsembling.Step
    scores = decoder_input(decoder)
    acoustic = WINDOWS_STEP if settings.engine == "tensorrt" else ACOUSTIC
    return mc.ModelConfig(
        name=ENSEMBLE,
        platform="ensemble",
        max_batch_size=settings.max_batch_size,
        input=[
            _io(mc.ModelInput, AUDIO, mc.TYPE_FP32, [-1]),
            mc.ModelInput(name=HOTWORDS, data_type=mc.TYPE_STRING, dims=[-1], optional=True),
            mc.ModelInput(name=HOTWORD_WEIGHT, data_type=mc.TYPE_FP32, dims=[1], optional=True),
        ],
        output=[
            _io(mc.ModelOutput, TRANSCRIPT, mc.TYPE_STRING, [1]),
            _io(mc.ModelOutput, WORDS, mc.TYPE_STRING, [1]),
        ],
        ensemble_scheduling=mc.ModelEnsembling(
            step=[
                step(
                    model_name=PREPROCESS,
                    model_version=-1,
                    input_map={AUDIO: AUDIO},
                    output_map={
                        WINDOWS: "windows",
                        WINDOW_LAYOUT: "window_layout",
                        NUM_SAMPLES: "num_samples",
                        FRAME_RMS: "frame_rms",
                    },
                ),
                step(
                    model_name=acoustic,
                    model_version=-1,
                    input_map={
                        WINDOWS: "windows",
                        WINDOW_LAYOUT: "window_layout",
                        NUM_SAMPLES: "num_samples",
                    },
                    output_map={scores: "scores"},
                ),
                step(
                    model_name=DECODER,
                    model_version=-1,
                    input_map={
                        scores: "scores",
                        NUM_SAMPLES: "num_samples",
                        WINDOW_LAYOUT: "window_layout",
                        HOTWORDS: HOTWORDS,
                        HOTWORD_WEIGHT: HOTWORD_WEIGHT,
                        FRAME_RMS: "frame_rms",
                    },
                    output_map={TRANSCRIPT: TRANSCRIPT, WORDS: WORDS},
                ),
            ]
        ),
    )


def tensorrt_acoustic_config(spec: AcousticSpec, settings: RepositorySettings) -> mc.ModelConfig:
    """`wav2vec2` as a TensorRT plan that Triton runs itself, on the GPU.

    A plan runs equal shapes only (no ragged batches), so the `windows` step pads each window
    to a bucket and the dynamic batcher joins requests of the same bucket; the optimization
    profile the plan was built with bounds batch and length, so `max_batch_size` and the
    preferred batch sizes come from that same profile.
    """
    profile = shape_profile(settings)
    config = mc.ModelConfig(
        name=ACOUSTIC,
        platform="tensorrt_plan",
        max_batch_size=profile.max_batch,
        dynamic_batching=_batching(
            settings,
            settings.queue_delay_us,
            preferred_batch_size=sorted({profile.opt_batch, profile.max_batch}),
        ),
        instance_group=[
            mc.ModelInstanceGroup(count=settings.acoustic_instances, kind=mc.ModelInstanceGroup.KIND_GPU)
        ],
    )
    config.input.append(_io(mc.ModelInput, INPUT_VALUES, mc.TYPE_FP32, [-1]))
    if spec.uses_attention_mask:  # a plan's inputs must match the config's exactly
        config.input.append(_io(mc.ModelInput, ATTENTION_MASK, mc.TYPE_INT64, [-1]))
    config.output.append(_io(mc.ModelOutput, LOGITS, mc.TYPE_FP32, [-1, spec.vocab_size]))
    return config


def torch_acoustic_config(
    spec: AcousticSpec, settings: RepositorySettings, decoder: str = "greedy"
) -> mc.ModelConfig:
    """`wav2vec2` as the python-backend `torch` engine on the GPU (one instance group per GPU).

    Same tensors and ragged batching as the CPU engine; the instances are `KIND_GPU`, so
    Triton passes each its device id. With ``gpus`` each GPU gets its own group (``gpus: [i]``),
    so that the placement is written in the config rather than left to what the server sees.
    The engine's knobs travel as parameters, written from `TorchEngineOptions`' defaults (the
    fastest measured variant that passes the accuracy gate) so that they can be edited in place.
    """
    config = python_acoustic_config(spec, settings, decoder)
    del config.instance_group[:]
    kind = mc.ModelInstanceGroup.KIND_GPU
    if settings.gpus:
        config.instance_group.extend(
            mc.ModelInstanceGroup(
                name=f"{ACOUSTIC}_gpu{gpu}", count=settings.acoustic_instances, kind=kind, gpus=[gpu]
            )
            for gpu in range(settings.gpus)
        )
    else:
        config.instance_group.append(mc.ModelInstanceGroup(count=settings.acoustic_instances, kind=kind))
    _parameters(config, TorchEngineOptions().to_parameters())
    return config


def acoustic_config(
    spec: AcousticSpec, settings: RepositorySettings, decoder: str = "greedy"
) -> mc.ModelConfig:
    if settings.engine == "onnxruntime":
        return python_acoustic_config(spec, settings, decoder)
    if settings.engine == "torch":
        return torch_acoustic_config(spec, settings, decoder)
    if settings.engine == "tensorrt":
        return tensorrt_acoustic_config(spec, settings)
    raise NotImplementedError(f"config generation for engine {settings.engine!r} is not written yet")


def _normalizes(acoustic: mc.ModelConfig) -> bool:
    """Whether the acoustic engine normalizes its audio itself (`TorchEngineOptions.normalize`)."""
    parameter = acoustic.parameters.get("normalize")
    return parameter is not None and parameter.string_value == "true"


def _control(name: str, kind: int, **value: object) -> mc.ModelSequenceBatching.ControlInput:
    control = mc.ModelSequenceBatching.Control(kind=kind, **value)
    return mc.ModelSequenceBatching.ControlInput(name=name, control=[control])


def stream_config(spec: AcousticSpec, settings: RepositorySettings) -> mc.ModelConfig:
    """`asr_stream`: live recognition, one Triton sequence per stream (`vaani.serving.steps.asr_stream`).

    Sequence batching with Triton's standard control inputs, so tritonclient's sequence arguments
    (``sequence_id``, ``sequence_start``, ``sequence_end``) work unchanged. The `oldest` strategy: a
    stream's state lives in the step, not in a batch slot, so chunks of any streams may share an
    execution, and the step decodes them all at once through `asr`. Its candidate sequences reach past
    ``max_streams`` so that one stream too many reaches the step and is refused there with a message,
    instead of waiting in Triton's backlog. Triton keeps each sequence on one instance (spreading new
    ones over the instances), where its state lives; each instance holds its share of ``max_streams``.
    An execution waits on `asr` for all its chunks (a non-decoupled python model runs one execution at
    a time), so ``stream_instances`` executions in flight keep the pipeline busy.
    """
    instances = min(settings.stream_instances, settings.max_streams)
    share = -(-settings.max_streams // instances)  # so max_streams, up to instances - 1 more
    seq = mc.ModelSequenceBatching
    kinds = mc.ModelSequenceBatching.Control
    batching = seq(
        max_sequence_idle_microseconds=round(settings.stream_idle_seconds * 1_000_000),
        oldest=seq.StrategyOldest(
            max_candidate_sequences=2 * share + 2,
            max_queue_delay_microseconds=settings.queue_delay_us,
        ),
        control_input=[
            _control(STREAM_START, kinds.CONTROL_SEQUENCE_START, int32_false_true=[0, 1]),
            _control(STREAM_END, kinds.CONTROL_SEQUENCE_END, int32_false_true=[0, 1]),
            _control(STREAM_READY, kinds.CONTROL_SEQUENCE_READY, int32_false_true=[0, 1]),
            _control(STREAM_CORRID, kinds.CONTROL_SEQUENCE_CORRID, data_type=mc.TYPE_UINT64),
        ],
    )
    config = mc.ModelConfig(
        name=STREAM,
        backend="python",
        max_batch_size=settings.max_batch_size,
        sequence_batching=batching,
        instance_group=[mc.ModelInstanceGroup(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)],
    )
    config.input.append(_io(mc.ModelInput, AUDIO, mc.TYPE_FP32, [-1], ragged=True))
    config.output.extend(
        _io(mc.ModelOutput, name, mc.TYPE_STRING, [1]) for name in (TRANSCRIPT, PARTIAL, WORDS)
    )
    # A segment goes to `asr` whole: it stays a frame under the longest recording `asr` takes.
    longest = settings.max_samples - spec.samples_per_frame
    segment = min(round(settings.stream_segment_seconds * SAMPLING_RATE), longest)
    _parameters(
        config,
        {
            "min_chunk_samples": round(STREAM_MIN_CHUNK_SECONDS * SAMPLING_RATE),
            "max_chunk_samples": round(settings.stream_max_chunk_seconds * SAMPLING_RATE),
            "max_segment_samples": segment,
            "max_streams": share,
            "idle_seconds": settings.stream_idle_seconds,
            "partial_samples": round(settings.stream_partial_seconds * SAMPLING_RATE),
            **_window_parameters(spec, settings),
        },
    )
    return config


def all_configs(
    spec: AcousticSpec, settings: RepositorySettings, source_model: str = "", decoder: str = "greedy"
) -> dict[str, mc.ModelConfig]:
    """Every model of the repository: the ensemble and its steps (`windows` only for a plan)."""
    acoustic = acoustic_config(spec, settings, decoder)
    ensemble = ensemble_config(settings, decoder)
    if source_model:  # clients (`vaani wer`) read which model is served from here
        _parameters(ensemble, {"source_model": source_model})
    configs = {
        ENSEMBLE: ensemble,
        PREPROCESS: preprocess_config(spec, settings, normalize=not _normalizes(acoustic)),
        ACOUSTIC: acoustic,
        DECODER: ctc_decoder_config(spec, settings, decoder),
    }
    if settings.engine == "tensorrt":
        configs[WINDOWS_STEP] = windows_config(spec, settings, tuple(t.name for t in acoustic.input), decoder)
    configs[STREAM] = stream_config(spec, settings)
    return configs


def served_models(engine: str) -> tuple[str, ...]:
    """The ensemble, the steps it runs with ``engine`` and `asr_stream`: all a repository holds, all a
    server loads.

    `windows` exists only beside a TensorRT plan (the plan cannot take a recording's windows itself).
    """
    steps = (*ENSEMBLE_STEPS, WINDOWS_STEP) if engine == "tensorrt" else ENSEMBLE_STEPS
    return (ENSEMBLE, *steps, STREAM)


def write_configs(
    repository: Path,
    spec: AcousticSpec,
    settings: RepositorySettings,
    source_model: str = "",
    decoder: str = "greedy",
) -> None:
    """Write every `config.pbtxt` and give each step its copy of `acoustic.json`."""
    configs = all_configs(spec, settings, source_model, decoder)
    for name, config in configs.items():
        version_dir = repository / name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        (repository / name / "config.pbtxt").write_text(text_format.MessageToString(config), encoding="utf-8")
        if name in STEPS:
            spec.save(version_dir / "acoustic.json")
