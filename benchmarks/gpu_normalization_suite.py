"""The engine's packed normalization timed against the ones it does not use, alone and inside the engine.

Why a module of its own: the engine lost a third of its speed to a normalization nobody timed on a
GPU (issue 22). Every run therefore times the normalization alone per workload (the engine's block
sums, the scatter-add it replaced and the two alternatives considered, each checked against
float64), and the swap that lets the engine suite time and check the engine with the scatter-add
back in (the variant `BEFORE_VARIANT`) without changing the engine.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import numpy as np

from vaani.benchmarks.gpu_workloads import speechlike

SCATTER_ADD = "scatter-add (before)"
BLOCK_SUMS = "block sums (engine)"


def normalization_suite(
    torch, config, timer: Callable[..., dict], loads: dict[str, list[float]], device: str = "cuda"
) -> dict:
    """The packed normalization alone, per workload: the engine's and each alternative, timed and checked.

    The engine's block sums against the scatter-add they replaced and the two alternatives
    considered (`vaani.benchmarks.normalization_alternatives`). Clips get their own offset and gain
    (1e-4 to 1e3), so that the error column (max |Δ| against a float64 numpy normalization of each
    clip, over the valid samples, and whether the gaps stay zero) separates the methods.
    ``timer`` and ``device`` let CI run it on the CPU (tests/test_gpu_report.py).
    """
    from vaani.benchmarks.normalization_alternatives import (
        cumulative_sums,
        normalize_packed_scatter,
        normalize_with,
        segment_reduce_sums,
    )
    from vaani.serving.engines.torch_normalization import normalize_packed
    from vaani.serving.engines.torch_packing import Packing

    methods = {
        BLOCK_SUMS: normalize_packed,
        SCATTER_ADD: normalize_packed_scatter,
        "float64 cumulative sum": normalize_with(cumulative_sums),
        "segment_reduce, float64": normalize_with(segment_reduce_sums),
    }
    results: dict[str, dict] = {}
    print("normalization of the packed audio alone")
    for name, seconds in loads.items():
        rng = np.random.default_rng(9)
        clips = [
            (gain * (rng.uniform(-1, 1) + rng.standard_normal(len(clip)))).astype(np.float32)
            for clip, gain in zip(speechlike(seconds, seed=2), 10.0 ** rng.uniform(-4, 3, len(seconds)))
        ]
        packing = Packing(tuple(len(c) for c in clips), tuple(config.conv_kernel), tuple(config.conv_stride))
        host = np.zeros(packing.total_samples, dtype=np.float32)
        valid = np.zeros(packing.total_samples, dtype=bool)
        expected = np.zeros(packing.total_samples, dtype=np.float64)
        for clip, start in zip(clips, packing.sample_starts):
            host[start : start + len(clip)] = clip
            valid[start : start + len(clip)] = True
            c = clip.astype(np.float64)
            expected[start : start + len(clip)] = (c - c.mean()) / np.sqrt(c.var() + 1e-7)
        audio = torch.from_numpy(host).to(device)
        results[name] = {}
        for label, method in methods.items():
            out = method(audio, packing).cpu().numpy()
            error = float(np.abs(out[valid] - expected[valid]).max())
            gaps = float(np.abs(out[~valid]).max(initial=0.0))
            timing = timer(functools.partial(method, audio, packing), warmup=3)
            results[name][label] = {**timing, "max_abs_error": error, "gap_max": gaps}
            print(
                f"  {name:<7} {label:<26} {timing['ms']:8.3f} ms"
                f"  max |Δ| vs float64 {error:.2e}  gaps {gaps:.1e}"
            )
    return results


BEFORE_VARIANT = "engine, scatter-add normalization (before)"


@contextlib.contextmanager
def packed_normalization(replacement: Callable | None) -> Iterator[None]:
    """The engine with another packed normalization for the duration (None: its own).

    So that one run times the engine as it is and with the normalization it replaced.
    """
    from vaani.serving.engines import torch_engine

    original = torch_engine.normalize_packed
    torch_engine.normalize_packed = replacement or original
    try:
        yield
    finally:
        torch_engine.normalize_packed = original
