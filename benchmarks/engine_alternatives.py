"""Earlier choices of the `torch` engine's encoder and input check, timed beside it by the GPU benchmark.

Why they are kept: a change to the engine is kept only when a GPU run times it against what it
replaced (issue 22), and later runs time them again, so the choice stays measured. Each variant
swaps one earlier choice back into an engine for the duration of a `with`, without changing the engine:

* `residual_adds_apart`: the encoder as it was until 2026-12-05: every residual add a pass of its
  own over the activations, each output projection with its bias (48 add kernels in wav2vec2-large).
* `host_check`: the finiteness check of host audio by numpy on the host, request by request, before
  the run (until 2026-12-05; packed runs now check on the device).
* `one_copy_thread`: the host audio copied into the pinned buffer by the calling thread alone.
* `gelu_apart`: the feed-forward's GELU a pass of its own after its first product (no GELU epilogue).
* `cudnn_positional`: a padded run's positional convolution by cuDNN over the batch (the fused kernel
  served packed runs only).
* `packed_eager`: every packed run's transformer launched eagerly (no graphs of it; until 2026-12-05).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from vaani.serving.engines.base import Engine

RESIDUAL_VARIANT = "engine, residual adds apart (before)"
HOST_CHECK_VARIANT = "engine, host finiteness check (before)"
COPY_VARIANT = "engine, audio copied by one thread (before)"
GELU_VARIANT = "engine, GELU apart (before)"
POSITIONAL_VARIANT = "engine, cuDNN positional conv in padded runs (before)"
PACKED_EAGER_VARIANT = "engine, packed transformer launched eagerly (before)"


def _encoder_adds_apart(self, x: torch.Tensor, attend: Callable) -> torch.Tensor:
    """`CtcForward._encoder` before the residual rode in the output projection's matrix product."""
    if not self.stable:
        x = self.norm(self.encoder.layer_norm, x)
    for layer in self.layers:
        if self.stable:
            x = x + layer.out(attend(F.linear(self.norm(layer.norm1, x), layer.qkv_weight, layer.qkv_bias)))
            x = x + layer.ff_out(layer.activation(layer.ff_in(self.norm(layer.norm2, x))))
        else:
            x = self.norm(layer.norm1, x + layer.out(attend(F.linear(x, layer.qkv_weight, layer.qkv_bias))))
            x = self.norm(layer.norm2, x + layer.ff_out(layer.activation(layer.ff_in(x))))
    if self.stable:
        final = self.encoder.layer_norm
        x = x.to(final.weight.dtype)
        x = F.layer_norm(x, final.normalized_shape, final.weight, final.bias, final.eps)
    return self.lm_head(x.float())


@contextlib.contextmanager
def residual_adds_apart(engine) -> Iterator[None]:
    """``engine`` (a `TorchEngine`) with the encoder of separate residual adds for the duration."""
    forward = engine.ctc
    forward._encoder = _encoder_adds_apart.__get__(forward)
    try:
        yield
    finally:
        del forward._encoder


@contextlib.contextmanager
def host_check(engine) -> Iterator[None]:
    """``engine`` checking each request's audio for NaN and Inf on the host before it runs."""
    engine.run_finite = Engine.run_finite.__get__(engine)
    try:
        yield
    finally:
        del engine.run_finite


@contextlib.contextmanager
def one_copy_thread(engine) -> Iterator[None]:
    """``engine`` copying host audio into its pinned buffer with the calling thread alone."""
    options = engine.options
    engine.options = dataclasses.replace(options, copy_threads=1)
    try:
        yield
    finally:
        engine.options = options


@contextlib.contextmanager
def gelu_apart(engine) -> Iterator[None]:
    """``engine`` applying the feed-forward's activation after its first product, as a pass of its own."""
    forward = engine.ctc
    forward.gelu_epilogue, kept = False, forward.gelu_epilogue
    try:
        yield
    finally:
        forward.gelu_epilogue = kept


def _rows_positional_cudnn(self, x: torch.Tensor) -> torch.Tensor:
    """`CtcForward._rows_positional` as it was: cuDNN over the batch, not the packed path's kernel."""
    conv = self.pos_conv.conv
    position = F.conv1d(
        x.transpose(1, 2), self.pos_conv_weight, conv.bias, padding=conv.padding, groups=conv.groups
    )
    return x + self.pos_conv.activation(self.pos_conv.padding(position)).transpose(1, 2)


@contextlib.contextmanager
def cudnn_positional(engine) -> Iterator[None]:
    """``engine`` running a padded batch's positional convolution with cuDNN over the batch."""
    forward = engine.ctc
    forward._rows_positional = _rows_positional_cudnn.__get__(forward)
    try:
        yield
    finally:
        del forward._rows_positional


@contextlib.contextmanager
def packed_eager(engine) -> Iterator[None]:
    """``engine`` launching every packed run's transformer eagerly, as before its graphs."""
    graphs, engine.encoder_graphs = engine.encoder_graphs, None
    try:
        yield
    finally:
        engine.encoder_graphs = graphs


ALTERNATIVES = {
    RESIDUAL_VARIANT: residual_adds_apart,
    HOST_CHECK_VARIANT: host_check,
    COPY_VARIANT: one_copy_thread,
    GELU_VARIANT: gelu_apart,
    POSITIONAL_VARIANT: cudnn_positional,
    PACKED_EAGER_VARIANT: packed_eager,
}
