"""`vaani serve --engine torch` on a CUDA machine, checked as a user would: against the FP32 reference.

Run by benchmarks/gpu-serve-check.sh with the server up on localhost. Transcribes the bundled
test-set clips one at a time and from 32 concurrent clients, compares every transcript with the
FP32 PyTorch reference on the CPU, and runs `vaani transcribe` on two WAV files. The benchmark's
edit distance instead of jiwer: the GPU machine has no package index.
"""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from vaani.benchmarks.gpu_report import edit_distance
from vaani.build.hf_model import HfModel
from vaani.client.api import TranscriptionClient
from vaani.serving.contract import SAMPLING_RATE

GRPC = "127.0.0.1:8001"


def rates(references: list[str], hypotheses: list[str]) -> str:
    cer = sum(edit_distance(r, h) for r, h in zip(references, hypotheses)) / sum(map(len, references))
    words = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses))
    return f"CER {cer:.4f} WER {words / sum(len(r.split()) for r in references):.4f}"


def main(repo: Path, eval_file: Path) -> None:
    data = np.load(eval_file, allow_pickle=True)
    audio, offsets, texts = data["audio"], data["offsets"], [str(t) for t in data["texts"]]
    clips = [(audio[offsets[i] : offsets[i + 1]] / 32768.0).astype(np.float32) for i in range(len(texts))]
    served = [TranscriptionClient(GRPC, "grpc").transcribe(clip) for clip in clips]
    model = HfModel.load(repo / "models" / "tiny-hindi")
    reference = [model.transcribe([clip])[0] for clip in clips]
    identical = sum(a == b for a, b in zip(served, reference))
    print(
        f"utterances {len(clips)}; served {rates(texts, served)}; FP32 CPU reference "
        f"{rates(texts, reference)}; identical transcripts {identical}/{len(clips)}"
    )
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        concurrent = list(pool.map(lambda c: TranscriptionClient(GRPC, "grpc").transcribe(c), clips))
    wall = time.perf_counter() - start
    same = sum(a == b for a, b in zip(concurrent, served))
    throughput = sum(len(c) for c in clips) / SAMPLING_RATE / wall
    print(
        f"32 concurrent gRPC clients: {same}/{len(clips)} equal to one at a time; {throughput:.0f} audio-s/s"
    )
    for i in range(2):
        sf.write(f"/tmp/clip{i}.wav", clips[i], SAMPLING_RATE)
    command = [sys.executable, "-m", "vaani.cli", "transcribe", "/tmp/clip0.wav", "/tmp/clip1.wav", "--json",
               "--protocol", "grpc", "--url", GRPC]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    print("vaani transcribe:", result.returncode, result.stdout.strip(), result.stderr.strip()[-500:])
    print("references:", texts[:2])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
