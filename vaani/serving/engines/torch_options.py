"""The `torch` engine's options, without PyTorch: the config generation writes them as parameters.

They live apart from `torch_engine` so that `vaani build` (and any CPU-only install) can
write a torch repository's config from the same defaults the engine runs with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

DTYPE_NAMES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class TorchEngineOptions:
    """Knobs of the engine; each is a `wav2vec2` config parameter of the same name."""

    dtype: str = "bfloat16"
    # The engine normalizes each row's audio itself (torch_normalization), and `preprocess`
    # leaves it as it came: on a GPU that costs microseconds instead of the CPU's milliseconds.
    normalize: bool = True
    # Runs too large for a CUDA graph go through the packed forward (torch_packing): no padding
    # anywhere, variable-length attention. False runs them as one padded batch with a mask.
    packed: bool = True
    # The packed run's variable-length attention: "auto" times the kernels that run here when
    # the engine starts and keeps the fastest; "cudnn" or "flash" names one.
    packed_attention: str = "auto"
    channels_last: bool = True
    # False runs the norms natively in the half dtype (FP32 statistics, half parameters): only
    # there to measure what the FP32 policy costs; the precision policy (docs/architecture.md) asks for FP32.
    fp32_norms: bool = True
    # Masked (padded) attention: "auto" leaves the kernel to PyTorch (cuDNN's on an H200, ~10 %
    # faster on mixed lengths there); "efficient" forces the memory-efficient kernel.
    masked_attention: str = "auto"
    cuda_graphs: bool = True
    # The transformer's matrix products in FP8 (e4m3, one scale per token and per output channel;
    # `torch_fp8`), on GPUs that have them (compute capability ≥ 8.9) for stable-layer models; off by
    # default: it is a precision of its own, gated on transcripts (docs/gpu.md).
    fp8: bool = False
    # The feed-forward's first product applies its bias and GELU in its epilogue (cuBLASLt's GELU, the
    # tanh form: within 5e-4 of the exact one, under a BF16 rounding step) instead of a pass of its own
    # over the 4,096-wide activations; half dtypes only, where that difference is below the rounding.
    gelu_epilogue: bool = True
    # Host threads that copy the requests' audio into the pinned buffer (numpy releases the GIL while
    # it copies): one thread moved about 7 GB/s, 2.9 ms of a 32 × 10 s run on the H200's host.
    copy_threads: int = 4
    # Graphs are used while padded batch × length stays within this many seconds; above it the
    # GPU time hides the launch overhead and a graph would only cost memory.
    graph_max_seconds: float = 32.0
    # Lengths are padded up to a multiple of this for graph reuse (one graph per bucket).
    graph_bucket_seconds: float = 1.0
    # Packed runs of up to this many seconds of audio replay a CUDA graph of the transformer (one per
    # bucket of tokens, `torch_graphs`): a served round of a few requests is ~2.5 ms of GPU work and its
    # eager launches took 7–20 ms of Python. 0 launches every packed run eagerly.
    packed_graph_max_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.masked_attention not in ("efficient", "auto"):
            raise ValueError(f"masked_attention must be 'efficient' or 'auto'; got {self.masked_attention!r}")
        if self.packed_attention not in ("auto", "cudnn", "flash"):
            raise ValueError(f"packed_attention must be auto, cudnn or flash; got {self.packed_attention!r}")
        if self.copy_threads < 1:
            raise ValueError(f"copy_threads must be at least 1; got {self.copy_threads}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}; got {self.dtype!r}")

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> TorchEngineOptions:
        """Read the options from a config's string parameters; absent keys keep their defaults."""
        values: dict[str, object] = {}
        for field in fields(cls):
            if field.name not in parameters:
                continue
            raw = parameters[field.name]
            if field.type == "bool":
                values[field.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif field.type == "float":
                values[field.name] = float(raw)
            elif field.type == "int":
                values[field.name] = int(raw)
            else:
                values[field.name] = raw
        return cls(**values)  # type: ignore[arg-type]

    def to_parameters(self) -> dict[str, str]:
        """The options as a config's string parameters (what `from_parameters` reads back)."""
        return {
            f.name: str(getattr(self, f.name)).lower() if f.type == "bool" else str(getattr(self, f.name))
            for f in fields(self)
        }
