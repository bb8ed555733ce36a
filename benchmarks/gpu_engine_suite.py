"""(a)-(c) of the GPU benchmark: eager PyTorch and the `torch` engine alone, timed and checked.

Why a module of its own: the engine is measured without a server, as the `wav2vec2` step calls it
(host requests in, host logits out), against eager Hugging Face FP32 and BF16 on the same
workloads, with its variants each changing one knob; and it is checked before and after the timing
(packed execution against FP32 at the start, logits and bundled-test-set transcripts against FP32).
The served ensemble is the other suite (`gpu_served_suite`); this one says what the engine can do
when nothing else is in the way.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vaani.benchmarks.engine_alternatives import (
    ALTERNATIVES,
    COPY_VARIANT,
    GELU_VARIANT,
    HOST_CHECK_VARIANT,
    PACKED_EAGER_VARIANT,
    POSITIONAL_VARIANT,
    RESIDUAL_VARIANT,
)
from vaani.benchmarks.gpu_normalization_suite import BEFORE_VARIANT, packed_normalization
from vaani.benchmarks.gpu_timing import Timer, kernel_profile
from vaani.benchmarks.gpu_workloads import speechlike
from vaani.serving.acoustic import conv_frames

# The variants whose logits are compared with FP32 eager.
LOGITS_CHECKED = (
    "engine",
    "engine, padded (before packing)",
    "engine FP16",
    "engine BF16",
    BEFORE_VARIANT,
    RESIDUAL_VARIANT,
    GELU_VARIANT,
    POSITIONAL_VARIANT,
    PACKED_EAGER_VARIANT,
    "engine FP8 matrix products",
)


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


def twice(call: Callable[..., Any], *args: object) -> Any:
    """``call``'s second result: a packed run's first call of its bucket captures the transformer's graph
    and answers eagerly, so only the second checks the graph (`torch_graphs`)."""
    call(*args)
    return call(*args)


def logit_accuracy(torch, reference_model, engine, seconds: list[float]) -> dict:
    """Engine (half precision) vs FP32 eager on one padded batch of mixed lengths.

    Through the engine's padded interface (what the accuracy gate calls), which runs packed
    where the engine serves packed.
    """
    clips = speechlike(seconds, seed=7)
    values, mask = _padded(torch, clips)
    with torch.inference_mode():
        expected = reference_model(values, attention_mask=mask).logits.float()
        got = twice(engine.forward, values, mask.sum(1).tolist())
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


def bundled_accuracy(torch, model_dir: Path, eval_file: Path, limit: int) -> dict:
    """Transcripts of the engine (BF16, and with FP8 matrix products) and of the FP32 reference on the
    bundled test set."""
    from vaani.build.hf_model import HfModel
    from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions

    data = np.load(eval_file, allow_pickle=False)
    offsets, texts = data["offsets"], [str(t) for t in data["texts"]][:limit]
    audio = [
        data["audio"][offsets[i] : offsets[i + 1]].astype(np.float32) / 32768.0 for i in range(len(texts))
    ]
    hf = HfModel.load(model_dir)
    hf.model.cuda()
    engine = TorchEngine.load(model_dir, "cuda")
    fp8 = TorchEngine.load(model_dir, "cuda", TorchEngineOptions(fp8=True))
    candidate_fp8: list[str] = []
    spec = hf.spec()
    reference, candidate = [], []
    for start in range(0, len(audio), 16):
        chunk = audio[start : start + 16]
        values, mask = hf.features(chunk)
        with torch.inference_mode():
            ids_ref = hf.model(torch.from_numpy(values).cuda(), attention_mask=torch.from_numpy(mask).cuda())
            ids_ref = ids_ref.logits.argmax(-1).cpu().numpy()
        # Twice: a run's first call of its bucket captures a graph and answers eagerly; the second replays it.
        got, got_fp8 = twice(engine, values, mask).argmax(-1), twice(fp8, values, mask).argmax(-1)
        for row, clip in enumerate(chunk):
            frames = spec.frames(len(clip))
            reference.append(hf.decode(ids_ref[row, :frames]))
            candidate.append(hf.decode(got[row, :frames]))
            candidate_fp8.append(hf.decode(got_fp8[row, :frames]))
    return {
        "model": str(model_dir),
        "truth": texts,
        "reference": reference,
        "engine": candidate,
        "engine_fp8": candidate_fp8 if fp8.ctc.fp8 is not None else [],
        "fp8_unavailable": fp8.ctc.fp8_unavailable,
    }


def engine_suite(torch, config, state: dict, timer: Timer, loads: dict[str, list[float]]) -> dict:
    """(a), (b), (c) at every workload, plus accuracy and the profile."""
    from transformers import Wav2Vec2ForCTC

    from vaani.benchmarks.normalization_alternatives import normalize_packed_scatter
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
        BEFORE_VARIANT: default,
        RESIDUAL_VARIANT: default,
        HOST_CHECK_VARIANT: default,
        COPY_VARIANT: default,
        GELU_VARIANT: default,
        POSITIONAL_VARIANT: default,
        PACKED_EAGER_VARIANT: default,
        "engine FP8 matrix products": replace(default, fp8=True),
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
        if options.fp8 and engine.ctc.fp8 is None:
            print(f"  not timed: {engine.ctc.fp8_unavailable}")
            accuracy[label] = {"unavailable": engine.ctc.fp8_unavailable}
            continue
        if label == BEFORE_VARIANT:
            swapped = packed_normalization(normalize_packed_scatter)
        else:
            swapped = ALTERNATIVES[label](engine) if label in ALTERNATIVES else contextlib.nullcontext()
        with swapped:
            for name in loads:
                run = engine_runner(torch, engine, clips[name], max_padding=0.35)
                rows[name].append(_measure(torch, timer, label, run, audio[name]))
            # Inside the `with`, so that the replaced choice's logits are checked as the engine's are.
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
