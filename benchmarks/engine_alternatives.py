"""Earlier choices of the `torch` engine's encoder and input check, timed beside it by the GPU benchmark.

Why they are kept: a change to the engine is kept only when a GPU run times it against what it
replaced (issue 22), and later runs time them again, so the choice stays measured. Each variant
swaps one earlier choice back into an engine for the duration of a `with`, without changing the engine:

* `residual_adds_apart`: the encoder as it was until 2026-12-05: every residual add a pass of its
  own over the activations, each output projection with its bias (48 add kernels in wav2vec2-large).
* `torch_host_check`: the finiteness check of host audio by torch's CPU operations (numpy's now).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

RESIDUAL_VARIANT = "engine, residual adds apart (before)"
HOST_CHECK_VARIANT = "engine, torch host finiteness check (before)"


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
def torch_host_check(engine) -> Iterator[None]:
    """``engine`` checking host audio for NaN and Inf with torch's CPU operations for the duration."""
    engine.all_finite = lambda array: bool(torch.isfinite(array).all())
    try:
        yield
    finally:
        del engine.all_finite


ALTERNATIVES = {RESIDUAL_VARIANT: residual_adds_apart, HOST_CHECK_VARIANT: torch_host_check}
