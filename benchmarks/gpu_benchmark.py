"""The GPU benchmark: wav2vec2-large shape, eager PyTorch vs the `torch` engine vs the served ensemble.

One command, one GPU, a few minutes::

    python -m vaani.benchmarks.gpu_benchmark --out benchmarks/results

It measures, on the same GPU and in one run, so that the numbers compare:

* the arithmetic ceiling (a large BF16 matrix product) that "fraction of ceiling" refers to;
* (a) eager Hugging Face FP32, (b) eager BF16 with SDPA, (c) the `torch` engine alone
  (its default, the padded forward it had before packed execution, and variants, each one
  knob changed), at 1 × 5 s, 32 × 10 s, 64 × 10 s and a mixed 2–15 s set; milliseconds,
  real-time factor, peak GPU memory;
* accuracy: the engine's logits against FP32 on random large-shaped weights, and its
  transcripts against the FP32 reference on the bundled model's test set when given;
* (d) the whole `asr` ensemble through `tritonserver` under an async gRPC load at
  concurrency 1 and 64 (p50/p99 latency, real-time factor);
* a kernel-time profile of the engine at 32 × 10 s, the evidence for where time goes.

Weights are random, built from the config (no download). The raw results are JSON;
`vaani.benchmarks.gpu_report` turns them into the Markdown table and the plot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import functools
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from vaani.serving.acoustic import conv_frames
from vaani.serving.contract import ACOUSTIC, AUDIO, ENSEMBLE, SAMPLING_RATE, TRANSCRIPT, version_dir

WORKLOADS = {"1x5s": [5.0], "32x10s": [10.0] * 32, "64x10s": [10.0] * 64}
MIXED_COUNT = 64
MIXED_RANGE = (2.0, 15.0)


def large_config():
    """wav2vec2-large (LV-60 family): 24 layers, 1024 hidden, 16 heads, stable layer norm."""
    from transformers import Wav2Vec2Config

    from vaani.recipe import hindi

    vocab = hindi.ctc_vocabulary()
    return Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        pad_token_id=vocab[hindi.PAD],
        layerdrop=0.0,
        mask_time_prob=0.0,
    )


def mixed_seconds(seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(s), 3) for s in rng.uniform(*MIXED_RANGE, size=MIXED_COUNT)]


def workloads() -> dict[str, list[float]]:
    return {**WORKLOADS, "mixed": mixed_seconds()}


def speechlike(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    """Normalized noise clips (never zeros: zeros run faster than real data)."""
    rng = np.random.default_rng(seed)
    clips = []
    for duration in seconds:
        clip = rng.standard_normal(round(duration * SAMPLING_RATE)).astype(np.float32)
        clips.append((clip - clip.mean()) / clip.std())
    return clips


def flops_per_audio_second(config, seconds: float = 10.0) -> float:
    """Multiply-adds × 2 of one clip of ``seconds``, per audio-second (conv encoder, pos conv, layers)."""
    samples = round(seconds * SAMPLING_RATE)
    total, length, channels = 0.0, samples, 1
    for dim, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
        total += 2 * length * dim * channels * kernel
        channels = dim
    frames, hidden = length, config.hidden_size
    total += 2 * frames * channels * hidden  # feature projection
    total += (
        2
        * frames
        * hidden
        * (hidden // config.num_conv_pos_embedding_groups)
        * config.num_conv_pos_embeddings
    )
    per_layer = 2 * frames * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    per_layer += 2 * 2 * frames * frames * hidden  # QK^T and PV
    total += config.num_hidden_layers * per_layer + 2 * frames * hidden * config.vocab_size
    return total / seconds


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


def _padded(torch, clips: list[np.ndarray]):
    longest = max(len(c) for c in clips)
    values = torch.zeros(len(clips), longest)
    mask = torch.zeros(len(clips), longest, dtype=torch.long)
    for row, clip in enumerate(clips):
        values[row, : len(clip)] = torch.from_numpy(clip)
        mask[row, : len(clip)] = 1
    return values.cuda(), mask.cuda()


def _measure(torch, timer: Timer, name: str, run: Callable[[], object], audio_seconds: float) -> dict:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    timing = timer(run)
    peak = torch.cuda.max_memory_allocated() - base
    result = {
        "variant": name,
        **timing,
        "audio_seconds": audio_seconds,
        "rtf": audio_seconds / (timing["ms"] / 1000),
        "peak_memory_gib": peak / 2**30,
    }
    print(f"  {name:<28} {timing['ms']:9.2f} ms  {result['rtf']:9.0f}× real time  {peak / 2**30:6.2f} GiB")
    return result


def eager_runner(torch, model, clips: list[np.ndarray], dtype) -> Callable[[], object]:
    """Hugging Face forward on a padded batch; the mask only when lengths differ (as a server would)."""
    values, mask = _padded(torch, clips)
    values = values.to(dtype)
    uniform = len({len(c) for c in clips}) == 1

    def run():
        with torch.inference_mode():
            return model(values, attention_mask=None if uniform else mask).logits

    return run


def engine_runner(torch, engine, clips: list[np.ndarray], max_padding: float) -> Callable[[], object]:
    """What the served step does for one execute(): host requests in, host logits out."""
    values = [clip[None, :] for clip in clips]
    lengths = [np.array([[len(clip)]], dtype=np.int64) for clip in clips]
    frames = lambda n: conv_frames(n, engine.ctc.kernels, engine.ctc.strides)  # noqa: E731  (ints, as the step)

    def run():
        return engine.run_ragged(values, lengths, frames, max_padding)

    return run


def logit_accuracy(torch, reference_model, engine, seconds: list[float]) -> dict:
    """Engine (half precision) vs FP32 eager on one padded batch of mixed lengths.

    Through the engine's padded interface (what the accuracy gate calls), which runs packed
    where the engine serves packed.
    """
    clips = speechlike(seconds, seed=7)
    values, mask = _padded(torch, clips)
    with torch.inference_mode():
        expected = reference_model(values, attention_mask=mask).logits.float()
        got = engine.forward(values, mask.sum(1).tolist())
    frames = reference_model._get_feat_extract_output_lengths(mask.sum(1)).tolist()
    diffs, norms, refs, agree, total = [], [], [], 0, 0
    for row, count in enumerate(frames):
        e, g = expected[row, :count], got[row, :count]
        diffs.append(float((e - g).abs().max()))
        norms.append(float((e - g).norm()))
        refs.append(float(e.norm()))
        agree += int((e.argmax(-1) == g.argmax(-1)).sum())
        total += count
    return {
        "clips_seconds": seconds,
        "max_abs_diff": max(diffs),
        "logit_scale": float(expected.abs().max()),
        "relative_l2": math.sqrt(sum(n * n for n in norms)) / math.sqrt(sum(r * r for r in refs)),
        "argmax_agreement": agree / total,
    }


def packed_check(torch, config, layers: int = 4) -> dict:
    """The packed engine vs Hugging Face FP32 on a few layers of the large shape, before any timing.

    FP32 checks the packing itself on this GPU (a wrong index fails it by far more than the
    TF32 convolutions' ~1e-3); the half-precision row shows what the variable-length kernel
    adds (the engine checked that kernel against per-utterance SDPA when it started).
    Fails the run seconds in, not minutes, if packed execution is wrong here.
    """
    from transformers import Wav2Vec2ForCTC

    from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions

    small = copy.deepcopy(config)
    small.num_hidden_layers = layers
    with torch.device("cuda"):
        reference = Wav2Vec2ForCTC(small).eval()
    seconds = [2.0, 2.02, 3.7, 9.4, 15.0, 0.3]
    results = {}
    for dtype in ("float32", TorchEngineOptions().dtype):
        options = TorchEngineOptions(dtype=dtype, cuda_graphs=False)
        engine = TorchEngine(copy.deepcopy(reference), "cuda", options)
        results[dtype] = logit_accuracy(torch, reference, engine, seconds)
        results[dtype]["attention"] = engine.ctc.attend_packed.__name__
        print(f"packed {dtype} vs FP32 ({layers} layers): {results[dtype]}")
    if not results["float32"]["relative_l2"] < 5e-3:
        raise SystemExit("packed execution disagrees with the FP32 reference; not timing it")
    return results


def prepare_eval(manifest: Path, out: Path, limit: int) -> None:
    """Pack a NeMo-style manifest's audio (16 kHz, int16) and texts into one .npz for the GPU machine.

    The first ``limit`` utterances only: the file travels with the working tree, which is size-limited.
    """
    from vaani.audio import load_audio

    lines = [line for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines[:limit]]
    clips = [load_audio(manifest.parent / r["audio_filepath"]) for r in records]
    offsets = np.cumsum([0] + [len(c) for c in clips])
    audio = np.concatenate([np.clip(c * 32768.0, -32768, 32767).astype(np.int16) for c in clips])
    np.savez_compressed(out, audio=audio, offsets=offsets, texts=np.array([r["text"] for r in records]))
    print(f"{len(clips)} utterances, {offsets[-1] / SAMPLING_RATE / 60:.1f} min → {out}")


def bundled_accuracy(torch, model_dir: Path, eval_file: Path, limit: int) -> dict:
    """Transcripts of the engine (BF16) and of the FP32 reference on the bundled test set."""
    from vaani.build.hf_model import HfModel
    from vaani.serving.engines.torch_engine import TorchEngine

    data = np.load(eval_file, allow_pickle=False)
    offsets, texts = data["offsets"], [str(t) for t in data["texts"]][:limit]
    audio = [
        data["audio"][offsets[i] : offsets[i + 1]].astype(np.float32) / 32768.0 for i in range(len(texts))
    ]
    hf = HfModel.load(model_dir)
    hf.model.cuda()
    engine = TorchEngine.load(model_dir, "cuda")
    spec = hf.spec()
    reference, candidate = [], []
    for start in range(0, len(audio), 16):
        chunk = audio[start : start + 16]
        values, mask = hf.features(chunk)
        with torch.inference_mode():
            ids_ref = hf.model(torch.from_numpy(values).cuda(), attention_mask=torch.from_numpy(mask).cuda())
            ids_ref = ids_ref.logits.argmax(-1).cpu().numpy()
        got = engine(values, mask).argmax(-1)
        for row, clip in enumerate(chunk):
            frames = spec.frames(len(clip))
            reference.append(hf.decode(ids_ref[row, :frames]))
            candidate.append(hf.decode(got[row, :frames]))
    return {"model": str(model_dir), "truth": texts, "reference": reference, "engine": candidate}


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


# ---------------------------------------------------------------- the engine's input normalization


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
# The variants whose logits are compared with FP32 eager.
LOGITS_CHECKED = (
    "engine",
    "engine, padded (before packing)",
    "engine FP16",
    "engine BF16",
    CANDIDATE_VARIANT,
)


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


def engine_suite(torch, config, state: dict, timer: Timer, loads: dict[str, list[float]]) -> dict:
    """(a), (b), (c) at every workload, plus accuracy and the profile."""
    from transformers import Wav2Vec2ForCTC

    from vaani.benchmarks.normalization_candidates import normalize_packed_blocks
    from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions

    def fresh(dtype):
        with torch.device("cuda"):  # initialising 315 M parameters on the host would take longer
            model = Wav2Vec2ForCTC(config)
        model.load_state_dict(state)
        return model.eval().to(dtype)

    clips = {name: speechlike(seconds, seed=1) for name, seconds in loads.items()}
    audio = {name: sum(seconds) for name, seconds in loads.items()}
    rows: dict[str, list[dict]] = {name: [] for name in loads}
    fp32 = fresh(torch.float32)
    print("(a) eager FP32")
    for name in loads:
        rows[name].append(
            _measure(
                torch, timer, "eager FP32", eager_runner(torch, fp32, clips[name], torch.float32), audio[name]
            )
        )
    bf16 = fresh(torch.bfloat16)
    print("(b) eager BF16 + SDPA")
    for name in loads:
        rows[name].append(
            _measure(
                torch,
                timer,
                "eager BF16 + SDPA",
                eager_runner(torch, bf16, clips[name], torch.bfloat16),
                audio[name],
            )
        )
    del bf16
    default = TorchEngineOptions()
    # The padded engine goes first: the first engine measured has run slower at 1 × 5 s (4.2 ms
    # against 2.5 ms for the same CUDA-graph path in later ones), so it must not be the default.
    variants = {
        "engine, padded (before packing)": replace(default, packed=False),
        "engine": default,
        CANDIDATE_VARIANT: default,
        "engine, no CUDA graphs": replace(default, cuda_graphs=False),
        "engine, flash varlen attention": replace(default, packed_attention="flash"),
        "engine FP16": replace(default, dtype="float16"),
        "engine BF16": replace(default, dtype="bfloat16"),
    }
    if default.dtype == "bfloat16":  # the two dtypes once each, whichever is the default
        del variants["engine BF16"]
    else:
        del variants["engine FP16"]
    accuracy, profile, profile_mixed, fused = {}, {}, {}, False
    for label, options in variants.items():
        engine = TorchEngine(fresh(torch.float32), "cuda", options)
        print(f"(c) {label}")
        with packed_normalization(normalize_packed_blocks if label == CANDIDATE_VARIANT else None):
            for name in loads:
                run = engine_runner(torch, engine, clips[name], max_padding=0.35)
                rows[name].append(_measure(torch, timer, label, run, audio[name]))
            # Inside the `with`, so that the candidate's logits are checked as the engine's are.
            if label in LOGITS_CHECKED:
                accuracy[label] = logit_accuracy(torch, fp32, engine, [2.0, 3.7, 6.1, 9.4, 12.8, 15.0])
                print(f"  logits vs FP32: {accuracy[label]}")
        if label == "engine":
            fused = engine.ctc.fused_norms
            print(f"  packed attention: {engine.ctc.attend_packed.__name__}, fused norms: {fused}")
            profile = kernel_profile(torch, engine_runner(torch, engine, clips["32x10s"], 0.35))
            profile_mixed = kernel_profile(torch, engine_runner(torch, engine, clips["mixed"], 0.35))
        del engine
        torch.cuda.empty_cache()
    return {
        "workloads": rows,
        "logit_accuracy": accuracy,
        "profile_32x10s": profile,
        "profile_mixed": profile_mixed,
        "engine_fused_norms": fused,
    }


# ---------------------------------------------------------------- (d) the served ensemble


def prepare_repository(model: object, repository: Path, settings) -> None:
    """A `torch`-engine repository for an in-memory model, without the ONNX export `build` does."""
    from vaani.build.hf_model import HfModel
    from vaani.build.pipeline import install_steps
    from vaani.build.repository import write_configs
    from vaani.recipe.tiny_model import save_processor
    from vaani.serving.engines.torch_engine import save_model

    model_dir = repository.parent / "model"
    model.save_pretrained(str(model_dir), safe_serialization=True)
    save_processor(model_dir)
    install_steps(repository)
    hf = HfModel.load(model_dir)
    save_model(hf.model, version_dir(repository, ACOUSTIC))
    write_configs(repository, hf.spec(), settings, source_model="random wav2vec2-large")


async def _client(url: str, clips: list[np.ndarray], concurrency: int, seconds: float, warmup: float) -> list:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    done: list[tuple[float, float, float]] = []  # (finish time, latency s, audio s)
    start = time.perf_counter()
    stop_at = start + warmup + seconds

    async def worker(offset: int) -> None:
        index = offset
        while time.perf_counter() < stop_at:
            clip = clips[index % len(clips)][None, :]
            index += concurrency
            tensor = grpcclient.InferInput(AUDIO, list(clip.shape), "FP32")
            tensor.set_data_from_numpy(clip)
            sent = time.perf_counter()
            await client.infer(ENSEMBLE, [tensor], outputs=[grpcclient.InferRequestedOutput(TRANSCRIPT)])
            now = time.perf_counter()
            if now - start >= warmup:
                done.append((now, now - sent, clip.shape[1] / SAMPLING_RATE))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await client.close()
    return done


def _client_process(args: tuple) -> list:
    return asyncio.run(_client(*args))


def load_test(url: str, clips: list[np.ndarray], concurrency: int, seconds: float, warmup: float) -> dict:
    """Closed-loop async gRPC load: ``concurrency`` requests in flight, one utterance each.

    Split over processes so that the Python client is not the bottleneck.
    """
    processes = max(1, min(8, concurrency // 8))
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    jobs = [(url, clips[i::processes] or clips, share, seconds, warmup) for i, share in enumerate(shares)]
    if processes == 1:
        done = _client_process(jobs[0])
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            done = [item for part in pool.map(_client_process, jobs) for item in part]
    latencies = sorted(d[1] * 1000 for d in done)
    first = min(d[0] - d[1] for d in done)
    last = max(d[0] for d in done)
    audio = sum(d[2] for d in done)
    return {
        "concurrency": concurrency,
        "requests": len(done),
        "audio_seconds": audio,
        "rtf": audio / (last - first),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p90_ms": float(np.percentile(latencies, 90)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "throughput_rps": len(done) / (last - first),
    }


PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def step_statistics(url: str) -> dict[str, dict[str, float]]:
    """Triton's cumulative per-model counters: requests, executions (batches) and time per phase."""
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(as_json=True)
    out = {}
    for model in stats.get("model_stats", []):
        infer = model.get("inference_stats", {})
        out[model["name"]] = {
            "requests": float(model.get("inference_count", 0)),
            "executions": float(model.get("execution_count", 0)),
            **{f"{phase}_ms": float(infer.get(phase, {}).get("ns", 0)) / 1e6 for phase in PHASES},
        }
    return out


def step_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Per step over one scenario: mean batch size and mean ms per execution in each phase."""
    delta = {}
    for name, now in after.items():
        then = before.get(name, {})
        executions = now["executions"] - then.get("executions", 0.0)
        requests = now["requests"] - then.get("requests", 0.0)
        if executions <= 0:
            continue
        delta[name] = {"mean_batch": round(requests / executions, 2), "executions": executions}
        for phase in PHASES:
            spent = now[f"{phase}_ms"] - then.get(f"{phase}_ms", 0.0)
            delta[name][f"{phase}_ms_per_execution"] = round(spent / executions, 3)
    return delta


def perf_breakdown(url: str, clips: list[np.ndarray], workdir: Path, concurrency: int = 64) -> dict:
    """perf_analyzer on `asr` at ``concurrency`` over ``clips``: its totals and per-step breakdown.

    Its "Composing models" block is Triton's own account of each step (queue, input copies,
    compute, output copies), which is what changes when the data between the steps changes.
    """
    from vaani.errors import UserFacingError
    from vaani.loadtest import perf
    from vaani.loadtest.clips import Clip

    try:
        perf.binary()
    except UserFacingError as error:
        return {"skipped": str(error)}
    data = workdir / "perf-input.json"
    mean = perf.write_input_data([Clip(f"clip-{i}", "", c) for i, c in enumerate(clips)], data)
    argv = perf.command(
        url, data, workdir / "perf.csv", f"{concurrency}:{concurrency}:1", window_requests=4 * concurrency
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    throughput = re.search(r"Throughput: ([\d.]+) infer/sec", done.stdout)
    rows = perf.parse_composing(done.stdout)
    result = {
        "command": " ".join(["perf_analyzer", *argv[1:]]),
        "returncode": done.returncode,
        "mean_clip_seconds": mean,
        "infer_per_s": float(throughput[1]) if throughput else None,
        "rtf": float(throughput[1]) * mean if throughput else None,
        "composing": rows,
        "output_tail": (done.stdout + done.stderr)[-3000:],
    }
    print(f"  perf_analyzer c={concurrency}: {result['rtf'] or 0:.0f}× real time; steps {rows}")
    return result


def _is_error(line: str) -> bool:
    return line.startswith("E") or any(k in line for k in ("rror", "Traceback", "failed", 'File "'))


def served_suite(
    torch, config, state: dict, workdir: Path, duration: float, server_pythonpath: str, instances: int = 1
) -> dict:
    """(d): build a torch-engine repository, start tritonserver, load it at concurrency 1 and 64.

    ``instances`` `wav2vec2` instances share the GPU: while one does its host work (Triton's
    input copies, padding, results back), the other can keep the GPU busy.
    """
    from transformers import Wav2Vec2ForCTC

    from vaani.build.repository import RepositorySettings
    from vaani.server.process import Ports, TritonProcess

    model = Wav2Vec2ForCTC(config)
    model.load_state_dict(state)
    settings = RepositorySettings(
        engine="torch",
        max_batch_size=64,
        queue_delay_us=500,
        python_instances=4,
        acoustic_instances=instances,
        max_audio_seconds=30.0,
    )
    repository = workdir / "repository"
    prepare_repository(model, repository, settings)
    del model
    # The python-backend stub's interpreter ignores PYTHONPATH; gpu-machine.sh installs a .pth hook
    # (benchmarks/vaani_stub_path.py) that reads these variables instead; only the server gets them.
    paths = [server_pythonpath, os.environ.get("PYTHONPATH", ""), *site.getsitepackages()]
    stub_path = os.pathsep.join(p for p in paths if p)
    log = workdir / "tritonserver.log"
    results: dict = {"settings": settings.__dict__, "scenarios": []}
    stub_environment = {
        "VAANI_STUB_PATH": stub_path,
        "VAANI_STUB_NUMPY1": server_pythonpath,
        "VAANI_STUB_NUMPY2_FOR": ACOUSTIC,  # DLPack only; transformers' compiled deps need numpy 2
    }
    os.environ.update(stub_environment)
    try:
        process = TritonProcess(repository, Ports(18000, 18001, 18002), log_file=log)
    finally:
        for key in stub_environment:
            del os.environ[key]
    with process as server:
        try:
            server.wait_ready(timeout=180)
        except Exception:
            text = log.read_text()
            print("\n".join(line for line in text.splitlines() if _is_error(line))[-8000:])
            raise
        scenarios = [
            ("1x5s", 1, speechlike([5.0], seed=3)),
            ("mixed", 64, speechlike(mixed_seconds(seed=5), seed=5)),
            ("10s", 64, speechlike([10.0] * 64, seed=6)),
        ]
        for name, concurrency, clips in scenarios:
            load_test(server.grpc_url, clips, concurrency, seconds=3.0, warmup=2.0)  # graphs, allocator
            before = step_statistics(server.grpc_url)
            result = {
                "workload": name,
                "acoustic_instances": instances,
                **load_test(server.grpc_url, clips, concurrency, duration, 1.0),
            }
            result["steps"] = step_delta(before, step_statistics(server.grpc_url))
            print(
                f"  {name:<6} c={concurrency:<3} {result['rtf']:8.0f}× real time"
                f"  p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms"
                f"  ({result['requests']} requests)\n    {result['steps']}"
            )
            results["scenarios"].append(result)
        results["perf_analyzer"] = perf_breakdown(
            server.grpc_url, speechlike(mixed_seconds(seed=5), seed=5)[:24], workdir
        )
        results["gpu_memory_gib"] = (
            torch.cuda.mem_get_info()[1] / 2**30 - torch.cuda.mem_get_info()[0] / 2**30
        )
    results["server_log_tail"] = log.read_text()[-3000:]
    return results


# ---------------------------------------------------------------- entry point


def environment(torch) -> dict:
    import transformers

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpu_memory_gib": props.total_memory / 2**30,
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "time": dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S"),  # orders runs of one date
        "tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = large_config()
    reference = Wav2Vec2ForCTC(config).eval()
    state = copy.deepcopy(reference.state_dict())
    results: dict = {
        "command": " ".join(["python -m vaani.benchmarks.gpu_benchmark", *sys.argv[1:]]),
        "commit": args.commit,
        "environment": environment(torch),
        "model": {
            "parameters": sum(p.numel() for p in reference.parameters()),
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "heads": config.num_attention_heads,
            "ffn": config.intermediate_size,
            "flops_per_audio_second": flops_per_audio_second(config),
        },
    }
    del reference
    ceiling = matmul_ceiling(torch)
    results["ceiling_flops"] = ceiling
    print(
        f"{results['environment']['gpu']}: BF16 matrix product {ceiling / 1e12:.0f} TFLOP/s; "
        f"model {results['model']['parameters'] / 1e6:.1f} M parameters, "
        f"{results['model']['flops_per_audio_second'] / 1e9:.1f} GFLOP per audio-second"
    )
    loads = workloads()
    results["workload_seconds"] = loads
    if not args.skip_engine:
        results["packed_check"] = packed_check(torch, config)
        results["normalization"] = normalization_suite(
            torch, config, Timer(torch, budget_s=0.2, min_reps=10, max_reps=50), loads
        )
        results.update(engine_suite(torch, config, state, Timer(torch, budget_s=args.budget), loads))
    if args.eval_file and args.eval_model:
        try:
            bundled = bundled_accuracy(torch, Path(args.eval_model), Path(args.eval_file), args.eval_limit)
            results["bundled_accuracy"] = bundled
            same = sum(r == e for r, e in zip(bundled["reference"], bundled["engine"]))
            print(f"bundled test set: {same}/{len(bundled['engine'])} engine transcripts equal FP32's")
        except Exception as error:  # the speed numbers stand without it
            results["bundled_error"] = f"{type(error).__name__}: {error}"
            print(f"bundled test set failed: {results['bundled_error']}")
    if not args.skip_server:
        torch.cuda.empty_cache()
        workdir = Path(tempfile.mkdtemp(prefix="vaani-gpubench-"))
        try:
            runs = [
                served_suite(torch, config, state, workdir / str(n), args.duration, args.server_pythonpath, n)
                for n in args.acoustic_instances
            ]
            results["served"] = {
                "settings": [run["settings"] for run in runs],
                "perf_analyzer": [run["perf_analyzer"] for run in runs],
                "scenarios": [scenario for run in runs for scenario in run["scenarios"]],
                "gpu_memory_gib": max(run.get("gpu_memory_gib", 0.0) for run in runs),
            }
        except Exception as error:  # the engine numbers stand without the server's
            results["served_error"] = f"{type(error).__name__}: {error}"
            print(f"(d) failed: {results['served_error']}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed repeats per case")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per scenario")
    parser.add_argument("--skip-server", action="store_true", help="leave out (d), the served ensemble")
    parser.add_argument(
        "--skip-engine",
        action="store_true",
        help="leave out (a)-(c), the engine alone and its eager baselines: the served ensemble only",
    )
    parser.add_argument(
        "--acoustic-instances",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="(d) once per count of wav2vec2 instances on the GPU, e.g. 1,2",
    )
    parser.add_argument("--server-pythonpath", default="", help="put first on the server's PYTHONPATH")
    parser.add_argument(
        "--commit",
        default="",
        help="the commit measured, as recorded with the results (gpu-machine.sh: git, or $COMMIT)",
    )
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="recorded runs: each workload is compared with the newest one there (regression guard)",
    )
    parser.add_argument(
        "--eval-file", help="bundled test set as .npz (see vaani.benchmarks.gpu_report prepare-eval)"
    )
    parser.add_argument("--eval-model", help="the bundled model directory")
    parser.add_argument("--eval-limit", type=int, default=160, help="utterances of the test set used")
    parser.add_argument(
        "--prepare-eval", type=Path, metavar="MANIFEST", help="only pack MANIFEST into --eval-file"
    )
    args = parser.parse_args(argv)
    if args.prepare_eval:
        prepare_eval(args.prepare_eval, Path(args.eval_file), args.eval_limit)
        return 0
    results = run(args)
    from vaani.benchmarks.gpu_report import regression_check, write_report

    # Before writing: with --out inside --baseline-dir this run must not be its own baseline.
    results["regression_check"] = regression_check(results, args.baseline_dir)
    paths = write_report(results, args.out)
    print("wrote " + ", ".join(str(p) for p in paths))
    print("\n".join(["against the newest recorded run:", *results["regression_check"]["lines"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
