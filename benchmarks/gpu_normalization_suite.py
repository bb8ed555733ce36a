"""The candidate packed normalization on trial: timed alone against the engine's, and inside the engine.

Why a module of its own: `vaani.benchmarks.normalization_candidates` holds a normalization that may
replace the `torch` engine's, and only a GPU run can decide. This module is that trial and nothing
else: the normalization alone per workload (the engine's scatter-add, the block sums and the two
alternatives considered, each checked against float64), and the swap that lets the engine suite
time and check the engine with the candidate in it (the variant `CANDIDATE_VARIANT`) without
changing the engine. When the trial is decided, this module goes with the candidate.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import numpy as np

from vaani.benchmarks.gpu_workloads import speechlike

SCATTER_ADD = "scatter-add (engine)"
BLOCK_SUMS = "block sums (candidate)"


def normalization_suite(
    torch, config, timer: Callable[..., dict], loads: dict[str, list[float]], device: str = "cuda"
) -> dict:
    """The packed normalization alone, per workload: the engine's and each candidate, timed and checked.

    The engine's scatter-add against the block sums that may replace it and the two alternatives
    considered (`vaani.benchmarks.normalization_candidates`). Clips get their own offset and gain
    (1e-4 to 1e3), so that the error column (max |Δ| against a float64 numpy normalization of each
    clip, over the valid samples, and whether the gaps stay zero) separates the methods.
    ``timer`` and ``device`` let CI run it on the CPU (tests/test_gpu_report.py).
    """
    from vaani.benchmarks.normalization_candidates import (
        cumulative_sums,
        normalize_packed_blocks,
        segment_reduce_sums,
    )
    from vaani.serving.engines.torch_normalization import normalize_packed
    from vaani.serving.engines.torch_packing import Packing

    methods = {
        SCATTER_ADD: normalize_packed,
        BLOCK_SUMS: normalize_packed_blocks,
        "float64 cumulative sum": functools.partial(normalize_packed_blocks, sums=cumulative_sums),
        "segment_reduce, float64": functools.partial(normalize_packed_blocks, sums=segment_reduce_sums),
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


CANDIDATE_VARIANT = "engine, block-sums normalization (candidate)"


@contextlib.contextmanager
def packed_normalization(replacement: Callable | None) -> Iterator[None]:
    """The engine with another packed normalization for the duration (None: its own).

    So that one run times the engine as it is and with the candidate that may replace its
    normalization, without changing the engine before a GPU has measured the candidate.
    """
    from vaani.serving.engines import torch_engine

    original = torch_engine.normalize_packed
    torch_engine.normalize_packed = replacement or original
    try:
        yield
    finally:
        torch_engine.normalize_packed = original
