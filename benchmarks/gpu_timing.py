"""How the GPU benchmark reads GPU time: CUDA-event medians, the arithmetic ceiling, kernel profiles.

Why a module of its own: every suite that times on the GPU (the engine and its eager baselines,
the normalization alone) must time alike, after warm-up, by CUDA events rather than the host's
clock, and report against one ceiling (a large BF16 matrix product measured on the same GPU in the
same run); the kernel profile says where the engine's time goes. ``torch`` is passed in, so that
importing this module needs no GPU.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


class Timer:
    """Median GPU time of a callable, with CUDA events, after warm-up."""

    def __init__(self, torch, budget_s: float = 1.5, min_reps: int = 3, max_reps: int = 20) -> None:
        self.torch = torch
        self.budget_s = budget_s
        self.min_reps = min_reps
        self.max_reps = max_reps

    def __call__(self, run: Callable[[], object], warmup: int = 2) -> dict[str, float]:
        torch = self.torch
        for _ in range(warmup):
            run()
        torch.cuda.synchronize()
        times: list[float] = []
        spent = 0.0
        while len(times) < self.min_reps or (spent < self.budget_s and len(times) < self.max_reps):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
            spent += times[-1] / 1000
        return {"ms": statistics.median(times), "ms_min": min(times), "reps": len(times)}


def matmul_ceiling(torch, size: int = 8192) -> float:
    """Measured dense BF16 matrix-product rate (FLOP/s) on random data: the arithmetic ceiling."""
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    timing = Timer(torch, budget_s=0.5, min_reps=10)(lambda: a @ b, warmup=3)
    return 2 * size**3 / (timing["ms"] / 1000)


def kernel_profile(torch, run: Callable[[], object], top: int = 15) -> dict:
    """Kernel time by category and the top kernels of one call (torch.profiler, CUDA activity)."""
    from torch.profiler import ProfilerActivity, profile

    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    kernels = [
        (e.key, e.self_device_time_total / 1000, e.count)
        for e in prof.key_averages()
        if e.self_device_time_total > 0
    ]
    kernels.sort(key=lambda k: -k[1])
    categories: dict[str, float] = {}
    for name, ms, _ in kernels:
        categories[_category(name)] = categories.get(_category(name), 0.0) + ms
    return {
        "total_ms": sum(k[1] for k in kernels),
        "categories_ms": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
        "top": [{"kernel": n[:120], "ms": ms, "calls": c} for n, ms, c in kernels[:top]],
    }


def _category(kernel: str) -> str:
    name = kernel.lower()
    rules = [
        ("attention", ("flash", "fmha", "attention", "efficient")),
        ("convolution", ("conv", "implicit", "cudnn", "xmma_fprop", "sm90_xmma")),
        ("matrix product", ("gemm", "cutlass", "nvjet", "sm90", "cublas", "matmul")),
        ("normalization", ("layer_norm", "layernorm", "norm")),
        (
            "copy / cast / layout",
            ("copy", "cast", "contiguous", "transpose", "cat", "fill", "memcpy", "memset"),
        ),
        ("elementwise (GELU, add, mask)", ("elementwise", "gelu", "add", "mul", "masked", "where")),
    ]
    for category, keys in rules:
        if any(k in name for k in keys):
            return category
    return "other"
