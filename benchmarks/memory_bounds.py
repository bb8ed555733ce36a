"""Peak and retained memory of the `wav2vec2` step for one large legal request, per serving setting.

Why: one `[32, 480000]` request (32 utterances of 30 s) took the ONNX Runtime step to 6.9 GB and
it kept 6.5 GB afterwards. This measures, on the same machine and request, the step's resident
memory at its peak and after the request, and the request's wall time, for the settings that
bound it: `max_batch_audio_seconds` (audio per engine call) and `memory_arena` (ONNX Runtime's
CPU arena). The defaults in `RepositorySettings` are chosen from this table.

    python -m vaani.benchmarks.memory_bounds --output benchmarks/results/memory-bounds
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.serving.contract import ACOUSTIC, SAMPLING_RATE
from vaani.supervision.process import Ports, TritonProcess, free_port
from vaani.supervision.stubs import rss_mb, stubs_of

VARIANTS = {
    "no cap, arena (before)": {"max_batch_audio_seconds": 1e9, "memory_arena": True},
    "no cap, no arena": {"max_batch_audio_seconds": 1e9, "memory_arena": False},
    "cap 240 s, arena": {"max_batch_audio_seconds": 240.0, "memory_arena": True},
    "cap 240 s, no arena (default)": {"max_batch_audio_seconds": 240.0, "memory_arena": False},
    "cap 60 s, no arena": {"max_batch_audio_seconds": 60.0, "memory_arena": False},
}


def measure(model: str, work: Path, settings: RepositorySettings, rows: int, seconds: float) -> dict:
    repository = work / "repo"
    build(model, repository, settings, force=True)
    audio = (0.1 * np.random.default_rng(0).standard_normal((rows, round(seconds * SAMPLING_RATE)))).astype(
        np.float32
    )
    with TritonProcess(
        repository, Ports(free_port(), free_port(), free_port()), log_file=work / "log"
    ) as server:
        server.wait_ready()
        (acoustic,) = [s for s in stubs_of(server.process.pid) if s.model == ACOUSTIC]
        idle = rss_mb(acoustic.pid)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak.append(rss_mb(acoustic.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        client = TranscriptionClient(server.http_url)
        start = time.monotonic()
        client.transcribe_batch(audio)
        wall = time.monotonic() - start
        done.set()
        sampler.join()
        time.sleep(1.0)
        after = rss_mb(acoustic.pid)
        client.close()
    return {
        "idle_mb": round(idle),
        "peak_mb": round(max(peak)),
        "after_mb": round(after),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.memory_bounds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="models/tiny-hindi")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--output", type=Path, default=Path("results/memory-bounds"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    # One window a row (no cutting), so the request reaches the acoustic model as sent.
    base = RepositorySettings(
        max_batch_size=args.rows, threads=0, max_audio_seconds=args.seconds, window_seconds=args.seconds
    )
    results = {}
    for name, fields in VARIANTS.items():
        with tempfile.TemporaryDirectory() as work:
            results[name] = measure(args.model, Path(work), replace(base, **fields), args.rows, args.seconds)
        print(name, results[name], flush=True)
    conditions = {
        "model": args.model,
        "request": f"[{args.rows}, {round(args.seconds * SAMPLING_RATE)}] FP32 "
        f"({args.rows} × {args.seconds:g} s)",
        "engine": "onnxruntime, CPU",
        "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = [
        f"# Memory of the wav2vec2 step for one {conditions['request']} request",
        "",
        ", ".join(f"{k}: {v}" for k, v in conditions.items()),
        "",
        "| setting | idle RSS (MB) | peak RSS (MB) | RSS after (MB) | request wall time (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['idle_mb']} | {r['peak_mb']} | {r['after_mb']} | {r['wall_s']} |"
            for name, r in results.items()
        ),
    ]
    (args.output / "memory.md").write_text("\n".join(lines) + "\n")
    (args.output / "memory.json").write_text(
        json.dumps({"conditions": conditions, "results": results}, indent=1)
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
