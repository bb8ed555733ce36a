"""FP8 matrix products for the `torch` engine's transformer (option ``fp8``): e4m3 with one scale per row.

Why: at 32 × 10 s the BF16 matrix products are about 16 of the engine's 29 ms of kernels, already near
the H100's BF16 rate; FP8 doubles that rate (issue 22, item 3). Each of a layer's four products
(Q/K/V, attention output, feed-forward in and out) takes its input in FP8 with one scale per token
and its weight in FP8 with one scale per output channel (`torch._scaled_mm`, row-wise scaling), and
writes BF16. The inputs are quantized where they are produced, so quantizing costs no pass of its own
over the activations except after attention:

* `norm_quant`: the residual add, the layer's LayerNorm (FP32 statistics and parameters, the
  carried biases as its shift) and the quantization in one kernel, for Q/K/V and feed-forward in;
* `quantize`: GELU and the quantization in one kernel for feed-forward out, the quantization alone
  for the attention output.

Every norm, the attention itself, the positional convolution, the feature encoder and the CTC head
stay as the BF16 engine has them. On a CPU (CI) the same functions run as PyTorch operations, which
is how the tests check the arithmetic; a GPU uses the Triton kernels only after they agreed with
those operations when the engine started (`fp8_available`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path below
    triton = None

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # the largest e4m3 value: each row's largest magnitude is scaled to it
TINY = 1e-12  # an all-zero row keeps a finite scale


@dataclass(frozen=True)
class Fp8Linear:
    """A linear layer's weight in e4m3 ``[out, in]`` with one FP32 scale per output channel."""

    weight: torch.Tensor
    scale: torch.Tensor  # [1, out]
    bias: torch.Tensor | None

    @classmethod
    def of(cls, linear: nn.Linear | torch.Tensor, bias: torch.Tensor | None = None) -> Fp8Linear:
        weight = linear.weight if isinstance(linear, nn.Linear) else linear
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=TINY) / FP8_MAX
        quantized = (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8).contiguous()
        return cls(quantized, scale[None, :].contiguous(), bias)

    def __call__(self, x: torch.Tensor, x_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """``x`` (e4m3 ``[rows, in]``, scales ``[rows, 1]``) times the weight, plus bias, in ``out_dtype``."""
        bias = None if self.bias is None else self.bias.to(out_dtype)
        return torch._scaled_mm(
            x, self.weight.t(), scale_a=x_scale, scale_b=self.scale, bias=bias, out_dtype=out_dtype
        )


def _quantized_rows(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FP32 rows ``y`` as e4m3 and one scale per row."""
    scale = y.abs().amax(dim=-1, keepdim=True).clamp(min=TINY) / FP8_MAX
    return (y / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def reference_norm_quant(
    x: torch.Tensor, y: torch.Tensor | None, norm: nn.LayerNorm, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`norm_quant` in PyTorch operations."""
    total = x.float() if y is None else x.float() + y.float()
    out = F.layer_norm(
        total + shift.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps
    )
    quantized, scale = _quantized_rows(out)
    return (x if y is None else total.to(x.dtype)), quantized, scale


def reference_quantize(x: torch.Tensor, gelu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize` in PyTorch operations."""
    y = x.float()
    return _quantized_rows(F.gelu(y) if gelu else y)


if triton is not None:

    @triton.jit
    def _norm_quant_kernel(
        x_ptr,
        y_ptr,
        sum_ptr,
        shift_ptr,
        w_ptr,
        b_ptr,
        q_ptr,
        scale_ptr,
        columns,
        eps,
        BLOCK: tl.constexpr,
        ADD: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        offsets = tl.arange(0, BLOCK)
        valid = offsets < columns
        x = tl.load(x_ptr + row * columns + offsets, mask=valid, other=0.0).to(tl.float32)
        if ADD:  # the residual add; the new stream is written once, as the next layer reads it
            x += tl.load(y_ptr + row * columns + offsets, mask=valid, other=0.0).to(tl.float32)
            tl.store(sum_ptr + row * columns + offsets, x.to(sum_ptr.dtype.element_ty), mask=valid)
        x = tl.where(valid, x + tl.load(shift_ptr + offsets, mask=valid, other=0.0), 0.0)
        mean = tl.sum(x, axis=0) / columns
        centred = tl.where(valid, x - mean, 0.0)
        variance = tl.sum(centred * centred, axis=0) / columns
        weight = tl.load(w_ptr + offsets, mask=valid, other=0.0)
        bias = tl.load(b_ptr + offsets, mask=valid, other=0.0)
        out = tl.where(valid, centred * tl.rsqrt(variance + eps) * weight + bias, 0.0)
        scale = tl.maximum(tl.max(tl.abs(out), axis=0), 1e-12) / 448.0
        quantized = tl.minimum(tl.maximum(out / scale, -448.0), 448.0)
        tl.store(q_ptr + row * columns + offsets, quantized.to(q_ptr.dtype.element_ty), mask=valid)
        tl.store(scale_ptr + row, scale)

    @triton.jit
    def _quantize_kernel(x_ptr, q_ptr, scale_ptr, columns, BLOCK: tl.constexpr, GELU: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        offsets = tl.arange(0, BLOCK)
        valid = offsets < columns
        x = tl.load(x_ptr + row * columns + offsets, mask=valid, other=0.0).to(tl.float32)
        if GELU:
            x = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
        scale = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-12) / 448.0
        quantized = tl.minimum(tl.maximum(x / scale, -448.0), 448.0)
        tl.store(q_ptr + row * columns + offsets, quantized.to(q_ptr.dtype.element_ty), mask=valid)
        tl.store(scale_ptr + row, scale)


def _warps(block: int) -> int:
    return 8 if block >= 4096 else 4 if block >= 1024 else 2


def norm_quant(
    x: torch.Tensor, y: torch.Tensor | None, norm: nn.LayerNorm, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stream ``x + y`` (``x`` when ``y`` is None), and LayerNorm(stream + ``shift``) in e4m3 with
    one scale per row, from contiguous rows ``[tokens, hidden]``: one Triton kernel on a GPU."""
    if x.device.type != "cuda" or triton is None:
        return reference_norm_quant(x, y, norm, shift)
    rows, columns = x.shape
    total = x if y is None else torch.empty_like(x)
    quantized = torch.empty(rows, columns, dtype=FP8, device=x.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(columns)
    _norm_quant_kernel[(rows,)](
        x,
        x if y is None else y,
        total,
        shift,
        norm.weight,
        norm.bias,
        quantized,
        scale,
        columns,
        norm.eps,
        BLOCK=block,
        ADD=y is not None,
        num_warps=_warps(block),
    )
    return total, quantized, scale


def quantize(x: torch.Tensor, gelu: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous rows ``x`` (after GELU, if asked) in e4m3, one scale per row: one Triton kernel on a GPU."""
    if x.device.type != "cuda" or triton is None:
        return reference_quantize(x, gelu)
    rows, columns = x.shape
    quantized = torch.empty(rows, columns, dtype=FP8, device=x.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(columns)
    _quantize_kernel[(rows,)](x, quantized, scale, columns, BLOCK=block, GELU=gelu, num_warps=_warps(block))
    return quantized, scale


def fp8_available(device: torch.device, dtype: torch.dtype) -> str | None:
    """None where the FP8 path runs here and its kernels agree with the PyTorch operations; else why not.

    Checked once, when the engine starts: FP8 matrix products need a GPU of compute capability 8.9
    or later (Ada, Hopper), BF16 output (row-wise scaling writes BF16) and Triton for the kernels.
    """
    if device.type != "cuda":
        return None  # the PyTorch operations (CPU tests) need nothing more
    if dtype != torch.bfloat16:
        return "FP8 matrix products write BF16; the engine's dtype is not bfloat16"
    if torch.cuda.get_device_capability(device) < (8, 9):
        return "this GPU has no FP8 matrix products (compute capability < 8.9)"
    if triton is None:
        return "Triton is not installed"
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        norm = nn.LayerNorm(1024).to(device)
        x = torch.randn(37, 1024, device=device, generator=generator).to(dtype)
        y = torch.randn(37, 1024, device=device, generator=generator).to(dtype)
        shift = torch.randn(1024, device=device, generator=generator)
        wide = torch.randn(37, 4096, device=device, generator=generator).to(dtype)
        pairs = [
            *zip(norm_quant(x, y, norm, shift), reference_norm_quant(x, y, norm, shift)),
            *zip(quantize(wide, gelu=True), reference_quantize(wide, gelu=True)),
        ]
        for got, want in pairs:  # within one step of e4m3 (an eighth) or of the stream's dtype
            torch.testing.assert_close(got.float(), want.float(), atol=2e-3, rtol=0.125)
        linear = Fp8Linear.of(nn.Linear(1024, 256).to(device))
        quantized, scale = quantize(x)
        product = linear(quantized, scale, dtype).float()
        expected = (quantized.float() * scale) @ (linear.weight.float() * linear.scale.t()).t()
        torch.testing.assert_close(product, expected, atol=0.1, rtol=0.02)
    except Exception as error:  # an old PyTorch or Triton, no row-wise scaling here, …
        return f"{type(error).__name__}: {error}"
    return None
