"""CUDA graphs of the `torch` engine's forward: padded batches by bucket, and the packed transformer.

Why: a forward of wav2vec2-large launches ~700 kernels, and PyTorch's Python takes 7–20 ms to
launch them, depending on the host (`benchmarks/engine_phases.py`). A served round of two or three
requests is about 2.5 ms of GPU work, so eager runs wait on the launches. A graph replays every
launch in one call.

* **Padded batches** (`GraphCache`): small batches, padded to a (rows, length) bucket, whole forward.
* **The packed transformer** (`EncoderGraphs`): packed runs up to ``max_tokens``. The transformer
  and the CTC head (~90 % of the launches) replay a graph captured for their bucket of tokens,
  which holds up to `UTTERANCES`; the feature encoder and the positional convolution before them
  run eagerly (their shapes follow the audio). Tokens past a run's own sit in no utterance (the
  extra utterances have no frames), so attention never reads them, and every other operation works
  row by row: the real rows come out as they would eagerly, whatever the padding rows hold.

The `wav2vec2` step captures every bucket of the packed transformer before Triton calls it ready
(`TorchEngine.warm`): a capture costs several forwards' worth of launches, which a request arriving
at a new bucket would otherwise wait for. Elsewhere (the benchmarks) a bucket is captured on first
use. Each capture is checked against the same run eagerly: a kernel that cannot be captured, or
gives other numbers in a graph, turns graphs off for packed runs with a message, and the run is
answered eagerly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaani.serving.engines.torch_packing import DevicePacking

# The smallest step between token buckets; above 8 steps, buckets have three significant bits, so
# padding stays under 1/8 of a run's tokens.
TOKEN_STEP = 64
# The utterances every graph holds: runs of up to this many rows share one graph per bucket of
# tokens (more run eagerly). An empty utterance costs its attention blocks a check and a return.
UTTERANCES = 32
# How far a graph's logits may lie from the eager run's, relative to the largest logit: the same
# kernels on other shapes may tile their sums differently; a wrong graph is off by its whole scale.
AGREEMENT = 1e-2


def next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def token_bucket(tokens: int) -> int:
    """``tokens`` rounded up to a multiple of `TOKEN_STEP`; above eight steps, to three significant bits."""
    if tokens <= 8 * TOKEN_STEP:
        return max(-(-tokens // TOKEN_STEP), 1) * TOKEN_STEP
    unit = 1 << (tokens.bit_length() - 4)
    return -(-tokens // unit) * unit


def capture(
    run: Callable[[], torch.Tensor], device: torch.device, pool: object
) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """``run`` as a CUDA graph in ``pool``, and the tensor its replays write.

    Two runs on a side stream first select the kernels and allocate their workspaces outside the
    graph. Thread-local capture: the step's other threads may use CUDA meanwhile.
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        output = run()
    return graph, output


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    values: torch.Tensor
    lengths: torch.Tensor
    logits: torch.Tensor


class GraphCache:
    """One CUDA graph of the padded forward per (batch, length) bucket, captured on first use.

    All graphs share one memory pool: they are replayed one at a time on one stream and
    each replay's logits are copied out before the next, so reusing each other's
    intermediate memory is safe.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
        frames: Callable[[int], int],
        max_samples: int,
        bucket_samples: int,
        pool: object,
    ) -> None:
        """``forward(values, lengths)`` gives logits; ``frames(samples)``: how many are a row's."""
        self.forward = forward
        self.device = device
        self.frames = frames
        self.max_samples = max_samples
        self.bucket = max(bucket_samples, 1)
        self.pool = pool
        self.graphs: dict[tuple[int, int], _Graph] = {}

    def key(self, batch: int, samples: int) -> tuple[int, int]:
        return next_power_of_two(batch), -(-samples // self.bucket) * self.bucket

    def fits(self, batch: int, samples: int) -> bool:
        rows, length = self.key(batch, samples)
        return rows * length <= self.max_samples

    def _capture(self, key: tuple[int, int]) -> _Graph:
        rows, length = key
        values = torch.zeros(rows, length, device=self.device)
        lengths = torch.full((rows,), length, dtype=torch.long, device=self.device)
        graph, logits = capture(lambda: self.forward(values, lengths), self.device, self.pool)
        return _Graph(graph, values, lengths, logits)

    def __call__(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits for ``values`` ``[B, samples]`` with ``lengths``; padded to the bucket inside."""
        batch, samples = values.shape
        key = self.key(batch, samples)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(key)
        entry.values[:batch, :samples].copy_(values)
        entry.values[:batch, samples:].zero_()
        entry.values[batch:].zero_()
        entry.lengths[:batch].copy_(lengths)
        entry.lengths[batch:].fill_(key[1])
        entry.graph.replay()
        return entry.logits[:batch, : self.frames(samples)].clone()


@dataclass
class _EncoderGraph:
    graph: torch.cuda.CUDAGraph
    tokens: torch.Tensor  # [bucket tokens, hidden], the engine's dtype
    cu_seqlens: torch.Tensor  # int32 [bucket utterances + 1]
    logits: torch.Tensor  # [bucket tokens, vocab] FP32


class EncoderGraphs:
    """The packed transformer and CTC head, one CUDA graph per bucket of tokens (`token_bucket`).

    A graph's attention is told that an utterance may be as long as the caller's longest row allows
    (or the bucket's tokens): the kernels size their grid by it, and the blocks past an utterance's
    end return at once.
    """

    def __init__(
        self,
        encode: Callable[[torch.Tensor, DevicePacking], torch.Tensor],
        device: torch.device,
        max_tokens: int,
        pool: object,
    ) -> None:
        """``encode(tokens, index)`` gives the logits of packed hidden states ``[tokens, hidden]``."""
        self.encode = encode
        self.device = device
        self.max_tokens = max_tokens
        self.pool = pool
        self.graphs: dict[int, _EncoderGraph] = {}
        self.unavailable: str | None = None  # why packed runs no longer replay graphs

    def buckets(self) -> list[int]:
        """Every bucket of tokens a graph serves, smallest first."""
        found, tokens = [], 1
        while token_bucket(tokens) <= self.max_tokens:
            found.append(token_bucket(tokens))
            tokens = found[-1] + 1
        return found

    def fits(self, index: DevicePacking) -> bool:
        return (
            self.unavailable is None
            and len(index.packing.samples) <= UTTERANCES
            and token_bucket(index.packing.tokens) <= self.max_tokens
        )

    def __call__(self, x: torch.Tensor, index: DevicePacking, longest: int) -> torch.Tensor:
        """Logits ``[tokens, vocab]`` of ``x`` ``[tokens, hidden]``, no utterance of any run longer than
        ``longest`` frames: a view of the graph's output, valid until the next replay of any graph of
        the pool (the caller copies it out first, on the stream)."""
        key = token_bucket(index.packing.tokens)
        entry = self.graphs.get(key)
        if entry is None:
            return self._first(key, x, index, min(key, longest))
        self._fill(entry, x, index)
        entry.graph.replay()
        return entry.logits[: x.shape[0]]

    @staticmethod
    def _fill(entry: _EncoderGraph, x: torch.Tensor, index: DevicePacking) -> None:
        """The run's tokens and boundaries into the graph's inputs; the extra utterances are empty."""
        tokens = x.shape[0]
        entry.tokens[:tokens].copy_(x)
        entry.cu_seqlens[: index.cu_seqlens.shape[0]].copy_(index.cu_seqlens)
        entry.cu_seqlens[index.cu_seqlens.shape[0] :].fill_(tokens)

    def _first(self, tokens: int, x: torch.Tensor, index: DevicePacking, longest: int) -> torch.Tensor:
        """The run eagerly; then its bucket's graph, captured and checked against it."""
        eager = self.encode(x, index)
        entry = _EncoderGraph(
            graph=torch.cuda.CUDAGraph(),
            tokens=x.new_zeros(tokens, x.shape[1]),
            cu_seqlens=torch.zeros(UTTERANCES + 1, dtype=torch.int32, device=self.device),
            logits=eager,
        )
        self._fill(entry, x, index)
        static = dataclasses.replace(index, cu_seqlens=entry.cu_seqlens, max_frames=longest)
        try:
            entry.graph, entry.logits = capture(
                lambda: self.encode(entry.tokens, static), self.device, self.pool
            )
            entry.graph.replay()
        except Exception as error:  # a kernel that cannot be captured here
            return self._give_up(f"capture failed ({type(error).__name__}: {error})", eager)
        replayed = entry.logits[: x.shape[0]]
        scale = float(eager.abs().max()) if eager.numel() else 0.0
        error = float((replayed - eager).abs().max()) if eager.numel() else 0.0
        if not error <= AGREEMENT * max(scale, 1.0):  # NaN fails too
            reason = f"the graph's logits differ from eager by {error:.3g} (scale {scale:.3g})"
            return self._give_up(reason, eager)
        self.graphs[tokens] = entry
        return eager

    def _give_up(self, reason: str, eager: torch.Tensor) -> torch.Tensor:
        self.unavailable = reason
        self.graphs.clear()
        print(f"torch engine: packed runs go eager: {reason}")
        return eager
