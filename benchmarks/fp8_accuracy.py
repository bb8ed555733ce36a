"""The `torch` engine's FP8 matrix products against its FP32 on the bundled model's transcripts, on a CPU.

Why on a CPU: FP8 is a precision of its own and every precision is compared on transcripts, in
domain and on unseen words (the held-out and OOV sets), before anyone times it. The engine's FP8
arithmetic (e4m3 values, one scale per token and per output channel, `torch._scaled_mm`) is the same
on a CPU, where its kernels run as PyTorch operations; the GPU benchmark decodes the bundled set with
the Triton kernels too (`gpu_engine_suite.bundled_accuracy`). Greedy decoding of each utterance alone.

    python -m vaani.benchmarks.fp8_accuracy --model models/tiny-hindi \
        --manifest data/tiny-hindi-test/test.jsonl --manifest data/tiny-hindi-oov/test.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vaani.audio import load_audio
from vaani.build.hf_model import HfModel
from vaani.manifest import read_manifest
from vaani.scoring import score
from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions


def transcripts(engine: TorchEngine, hf: HfModel, audio: list[np.ndarray]) -> list[str]:
    """Greedy transcripts of each clip alone through ``engine`` (FP32 activations on the CPU)."""
    texts = []
    for clip in audio:
        values, mask = hf.features([clip])
        logits = engine(values, mask)
        texts.append(hf.decode(np.asarray(logits[0, : hf.spec_frames(len(clip))]).argmax(-1)))
    return texts


def compare(model: Path, manifest: Path, limit: int) -> dict:
    """WER/CER of FP32 and FP8 against the truth, and how many transcripts FP8 moves."""
    entries = read_manifest(manifest)[:limit]
    audio = [load_audio(entry.audio_path) for entry in entries]
    truth = [entry.text for entry in entries]
    hf = HfModel.load(model)
    results: dict = {"manifest": str(manifest), "utterances": len(entries)}
    texts = {}
    for label, fp8 in (("fp32", False), ("fp8", True)):
        engine = TorchEngine.load(model, "cpu", TorchEngineOptions(dtype="float32", fp8=fp8))
        texts[label] = transcripts(engine, hf, audio)
        scores = score(truth, texts[label])
        results[label] = {"wer": scores.wer, "cer": scores.cer}
    results["moved"] = sum(a != b for a, b in zip(texts["fp32"], texts["fp8"]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Transcripts of the torch engine with FP8 matrix products against FP32 (CPU).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--model", type=Path, required=True, help="a model folder in save_pretrained layout")
    parser.add_argument(
        "--manifest", type=Path, action="append", required=True, help="a NeMo-style manifest (repeatable)"
    )
    parser.add_argument("--limit", type=int, default=400, help="at most this many utterances per manifest")
    parser.add_argument("--output", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    results = [compare(args.model, manifest, args.limit) for manifest in args.manifest]
    for r in results:
        print(
            f"{r['manifest']}: {r['utterances']} utterances, FP32 WER {r['fp32']['wer']:.2%} CER "
            f"{r['fp32']['cer']:.2%}; FP8 WER {r['fp8']['wer']:.2%} CER {r['fp8']['cer']:.2%}; "
            f"{r['moved']} transcripts moved"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
