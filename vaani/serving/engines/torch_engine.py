"""The `torch` engine: wav2vec2 CTC in PyTorch on a CUDA GPU, for machines without TensorRT.

Why it is not `model(input_values, attention_mask)`:

* **Precision.** Matrix work (convolutions, linear layers, attention) runs in BF16 (or FP16);
  every LayerNorm/GroupNorm and the final projection run in FP32 on FP32 parameters, as
  docs/architecture.md asks (large checkpoints overflow FP16 in the norms). On a GPU the norms are one
  fused Triton kernel (`torch_kernels`), so FP32 costs no extra passes over the activations.
  BF16 is the default because its range matches FP32 and it measured fastest; FP16 is 8× closer
  to FP32 on random large-shaped weights (benchmarks/results), for checkpoints known to fit.
* **Packed execution.** Executions too large for a CUDA graph run every utterance in one
  forward without padding (`torch_packing`, `CtcForward.packed`): the transformer sees only
  real frames and attention runs per utterance through a variable-length kernel. The first
  convolution (with its norm and GELU) and the positional convolution (with bias, GELU and the
  residual) are one Triton kernel each; the other convolutions are matrix products on strided
  views of the packed rows.
* **Masks without host syncs.** The model only ever uses how many samples of each row are
  valid (Hugging Face sums the mask). The forward below takes those lengths as a tensor and
  builds the frame mask on the device, so nothing in it waits for the host and a whole
  forward can be captured as a CUDA graph.
* **Fewer launches and copies.** Q, K and V are one matrix product; attention is PyTorch's
  fused SDPA; the convolution feature encoder can run channels-last, so its LayerNorms read
  contiguous rows instead of transposed copies; the positional convolution's weight norm is
  folded into the weight once instead of being recomputed every call.
* **CUDA graphs per bucket** (`torch_graphs`). Small runs are launch-bound (a 5 s clip is ~0.2 ms
  of arithmetic and ~700 kernel launches): small batches replay a graph of the whole forward for
  their padded (batch, length) bucket; packed runs up to ``packed_graph_max_seconds`` replay one of
  the transformer for their bucket of tokens; larger ones launch eagerly, hidden behind the GPU work.

The same code runs on CPU tensors (``device="cpu"``, FP32): that is how CI checks it against
the Hugging Face reference without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vaani.serving.acoustic import conv_frames, conv_receptive_field
from vaani.serving.contract import SAMPLING_RATE
from vaani.serving.engines.base import Engine, InvalidRequest
from vaani.serving.engines.torch_fp8 import Fp8Linear, fp8_available, norm_quant, quantize
from vaani.serving.engines.torch_graphs import EncoderGraphs, GraphCache
from vaani.serving.engines.torch_kernels import (
    first_conv_available,
    first_conv_taps,
    fused_available,
    fused_first_conv,
    fused_layer_norm,
    fused_positional,
    positional_available,
    positional_taps,
    reference_layer_norm,
)
from vaani.serving.engines.torch_normalization import normalize_packed, normalize_padded
from vaani.serving.engines.torch_options import TorchEngineOptions
from vaani.serving.engines.torch_packing import (
    DevicePacking,
    Packing,
    attention_per_utterance,
    packed_attention,
    ranges,
    segment_channel_norm,
)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Below this many samples the audio is copied by the calling thread: a hand-off costs more than it saves.
COPY_SPLIT_SAMPLES = 1 << 20
# Utterances of a synthetic run (`TorchEngine.warm`) hold at most this many frames (~10 s).
SYNTHETIC_FRAMES = 512
HF_SUBDIR = "hf"  # where `vaani build` puts the model's `save_pretrained` files in the version folder


# The norms take an optional ``shift`` (one value per column, added before the norm): the biases
# the encoder's residual stream leaves out (`CtcForward._encoder`).
def _layer_norm32(norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    return reference_layer_norm(x, norm, shift=shift)


def _layer_norm_native(
    norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor | None = None
) -> torch.Tensor:
    return norm(x if shift is None else x + shift.to(x.dtype))


def _layer_norm_fused(norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    return fused_layer_norm(x.contiguous(), norm, shift=shift)


@dataclass
class _Layer:
    norm1: nn.LayerNorm
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor
    out: nn.Linear
    norm2: nn.LayerNorm
    ff_in: nn.Linear
    ff_out: nn.Linear
    activation: Callable[[torch.Tensor], torch.Tensor]
    # Stable (pre-norm) layers: the sum of the output biases the residual stream leaves out
    # before each of the two norms (see `CtcForward._encoder`); FP32, one value per column.
    shift1: torch.Tensor | None = None
    shift2: torch.Tensor | None = None


@dataclass(frozen=True)
class _Fp8Layer:
    """A stable layer's four matrix products in FP8 (`torch_fp8`); the biases that stay are Q/K/V's and
    feed-forward in's (the others are carried to the next norm, as in BF16)."""

    qkv: Fp8Linear
    out: Fp8Linear
    ff_in: Fp8Linear
    ff_out: Fp8Linear

    @classmethod
    def of(cls, layer: _Layer) -> _Fp8Layer:
        return cls(
            qkv=Fp8Linear.of(layer.qkv_weight, layer.qkv_bias),
            out=Fp8Linear.of(layer.out),
            ff_in=Fp8Linear.of(layer.ff_in, layer.ff_in.bias),
            ff_out=Fp8Linear.of(layer.ff_out),
        )


def _conv_matrices(
    weight: torch.Tensor, kernel: int, stride: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A convolution's taps as matrices ``[C_out, taps × C_in]`` (first ``stride`` taps, the rest).

    (None, None) where `CtcForward._conv_rows` keeps cuDNN: one input channel, or a kernel
    outside [stride, 2 × stride].
    """
    if weight.shape[1] == 1 or not stride <= kernel <= 2 * stride:
        return None, None
    taps = weight.permute(0, 2, 1)  # [C_out, kernel, C_in]: tap-major, as the rows lie in memory
    head = taps[:, :stride].reshape(weight.shape[0], -1).contiguous()
    tail = taps[:, stride:].reshape(weight.shape[0], -1).contiguous() if kernel > stride else None
    return head, tail


class CtcForward:
    """Logits of a `Wav2Vec2ForCTC` from audio and per-row valid lengths, in mixed precision.

    Reuses the Hugging Face modules' weights (cast in place) and follows their forward
    exactly in FP32; see the module docstring for what differs in how it gets there.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        fp32_norms: bool = True,
        masked_attention: str = "auto",
        packed_kernel: str = "auto",
        fp8: bool = False,
        gelu_epilogue: bool = False,
    ):
        config = model.config
        if getattr(config, "adapter_attn_dim", None) is not None or getattr(config, "add_adapter", False):
            raise ValueError("the torch engine does not support wav2vec2 adapter layers")
        model = model.eval().to(device)
        pos_conv = model.wav2vec2.encoder.pos_conv_embed.conv
        with torch.no_grad():  # the weight norm, evaluated once instead of on every call
            self.pos_conv_weight = pos_conv.weight.detach().to(dtype).contiguous()
        model.to(dtype)
        # The positional conv of packed tokens: one Triton kernel (conv, bias, GELU, residual) where it runs.
        self.fused_position = config.feat_extract_activation == "gelu" and positional_available(
            device, dtype, self.pos_conv_weight, pos_conv.bias
        )
        self.pos_conv_taps = (
            positional_taps(self.pos_conv_weight, pos_conv.groups) if self.fused_position else None
        )
        for module in model.modules():  # normalization and the final projection stay FP32
            if fp32_norms and isinstance(module, nn.LayerNorm | nn.GroupNorm):
                module.float()
        # One Triton kernel per norm where it runs (half in/out, FP32 inside); else cast, norm, cast.
        self.fused_norms = fp32_norms and fused_available(device, dtype)
        self.norm = (
            _layer_norm_fused if self.fused_norms else _layer_norm32 if fp32_norms else _layer_norm_native
        )
        self.feature_gelu = config.feat_extract_activation == "gelu"
        self.masked_backends = (
            [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH] if masked_attention == "efficient" else None
        )
        heads = config.num_attention_heads
        self.attend_packed = packed_attention(
            device, dtype, heads, config.hidden_size // heads, packed_kernel
        )
        model.lm_head.float()
        self.model = model
        self.device = device
        self.dtype = dtype
        self.stable = bool(config.do_stable_layer_norm)
        self.group_norm = config.feat_extract_norm == "group"
        self.channels_last = channels_last and not self.group_norm
        self.heads = config.num_attention_heads
        self.kernels = tuple(config.conv_kernel)
        self.strides = tuple(config.conv_stride)
        self.stride = math.prod(self.strides)  # samples per frame
        self.receptive_field = conv_receptive_field(self.kernels, self.strides)
        base = model.wav2vec2
        self.conv_layers = list(base.feature_extractor.conv_layers)
        self.conv_weights = [
            layer.conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            for layer in self.conv_layers
        ]
        first = self.conv_layers[0]
        self.fused_first = (
            self.fused_norms
            and self.feature_gelu
            and not self.group_norm
            and first_conv_available(device, dtype, first.conv, first.layer_norm)
        )
        self.first_taps = first_conv_taps(first.conv.weight) if self.fused_first else None
        self.conv_matrices = [
            _conv_matrices(layer.conv.weight, kernel, stride)
            for layer, kernel, stride in zip(self.conv_layers, self.kernels, self.strides)
        ]
        self.projection = base.feature_projection
        self.encoder = base.encoder
        self.pos_conv = base.encoder.pos_conv_embed
        self.layers = [self._layer(layer) for layer in base.encoder.layers]
        self.final_shift = self._carry_biases() if self.stable else None
        self.lm_head = model.lm_head
        self.gelu_epilogue = gelu_epilogue and config.hidden_act == "gelu" and dtype != torch.float32
        self.fp8: list[_Fp8Layer] | None = None
        self.fp8_unavailable = self._fp8_unavailable(config, device, dtype) if fp8 else None
        if fp8 and self.fp8_unavailable is None:
            self.fp8 = [_Fp8Layer.of(layer) for layer in self.layers]
        elif fp8:
            print(f"torch engine: FP8 matrix products unavailable ({self.fp8_unavailable}); {dtype} ones")

    def _fp8_unavailable(self, config: Any, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why this model cannot run its matrix products in FP8 here (None: it can)."""
        if not self.stable:
            return "FP8 is built for stable (pre-norm) layers, as wav2vec2-large has"
        if config.hidden_act != "gelu":
            return f"the feed-forward activation is {config.hidden_act!r}; FP8 fuses exact GELU"
        return fp8_available(device, dtype)

    @staticmethod
    def _layer(layer: nn.Module) -> _Layer:
        attention = layer.attention
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        return _Layer(
            norm1=layer.layer_norm,
            qkv_weight=torch.cat([p.weight for p in projections]).contiguous(),
            qkv_bias=torch.cat([p.bias for p in projections]).contiguous(),
            out=attention.out_proj,
            norm2=layer.final_layer_norm,
            ff_in=layer.feed_forward.intermediate_dense,
            ff_out=layer.feed_forward.output_dense,
            activation=layer.feed_forward.intermediate_act_fn,
        )

    def _carry_biases(self) -> torch.Tensor:
        """Set each stable layer's ``shift1``, ``shift2``; return all output biases summed (final shift)."""
        carried = torch.zeros_like(self.layers[0].out.bias, dtype=torch.float32) if self.layers else None
        for layer in self.layers:
            layer.shift1 = carried
            carried = carried + layer.out.bias.float()
            layer.shift2 = carried
            carried = carried + layer.ff_out.bias.float()
        return carried

    def frames(self, samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames for ``samples`` valid samples: per row on the device for a tensor (no host sync)."""
        return conv_frames(samples, self.kernels, self.strides)

    def _features(self, values: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """The convolution feature encoder: ``[B, samples]`` → ``[B, frames, channels]``.

        With ``packing`` (``B`` = 1, the packed audio), a GroupNorm normalizes each utterance
        over its own frames.
        """
        if not self.channels_last:
            x = values[:, None]
            for index, layer in enumerate(self.conv_layers):
                x = layer.conv(x)
                if self.group_norm and index == 0:
                    x = self._group_norm(layer.layer_norm, x, packing)
                elif not self.group_norm:
                    x = self.norm(layer.layer_norm, x.transpose(1, 2)).transpose(1, 2)
                x = layer.activation(x)
            return x.transpose(1, 2)
        # [B, T, C] rows are a channels-last [B, C, 1, T] image: the convolution reads and writes
        # that layout and the LayerNorm over C works on contiguous rows, with no transposed copies.
        x, first = values[:, :, None], 0
        if self.fused_first and values.shape[0] == 1:  # one row (packed audio): conv, norm, GELU in one pass
            layer = self.conv_layers[0]
            x = fused_first_conv(
                values[0],
                self.first_taps,
                self.kernels[0],
                self.strides[0],
                layer.conv.bias,
                layer.layer_norm,
            )[None]
            first = 1
        for index, layer in enumerate(self.conv_layers[first:], start=first):
            y = self._conv_rows(x, index)
            if self.fused_norms and self.feature_gelu:  # the bias rides in the norm's one pass
                x = fused_layer_norm(y, layer.layer_norm, gelu=True, shift=layer.conv.bias)
            else:
                y = y if layer.conv.bias is None else y + layer.conv.bias
                x = layer.activation(self.norm(layer.layer_norm, y))
        return x

    def _conv_rows(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Convolution ``index`` (without its bias) over rows ``[B, T, C_in]`` → ``[B, T_out, C_out]``.

        One row of packed audio with channels (every layer after the first): matrix products on
        strided views of the rows, no copy. With stride ≤ kernel ≤ 2 × stride (3/2 and 2/2 in
        wav2vec2), output frame t is rows [s·t, s·t + s) times the first s taps, plus rows
        [s·t + s, s·t + k) times the rest; both are views with a leading dimension of s·C.
        cuDNN ran these layers with a generic kernel at half the matrix rate.
        """
        kernel, stride = self.kernels[index], self.strides[index]
        head, tail = self.conv_matrices[index]
        if x.shape[0] == 1 and head is not None:
            rows, channels = x.shape[1:]
            frames = (rows - kernel) // stride + 1
            flat = x[0]
            out = F.linear(flat[: frames * stride].view(frames, stride * channels), head)
            if tail is not None:
                rest = flat.as_strided(
                    (frames, (kernel - stride) * channels),
                    (stride * channels, 1),
                    flat.storage_offset() + stride * channels,
                )
                out.addmm_(rest, tail.t())
            return out[None]
        image = x.transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        y = F.conv2d(image, self.conv_weights[index], None, stride=(1, stride))
        return y.contiguous(memory_format=torch.channels_last).squeeze(2).transpose(1, 2)

    def _group_norm(self, norm: nn.GroupNorm, x: torch.Tensor, packing: Packing | None) -> torch.Tensor:
        if packing is None:
            return F.group_norm(
                x.to(norm.weight.dtype), norm.num_groups, norm.weight, norm.bias, norm.eps
            ).to(x.dtype)
        positions, segments = (torch.from_numpy(a).to(x.device) for a in packing.segments_after(1))
        return segment_channel_norm(x, positions, segments, len(packing.samples), norm)

    def _attention(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention of a padded batch from its Q/K/V product ``[B, T, 3 × hidden]``."""
        batch, frames, width = qkv.shape
        q, k, v = qkv.view(batch, frames, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if mask is not None and self.masked_backends is not None:
            with sdpa_kernel(self.masked_backends):
                attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return attended.transpose(1, 2).reshape(batch, frames, width // 3)

    @staticmethod
    def _residual(x: torch.Tensor, h: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        """``x + h @ linear.weight.T`` in one matrix product (the residual rides in as its C), no bias."""
        rows = x.reshape(-1, x.shape[-1])
        return torch.addmm(rows, h.reshape(-1, h.shape[-1]), linear.weight.t()).view(x.shape)

    def _feed_forward_in(self, layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        """The feed-forward's first product and its activation: with ``gelu_epilogue``, one product whose
        epilogue adds the bias and applies GELU (cuBLASLt's tanh form on a GPU), instead of a second
        pass over the widest activations of the layer."""
        if not self.gelu_epilogue:
            return layer.activation(layer.ff_in(h))
        rows = h.reshape(-1, h.shape[-1])
        product = torch._addmm_activation(layer.ff_in.bias, rows, layer.ff_in.weight.t(), use_gelu=True)
        return product.view(*h.shape[:-1], product.shape[-1])

    def __call__(self, values: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Logits ``[B, frames, vocab]`` (FP32) for ``values`` ``[B, samples]``.

        ``lengths`` holds each row's valid samples (None: every row is valid in full). Rows
        beyond their frames get logits too; they are padding and callers drop them.
        """
        x = self._features(values.to(self.dtype))
        x = self.projection.projection(self.norm(self.projection.layer_norm, x))
        mask = None
        if lengths is not None:
            frame_index = torch.arange(x.shape[1], device=x.device)
            valid = frame_index[None, :] < self.frames(lengths)[:, None]
            x = x.masked_fill(~valid[:, :, None], 0.0)
            mask = valid[:, None, None, :]
        return self._encoder(self._rows_positional(x), lambda qkv: self._attention(qkv, mask))

    def _rows_positional(self, x: torch.Tensor) -> torch.Tensor:
        """``x + positional(x)`` of a padded batch ``[B, T, C]`` (padding frames already zero), through
        the packed path's layout: the rows end to end with ``pad`` zero frames around each, which is
        what the convolution's own padding gives each row, so the one fused kernel serves both paths
        (cuDNN ran this grouped convolution as 16 generic kernels, most of a 1 × 5 s call's GPU time)."""
        batch, frames, channels = x.shape
        pad = self.pos_conv.conv.padding[0]
        gapped = x.new_zeros(batch * (frames + pad) + pad, channels)
        gapped[: batch * (frames + pad)].view(batch, frames + pad, channels)[:, pad:] = x
        starts = torch.arange(batch, device=x.device) * (frames + pad) + pad
        rows = (starts[:, None] + torch.arange(frames, device=x.device)).view(-1)
        return self._positional(x.reshape(-1, channels), gapped, rows, pad).view(batch, frames, channels)

    def _positional(
        self, x: torch.Tensor, gapped: torch.Tensor, rows: torch.Tensor, pad: int
    ) -> torch.Tensor:
        """``x + activation(positional conv)`` of tokens ``x`` ``[N, C]``; ``gapped`` holds them with
        ``pad`` zero rows around every utterance, token *i* at row ``rows[i]``."""
        conv = self.pos_conv.conv
        if self.fused_position:
            return fused_positional(x, gapped, rows, self.pos_conv_taps, conv.bias, pad)
        position = F.conv1d(
            gapped.t()[None], self.pos_conv_weight, conv.bias, padding=conv.padding, groups=conv.groups
        )
        return x + self.pos_conv.activation(position[0].t().index_select(0, rows))

    def packed(
        self,
        audio: torch.Tensor,
        packing: Packing,
        index: DevicePacking | None = None,
        encode: Callable[[torch.Tensor, DevicePacking], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits ``[tokens, vocab]`` (FP32) of every utterance in ``audio``, laid out by ``packing``.

        Equal to running each utterance alone; no frame of padding is computed past the
        feature encoder (see `torch_packing`). ``encode`` runs the transformer and head in place
        of `packed_encoder` (the engine replays graphs of it).
        """
        conv = self.pos_conv.conv
        index = index or DevicePacking.of(packing, audio.device, gap=conv.padding[0])
        x = self._features(audio[None].to(self.dtype), packing)[0].index_select(0, index.tokens)
        x = self.projection.projection(self.norm(self.projection.layer_norm, x))
        gapped = x.new_zeros(index.gapped_rows, x.shape[1]).index_copy_(0, index.gapped, x)
        x = self._positional(x, gapped, index.gapped, index.gap)
        return (encode or self.packed_encoder)(x, index)

    def packed_encoder(self, x: torch.Tensor, index: DevicePacking) -> torch.Tensor:
        """The transformer and CTC head of packed hidden states ``[tokens, hidden]``."""
        return self._encoder(x, lambda qkv: self._packed_attention(qkv, index))

    def _packed_attention(self, qkv: torch.Tensor, index: DevicePacking) -> torch.Tensor:
        """Attention within each packed utterance from the Q/K/V product ``[tokens, 3 × hidden]``."""
        tokens, width = qkv.shape
        q, k, v = qkv.view(tokens, 3, self.heads, -1).unbind(1)
        return self.attend_packed(q, k, v, index).reshape(tokens, width // 3)

    def _encoder(self, x: torch.Tensor, attend: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The transformer and the CTC head on hidden states ``[..., hidden]`` after the positional conv.

        Each residual add is the C operand of the output projection's matrix product (`_residual`)
        instead of a pass of its own over the activations, and the projection's bias is added by the
        next norm (its ``shift``, in FP32) instead: a post-norm layer's norm follows at once; a
        stable layer's stream leaves every bias out, and each norm adds the biases summed so far.
        """
        if self.fp8 is not None:
            return self._encoder_fp8(x, attend)
        if not self.stable:
            x = self.norm(self.encoder.layer_norm, x)
        for layer in self.layers:
            if self.stable:
                h = self.norm(layer.norm1, x, layer.shift1)
                x = self._residual(x, attend(F.linear(h, layer.qkv_weight, layer.qkv_bias)), layer.out)
                hidden = self._feed_forward_in(layer, self.norm(layer.norm2, x, layer.shift2))
                x = self._residual(x, hidden, layer.ff_out)
            else:
                attended = attend(F.linear(x, layer.qkv_weight, layer.qkv_bias))
                x = self.norm(layer.norm1, self._residual(x, attended, layer.out), layer.out.bias)
                hidden = self._feed_forward_in(layer, x)
                x = self.norm(layer.norm2, self._residual(x, hidden, layer.ff_out), layer.ff_out.bias)
        return self._stable_head(x.float()) if self.stable else self.lm_head(x.float())

    def _encoder_fp8(self, x: torch.Tensor, attend: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`_encoder` of stable layers with FP8 matrix products: each input is quantized by the kernel
        that makes it (`norm_quant` adds the residual too), each product writes the engine's dtype."""
        lead, hidden = x.shape[:-1], x.shape[-1]
        x, y = x.reshape(-1, hidden), None
        for layer, fp8 in zip(self.layers, self.fp8 or []):
            x, quantized, scale = norm_quant(x, y, layer.norm1, layer.shift1)
            attended = attend(fp8.qkv(quantized, scale, self.dtype).view(*lead, -1)).reshape(x.shape)
            y = fp8.out(*quantize(attended), self.dtype)
            x, quantized, scale = norm_quant(x, y, layer.norm2, layer.shift2)
            y = fp8.ff_out(*quantize(fp8.ff_in(quantized, scale, self.dtype), gelu=True), self.dtype)
        stream = x.float() if y is None else x.float() + y.float()
        return self._stable_head(stream).view(*lead, -1)

    def _stable_head(self, stream: torch.Tensor) -> torch.Tensor:
        """A stable encoder's last norm (the carried biases added first) and the CTC head, on the FP32
        residual ``stream``: the norm's output feeds the FP32 projection directly."""
        final = self.encoder.layer_norm
        x = F.layer_norm(
            (stream + self.final_shift).to(final.weight.dtype),
            final.normalized_shape,
            final.weight,
            final.bias,
            final.eps,
        )
        return self.lm_head(x.float())


def copy_parts(pieces: list[tuple[int, np.ndarray]], count: int) -> list[list[tuple[int, np.ndarray]]]:
    """``pieces`` (where each goes, what) cut into at most ``count`` parts of about equal samples, a
    long piece split between parts, so that threads copying one part each finish together."""
    total = sum(len(piece) for _, piece in pieces)
    share = max(-(-total // max(count, 1)), 1)
    parts: list[list[tuple[int, np.ndarray]]] = [[]]
    room = share
    for start, piece in pieces:
        offset = 0
        while offset < len(piece):
            n = min(len(piece) - offset, room)
            parts[-1].append((start + offset, piece[offset : offset + n]))
            offset, room = offset + n, room - n
            if room == 0:
                parts.append([])
                room = share
    return [part for part in parts if part] or [[]]


class TorchEngine(Engine):
    """The `wav2vec2` step's engine on PyTorch: Triton's tensors come in through DLPack (no host
    copy), the audio is normalized and packed (or padded) on the device from one length per
    row, and the logits go back as pinned host tensors that Triton wraps through DLPack again.
    """

    def __init__(
        self, model: nn.Module, device: str | torch.device = "cuda", options: TorchEngineOptions | None = None
    ) -> None:
        """Take over ``model`` (a `Wav2Vec2ForCTC`; its weights are cast in place)."""
        self.options = options or TorchEngineOptions()
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.ctc = CtcForward(
            model,
            self.device,
            DTYPES[self.options.dtype],
            self.options.channels_last,
            self.options.fp32_norms,
            self.options.masked_attention,
            self.options.packed_attention,
            self.options.fp8,
            self.options.gelu_epilogue,
        )
        self.pinned: torch.Tensor | None = None
        self._copier: ThreadPoolExecutor | None = None
        self.graphs: GraphCache | None = None
        self.encoder_graphs: EncoderGraphs | None = None
        if self.options.cuda_graphs and self.device.type == "cuda":
            pool = torch.cuda.graph_pool_handle()
            self.graphs = GraphCache(
                self.ctc,
                self.device,
                self.ctc.frames,
                max_samples=round(self.options.graph_max_seconds * SAMPLING_RATE),
                bucket_samples=round(self.options.graph_bucket_seconds * SAMPLING_RATE),
                pool=pool,
            )
            # Per-utterance attention loops over host bounds, which a graph would fix at capture.
            packed_samples = round(self.options.packed_graph_max_seconds * SAMPLING_RATE)
            max_tokens = int(self.ctc.frames(packed_samples))
            if self.ctc.attend_packed is not attention_per_utterance and max_tokens > 0:
                self.encoder_graphs = EncoderGraphs(self.ctc.packed_encoder, self.device, max_tokens, pool)

    @classmethod
    def load(
        cls, model_dir: Path, device: str | torch.device = "cuda", options: TorchEngineOptions | None = None
    ) -> TorchEngine:
        """The engine for a model in `save_pretrained` layout (what `vaani build` installs)."""
        from transformers import Wav2Vec2ForCTC

        model = Wav2Vec2ForCTC.from_pretrained(
            str(model_dir), attn_implementation="sdpa", dtype=torch.float32
        )
        return cls(model, device, options)

    @torch.inference_mode()
    def logits(self, values: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Logits on the engine's device for a padded batch already there."""
        if self.graphs is not None and self.graphs.fits(*values.shape):
            if lengths is None:
                lengths = torch.full(
                    (values.shape[0],), values.shape[1], dtype=torch.long, device=self.device
                )
            return self.graphs(values, lengths)
        return self.ctc(values, lengths)

    def to_host(self, logits: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return logits
        host = torch.empty(logits.shape, dtype=logits.dtype, pin_memory=True)
        host.copy_(logits, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host

    @staticmethod
    def _shared(tensor: object) -> torch.Tensor:
        """A torch view of a Triton tensor or an array, where it already is (no copy)."""
        if isinstance(tensor, torch.Tensor):
            return tensor
        if isinstance(tensor, np.ndarray):
            return torch.from_numpy(tensor)
        return torch.from_dlpack(tensor.to_dlpack())  # a Triton tensor, CPU or GPU

    def take(self, tensor: object) -> torch.Tensor:
        return self._shared(tensor).to(self.device)

    def zeros(self, rows: int, samples: int) -> torch.Tensor:
        return torch.zeros(rows, samples, device=self.device)

    def packs(self, rows: int, samples: int) -> bool:
        """Whether a run of ``rows`` × ``samples`` goes packed; else padded (a CUDA graph, or masked)."""
        return self.options.packed and (self.graphs is None or not self.graphs.fits(rows, samples))

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        rows, samples = batch.shape
        if self.packs(rows, samples):
            frames = int(self.ctc.frames(torch.tensor(samples)))
            return self._packed([batch], [lengths], [(rows, frames)]).view(rows, frames, -1)
        valid = torch.tensor(lengths, device=self.device)
        if self.options.normalize:
            batch = normalize_padded(batch, valid)
        full = all(n == samples for n in lengths)
        return self.logits(batch, None if full else valid)

    def view(self, tensor: object) -> torch.Tensor:
        return self._shared(tensor)

    def run_groups(
        self,
        arrays: list[torch.Tensor],
        row_lengths: list[list[int]],
        frames: Callable[[int], int],
        max_padding: float = 1.0,
    ) -> list[torch.Tensor]:
        """As `Engine.run_groups`; a run too large for a CUDA graph goes packed, ungrouped.

        Inputs are read where Triton put them: host audio crosses in one pinned copy of just
        its valid samples. Requests are packed in runs of at most ``limits.max_batch_samples``
        valid samples.
        """
        if not self._goes_packed(arrays):
            return super().run_groups(arrays, row_lengths, frames, max_padding)
        return self._packed_runs(arrays, row_lengths, frames)

    def run_finite(
        self,
        arrays: list[torch.Tensor],
        row_lengths: list[list[int]],
        frames: Callable[[int], int],
        max_padding: float,
    ) -> list[torch.Tensor | InvalidRequest]:
        """As `Engine.run_finite`; packed runs are checked where they run.

        Each packed run reduces its audio to one finite-or-not flag that crosses back with its
        logits, so the host reads no sample twice (numpy's check took 2.6 ms of a 32 × 10 s run on
        the H200's host). A run that held a NaN or Inf, which only a broken or hostile client sends,
        is run again the host's way, without the requests that hold one.
        """
        if not self._goes_packed(arrays):
            return super().run_finite(arrays, row_lengths, frames, max_padding)
        flags: list[torch.Tensor] = []
        results = self._packed_runs(arrays, row_lengths, frames, flags)
        if all(bool(flag) for flag in flags):
            return list(results)
        return super().run_finite(arrays, row_lengths, frames, max_padding)

    def _goes_packed(self, arrays: list[torch.Tensor]) -> bool:
        return bool(arrays) and self.packs(sum(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays))

    def _packed_runs(
        self,
        arrays: list[torch.Tensor],
        row_lengths: list[list[int]],
        frames: Callable[[int], int],
        flags: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Each request's logits (or best tokens) from packed runs; each run's finiteness flag
        appended to ``flags`` where given (read once the run's results are on the host)."""
        results: list[torch.Tensor] = []
        for run in self._runs(row_lengths):
            shapes = [(arrays[i].shape[0], frames(arrays[i].shape[1])) for i in run]
            logits = self._packed([arrays[i] for i in run], [row_lengths[i] for i in run], shapes, flags)
            host = self.to_host(self.reduced(logits))
            start = 0
            for rows, count in shapes:
                results.append(host[start : start + rows * count].view(rows, count, *host.shape[1:]))
                start += rows * count
        return results

    def _runs(self, row_lengths: list[list[int]]) -> list[list[int]]:
        """Requests in order, cut into runs of at most ``limits.max_batch_samples`` valid samples."""
        runs: list[list[int]] = [[]]
        total = 0
        for index, lengths in enumerate(row_lengths):
            if runs[-1] and total + sum(lengths) > self.limits.max_batch_samples:
                runs.append([])
                total = 0
            runs[-1].append(index)
            total += sum(lengths)
        return runs

    @torch.inference_mode()
    def _packed(
        self,
        arrays: list[torch.Tensor],
        row_lengths: list[list[int]],
        shapes: list[tuple[int, int]],
        flags: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One packed forward over every row's valid samples; logits laid out request after request.

        Request *i* gets a ``[rows_i × frames_i, vocab]`` block of one flat tensor (``shapes[i]``
        = (rows_i, frames_i)), each row's frames first and zeros after (padding the caller drops),
        so the whole result crosses to the host in one copy. The indices go to the device before
        the audio, so that no host-to-device copy waits behind the forward.
        """
        lengths = [n for request in row_lengths for n in request]
        packing = Packing(tuple(lengths), self.ctc.kernels, self.ctc.strides)
        blocks = np.array([count for rows, count in shapes for _ in range(rows)], dtype=np.int64)
        destination = torch.from_numpy(ranges(np.cumsum(blocks) - blocks, packing.frames)).to(self.device)
        index = DevicePacking.of(packing, self.device, gap=self.ctc.pos_conv.conv.padding[0])
        audio = self._packed_audio(arrays, row_lengths, packing)
        if flags is not None:
            flags.append(self._finite_flag(audio))
        if self.options.normalize:
            audio = normalize_packed(audio, packing)
        logits = self.ctc.packed(audio, packing, index, self._encode)
        out = logits.new_zeros(int(blocks.sum()), logits.shape[1])
        return out.index_copy_(0, destination, logits)

    def _encode(self, x: torch.Tensor, index: DevicePacking) -> torch.Tensor:
        """The packed transformer and head: a graph's replay where its bucket allows, else eagerly."""
        if self.encoder_graphs is not None and self.encoder_graphs.fits(index):
            return self.encoder_graphs(x, index, self._longest_frames())
        return self.ctc.packed_encoder(x, index)

    def _longest_frames(self) -> int:
        """The most frames one row can have (``limits.max_samples``)."""
        return int(self.ctc.frames(self.limits.max_samples))

    @torch.inference_mode()
    def warm(self) -> None:
        """Capture the packed transformer's graph of every bucket, each checked against the same run
        eagerly on random hidden states: a request then never waits for a capture, and a kernel that
        cannot replay shows before the model is ready."""
        graphs = self.encoder_graphs
        if graphs is None:
            return
        longest = self._longest_frames()
        generator = torch.Generator(device=self.device).manual_seed(0)
        hidden = self.ctc.model.config.hidden_size
        for tokens in graphs.buckets():
            index = self._synthetic_index(tokens, min(longest, SYNTHETIC_FRAMES))
            x = torch.randn(tokens, hidden, generator=generator, device=self.device, dtype=self.ctc.dtype)
            graphs(x, index, longest)
            if graphs.unavailable is not None:
                return
        print(f"torch engine: {len(graphs.graphs)} packed-transformer graphs captured")

    def _synthetic_index(self, tokens: int, longest: int) -> DevicePacking:
        """A packing of utterances of at most ``longest`` frames, ``tokens`` frames in all."""
        count = -(-tokens // longest)
        frames = [tokens // count + (i < tokens % count) for i in range(count)]
        samples = tuple(self.ctc.receptive_field + (f - 1) * self.ctc.stride for f in frames)
        packing = Packing(samples, self.ctc.kernels, self.ctc.strides)
        return DevicePacking.of(packing, self.device, gap=self.ctc.pos_conv.conv.padding[0])

    def _finite_flag(self, audio: torch.Tensor) -> torch.Tensor:
        """Whether every sample of ``audio`` is finite, as a host tensor that is valid once the
        stream has reached this point (`to_host` waits for it); one reduction on a GPU."""
        if self.device.type == "cpu":
            return torch.tensor(self.all_finite(audio))
        flag = torch.empty((), dtype=torch.bool, pin_memory=True)
        return flag.copy_(torch.isfinite(audio).all(), non_blocking=True)

    def _packed_audio(
        self, arrays: list[torch.Tensor], row_lengths: list[list[int]], packing: Packing
    ) -> torch.Tensor:
        """The packed audio on the device: each row's valid samples at its start, zeros between."""
        on_host = self.device.type == "cuda" and all(a.device.type == "cpu" for a in arrays)
        audio = (
            self._staging(packing.total_samples)
            if on_host
            else torch.empty(packing.total_samples, device=self.device)
        )
        starts = packing.sample_starts.tolist()
        ends = [*starts[1:], packing.total_samples]
        rows = (row for array in arrays for row in array)
        counts = (n for request in row_lengths for n in request)
        if on_host:
            # Host rows are copied by numpy (in threads: it releases the GIL while it copies): torch's
            # CPU copies start its OpenMP pool, whose threads then spin against every other process of
            # the server on the same cores.
            target = audio.numpy()
            pieces = []
            for row, count, start, end in zip(rows, counts, starts, ends):
                target[start + count : end] = 0.0
                pieces.append((start, row.numpy()[:count]))
            self._copy(target, pieces)
            return audio.to(self.device, non_blocking=True)
        for row, count, start, end in zip(rows, counts, starts, ends):
            audio[start : start + count] = row[:count]
            audio[start + count : end] = 0.0
        return audio

    def _copy(self, target: np.ndarray, pieces: list[tuple[int, np.ndarray]]) -> None:
        """``target[start : start + len(piece)] = piece`` for every piece, by ``copy_threads`` threads
        at once once the audio is large enough to pay for the hand-off."""
        total = sum(len(piece) for _, piece in pieces)
        parts = copy_parts(pieces, self.options.copy_threads if total >= COPY_SPLIT_SAMPLES else 1)

        def fill(part: list[tuple[int, np.ndarray]]) -> None:
            for start, piece in part:
                target[start : start + len(piece)] = piece

        if len(parts) == 1:
            fill(parts[0])
            return
        if self._copier is None:
            self._copier = ThreadPoolExecutor(self.options.copy_threads, thread_name_prefix="audio copy")
        list(self._copier.map(fill, parts))

    def _staging(self, samples: int) -> torch.Tensor:
        """A pinned host buffer of at least ``samples``, kept between runs (pinning costs milliseconds).

        Reusing it is safe: every run ends with `to_host`, which waits for the stream, so the
        previous run's copy out of it has finished.
        """
        if self.pinned is None or self.pinned.numel() < samples:
            self.pinned = torch.empty(max(samples, 2 * SAMPLING_RATE * 64), pin_memory=True)
        return self.pinned[:samples]

    def contiguous(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.contiguous()

    def reduced(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1).to(torch.int32) if self.best_tokens else logits

    def all_finite(self, array: torch.Tensor) -> bool:
        # Host arrays (what Triton hands the step) through numpy: torch's CPU `isfinite` wakes its
        # OpenMP pool and took ~7 ms of a 32 × 10 s execution on 2 cores, numpy's under 1 ms.
        if array.device.type == "cpu":
            return super().all_finite(array.numpy())
        return bool(torch.isfinite(array).all())

    def concat(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(blocks)

    def to_triton(self, tensor_type: Any, name: str, array: np.ndarray) -> Any:
        # Through a torch view (DLPack): this stub's numpy is 2.x, which `pb_utils.Tensor` misreads.
        return tensor_type.from_dlpack(name, torch.from_numpy(np.ascontiguousarray(array)))


def save_model(model: nn.Module, version_dir: Path) -> Path:
    """Write what the engine loads (`save_pretrained` layout) into the step's version folder."""
    target = version_dir / HF_SUBDIR
    model.save_pretrained(str(target), safe_serialization=True)
    return target
