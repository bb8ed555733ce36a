"""A fused LayerNorm (+ exact GELU) for the `torch` engine: half in, FP32 math and parameters, half out.

Why: PyTorch's CUDA LayerNorm wants its parameters in the input's dtype, so keeping the
norms in FP32 (docs/architecture.md, precision) meant a cast to FP32, the norm, and a cast back: three passes
over the activations, a quarter of the engine's GPU time at 32 × 10 s on an H200. This
kernel reads the half-precision row once, computes statistics and the affine map in
FP32 with the FP32 parameters, optionally applies GELU (the feature encoder's LN → GELU),
and writes the half-precision result once.

Without Triton or a GPU, `layer_norm` computes the same thing with PyTorch operations.

The positional convolution of packed tokens (`fused_positional`) is here too, for the same
reason: one pass where PyTorch's operations took several (see its docstring).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path below
    triton = None


if triton is not None:

    @triton.jit
    def _layer_norm_kernel(
        x_ptr,
        shift_ptr,
        w_ptr,
        b_ptr,
        y_ptr,
        columns,
        eps,
        BLOCK: tl.constexpr,
        GELU: tl.constexpr,
        SHIFT: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        offsets = tl.arange(0, BLOCK)
        valid = offsets < columns
        x = tl.load(x_ptr + row * columns + offsets, mask=valid, other=0.0).to(tl.float32)
        if SHIFT:  # a bias added before the norm (a convolution's, folded in here)
            x = tl.where(valid, x + tl.load(shift_ptr + offsets, mask=valid, other=0.0).to(tl.float32), 0.0)
        mean = tl.sum(x, axis=0) / columns
        centred = tl.where(valid, x - mean, 0.0)
        variance = tl.sum(centred * centred, axis=0) / columns
        weight = tl.load(w_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        bias = tl.load(b_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        y = centred * tl.rsqrt(variance + eps) * weight + bias
        if GELU:
            y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
        tl.store(y_ptr + row * columns + offsets, y.to(y_ptr.dtype.element_ty), mask=valid)


def reference_layer_norm(
    x: torch.Tensor, norm: nn.LayerNorm, gelu: bool = False, shift: torch.Tensor | None = None
) -> torch.Tensor:
    """The same function in PyTorch operations: shift and norm in FP32 on FP32 parameters, x's dtype out."""
    y = x.float() if shift is None else x.float() + shift.float()
    y = F.layer_norm(y, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    if gelu:
        y = F.gelu(y)
    return y.to(x.dtype)


def fused_layer_norm(
    x: torch.Tensor, norm: nn.LayerNorm, gelu: bool = False, shift: torch.Tensor | None = None
) -> torch.Tensor:
    """LayerNorm over the last dimension of a contiguous tensor, in one Triton kernel.

    ``shift`` (one value per column) is added first: a convolution's bias, which PyTorch would
    otherwise add in a separate pass over the whole feature map.
    """
    columns = x.shape[-1]
    rows = x.numel() // columns
    y = torch.empty_like(x)
    block = triton.next_power_of_2(columns)
    _layer_norm_kernel[(rows,)](
        x,
        shift if shift is not None else norm.weight,
        norm.weight,
        norm.bias,
        y,
        columns,
        norm.eps,
        BLOCK=block,
        GELU=gelu,
        SHIFT=shift is not None,
        num_warps=4 if block >= 1024 else 2,
    )
    return y


def fused_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the Triton kernel runs here and agrees with `reference_layer_norm` (checked once)."""
    if triton is None or device.type != "cuda" or dtype == torch.float32:
        return False
    try:
        norm = nn.LayerNorm(1024).to(device)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        x = (torch.randn(37, 1024, device=device) * 3 + 1).to(dtype)
        shift = torch.randn(1024, device=device).to(dtype)
        for gelu, bias in ((False, None), (True, None), (True, shift)):
            # Same FP32 math, other summation order: equal up to the last bit of the half result
            # (the reference adds the shift in the half dtype, so allow its rounding).
            torch.testing.assert_close(
                fused_layer_norm(x, norm, gelu, bias),
                reference_layer_norm(x, norm, gelu, bias),
                atol=2e-2,
                rtol=2e-2,
            )
    except Exception as error:  # no compiler, an old Triton, …: the engine still runs, more slowly
        print(f"torch engine: fused LayerNorm unavailable ({type(error).__name__}: {error}); using PyTorch's")
        return False
    return True


if triton is not None:

    @triton.jit
    def _positional_kernel(
        x_ptr,
        gapped_ptr,
        rows_ptr,
        w_ptr,
        b_ptr,
        y_ptr,
        tokens,
        CHANNELS: tl.constexpr,
        GROUP: tl.constexpr,
        TAPS: tl.constexpr,
        PAD: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        block = tl.program_id(0)
        group = tl.program_id(1)
        token = block * BLOCK + tl.arange(0, BLOCK)
        valid = token < tokens
        rows = tl.load(rows_ptr + token, mask=valid, other=PAD)
        inner = tl.arange(0, GROUP)
        columns = group * GROUP + inner
        acc = tl.zeros((BLOCK, GROUP), dtype=tl.float32)
        for tap in range(TAPS):
            source = (rows - PAD + tap).to(tl.int64)[:, None] * CHANNELS + columns[None, :]
            x = tl.load(gapped_ptr + source, mask=valid[:, None], other=0.0)
            w = tl.load(w_ptr + ((group * TAPS + tap) * GROUP + inner[:, None]) * GROUP + inner[None, :])
            acc += tl.dot(x, w)
        acc += tl.load(b_ptr + columns).to(tl.float32)[None, :]
        acc = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))
        at = token.to(tl.int64)[:, None] * CHANNELS + columns[None, :]
        residual = tl.load(x_ptr + at, mask=valid[:, None], other=0.0).to(tl.float32)
        tl.store(y_ptr + at, (residual + acc).to(y_ptr.dtype.element_ty), mask=valid[:, None])


def positional_taps(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped convolution weight ``[C, C / groups, taps]`` as ``[groups, taps, in, out]`` tiles."""
    channels, group, taps = weight.shape
    return weight.view(groups, channels // groups, group, taps).permute(0, 3, 2, 1).contiguous()


def fused_positional(
    x: torch.Tensor,
    gapped: torch.Tensor,
    rows: torch.Tensor,
    taps: torch.Tensor,
    bias: torch.Tensor,
    pad: int,
) -> torch.Tensor:
    """``x + GELU(grouped conv(gapped) + bias)`` at each token's row of the gapped copy, in one kernel.

    Why: cuDNN runs wav2vec2's positional convolution (128 taps, 16 groups of 64 channels) as 16
    generic-kernel launches plus layout conversions, ~5 ms of a 60 ms call on an H200 at mixed
    lengths for ~0.5 TFLOP. Here each program multiplies a tile of tokens by the 128 tap
    matrices of one group, reading the shifted rows straight from the gapped copy, and adds
    bias, GELU and the residual before its one store. ``x``: tokens ``[N, C]``; ``rows``: the
    gapped row of each token (``pad`` zero rows around every utterance).
    """
    tokens, channels = x.shape
    groups, count, group, _ = taps.shape
    y = torch.empty_like(x)
    block = 64
    _positional_kernel[(triton.cdiv(tokens, block), groups)](
        x,
        gapped,
        rows,
        taps,
        bias,
        y,
        tokens,
        CHANNELS=channels,
        GROUP=group,
        TAPS=count,
        PAD=pad,
        BLOCK=block,
    )
    return y


def reference_positional(
    x: torch.Tensor,
    gapped: torch.Tensor,
    rows: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    pad: int,
) -> torch.Tensor:
    """The same with PyTorch's convolution (what the engine runs where the kernel does not)."""
    position = F.conv1d(
        gapped.t()[None], weight, bias, padding=pad, groups=weight.shape[0] // weight.shape[1]
    )
    return x + F.gelu(position[0].t().index_select(0, rows))


def positional_available(
    device: torch.device, dtype: torch.dtype, weight: torch.Tensor, bias: torch.Tensor
) -> bool:
    """Whether `fused_positional` runs here and agrees with `reference_positional` (checked once)."""
    if triton is None or device.type != "cuda" or dtype == torch.float32 or weight.shape[1] % 16:
        return False
    try:
        pad = weight.shape[2] // 2
        channels = weight.shape[0]
        rows = torch.cat([torch.arange(pad, pad + 300), torch.arange(2 * pad + 300, 2 * pad + 345)]).to(
            device
        )
        gapped = torch.zeros(int(rows[-1]) + pad + 1, channels, device=device, dtype=dtype)
        x = torch.randn(rows.numel(), channels, device=device, dtype=dtype)
        gapped[rows] = x
        taps = positional_taps(weight, channels // weight.shape[1])
        torch.testing.assert_close(
            fused_positional(x, gapped, rows, taps, bias, pad),
            reference_positional(x, gapped, rows, weight, bias, pad),
            atol=3e-2,
            rtol=3e-2,
        )
    except Exception as error:  # no compiler, an old Triton, …: PyTorch's convolution
        reason = f"{type(error).__name__}: {error}"
        print(f"torch engine: fused positional conv unavailable ({reason}); using cuDNN's")
        return False
    return True


if triton is not None:

    @triton.jit
    def _first_conv_kernel(
        x_ptr,
        w_ptr,
        shift_ptr,
        lw_ptr,
        lb_ptr,
        y_ptr,
        frames,
        eps,
        KERNEL: tl.constexpr,
        STRIDE: tl.constexpr,
        TAPS: tl.constexpr,
        CHANNELS: tl.constexpr,
        BLOCK: tl.constexpr,
        SHIFT: tl.constexpr,
    ):
        frame = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = frame < frames
        tap = tl.arange(0, TAPS)
        window = frame.to(tl.int64)[:, None] * STRIDE + tap[None, :]
        x = tl.load(x_ptr + window, mask=valid[:, None] & (tap[None, :] < KERNEL), other=0.0)
        channel = tl.arange(0, CHANNELS)
        acc = tl.dot(x, tl.load(w_ptr + tap[:, None] * CHANNELS + channel[None, :]))
        if SHIFT:
            acc += tl.load(shift_ptr + channel).to(tl.float32)[None, :]
        mean = tl.sum(acc, axis=1) / CHANNELS
        centred = acc - mean[:, None]
        variance = tl.sum(centred * centred, axis=1) / CHANNELS
        y = centred * tl.rsqrt(variance + eps)[:, None]
        y = y * tl.load(lw_ptr + channel)[None, :] + tl.load(lb_ptr + channel)[None, :]
        y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
        out = frame.to(tl.int64)[:, None] * CHANNELS + channel[None, :]
        tl.store(y_ptr + out, y.to(y_ptr.dtype.element_ty), mask=valid[:, None])


def first_conv_taps(weight: torch.Tensor, taps: int = 16) -> torch.Tensor:
    """The first convolution's weight ``[C, 1, kernel]`` as ``[taps, C]``, zero rows past the kernel."""
    channels, _, kernel = weight.shape
    out = weight.new_zeros(taps, channels)
    out[:kernel] = weight[:, 0].t()
    return out.contiguous()


def fused_first_conv(
    audio: torch.Tensor,
    taps: torch.Tensor,
    kernel: int,
    stride: int,
    bias: torch.Tensor | None,
    norm: nn.LayerNorm,
) -> torch.Tensor:
    """GELU(LayerNorm(conv(audio) + bias)) of one row of audio ``[T]`` → ``[frames, C]``, in one kernel.

    Why: the feature encoder's first layer writes 512 channels for every 5 samples, its largest
    tensor by far (1 GB for 32 × 10 s in BF16); cuDNN writes it, the LayerNorm reads it and
    writes it again. Here the 10-tap products, bias, norm and GELU happen in registers and the
    map is written once.
    """
    frames = (audio.shape[0] - kernel) // stride + 1
    channels = taps.shape[1]
    y = torch.empty(frames, channels, device=audio.device, dtype=audio.dtype)
    block = 32
    _first_conv_kernel[(triton.cdiv(frames, block),)](
        audio,
        taps,
        bias if bias is not None else norm.weight,
        norm.weight,
        norm.bias,
        y,
        frames,
        norm.eps,
        KERNEL=kernel,
        STRIDE=stride,
        TAPS=taps.shape[0],
        CHANNELS=channels,
        BLOCK=block,
        SHIFT=bias is not None,
        num_warps=8,
    )
    return y


def first_conv_available(
    device: torch.device, dtype: torch.dtype, conv: nn.Conv1d, norm: nn.LayerNorm
) -> bool:
    """Whether `fused_first_conv` runs here and agrees with cuDNN and the norm kernel (checked once)."""
    channels, inputs, kernel = conv.weight.shape
    stride = conv.stride[0]
    if triton is None or device.type != "cuda" or dtype == torch.float32:
        return False
    if inputs != 1 or kernel > 16 or channels & (channels - 1) or channels > 1024:
        return False
    try:
        audio = torch.randn(16_000 * 3 + 7, device=device).to(dtype)
        got = fused_first_conv(audio, first_conv_taps(conv.weight), kernel, stride, conv.bias, norm)
        y = F.conv1d(audio[None, None], conv.weight, None, stride=stride)[0].t()
        torch.testing.assert_close(got, reference_layer_norm(y, norm, True, conv.bias), atol=3e-2, rtol=3e-2)
    except Exception as error:  # no compiler, an old Triton, …: cuDNN and the LayerNorm kernel
        reason = f"{type(error).__name__}: {error}"
        print(f"torch engine: fused first convolution unavailable ({reason}); using cuDNN's")
        return False
    return True
