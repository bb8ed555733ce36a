"""Where a `torch` engine call's wall time goes beyond its kernels, BF16 and FP8, on a GPU.

Why: the engine benchmark (`gpu_engine_suite`) says how fast a call is and which kernels it runs; this
says what the call waits for besides them: the host's request checks and audio copy before the GPU
starts, the launches, and the packed forward alone, eager and replayed as one CUDA graph (equal
times mean the forward is GPU-bound, not launch-bound). It also profiles the FP8 engine's kernels. Same
shape, clips and harness (`engine_runner`) as the engine benchmark; run on the GPU machine as
`gpu-machine.sh` installs things:

    python3 -m vaani.benchmarks.engine_phases --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Wav2Vec2ForCTC

from vaani.benchmarks.gpu_engine_suite import engine_runner
from vaani.benchmarks.gpu_timing import Timer, kernel_profile
from vaani.benchmarks.gpu_workloads import large_config, speechlike, workloads
from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions
from vaani.serving.engines.torch_packing import DevicePacking, Packing

PHASES = ("_checked", "_packed_audio", "to_host")  # the engine's host steps, timed by wrapping


def wall_ms(run: Callable[[], object], repeats: int = 10) -> float:
    """Mean wall time of ``run`` after three warm-ups, the GPU synchronised at both ends."""
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def event_ms(run: Callable[[], object]) -> float:
    """Median GPU time of ``run`` by CUDA events after warm-up (the GPU benchmark's `Timer`)."""
    return Timer(torch, budget_s=0.5, min_reps=10)(run, warmup=3)["ms"]


def host_phases(engine: TorchEngine, run: Callable[[], object], repeats: int = 10) -> dict[str, float]:
    """Mean host time per call in each of `PHASES` and in launching the packed forward (no syncs added)."""
    spent: dict[str, float] = {}

    def timed(name: str, method: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = method(*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + (time.perf_counter() - start) * 1000
            return result

        return wrapper

    for name in PHASES:
        setattr(engine, name, timed(name, getattr(engine, name)))
    engine.ctc.packed = timed("packed forward (launches)", engine.ctc.packed)
    try:  # the caller has warmed the engine up on this workload
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        torch.cuda.synchronize()
        total = (time.perf_counter() - start) / repeats * 1000
    finally:
        for name in PHASES:
            delattr(engine, name)
        del engine.ctc.packed
    return {"total_ms": total, **{name: ms / repeats for name, ms in spent.items()}}


def packed_forward(engine: TorchEngine, clips: list) -> dict[str, float]:
    """The packed forward alone on device audio: eager, and replayed as one CUDA graph."""
    with torch.inference_mode():
        packing = Packing(tuple(len(c) for c in clips), engine.ctc.kernels, engine.ctc.strides)
        index = DevicePacking.of(packing, torch.device("cuda"), gap=engine.ctc.pos_conv.conv.padding[0])
        audio = torch.randn(packing.total_samples, device="cuda")

        def forward():
            return engine.ctc.packed(audio, packing, index)

        eager = event_ms(forward)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            forward()
        return {"forward_eager_ms": eager, "forward_graph_ms": event_ms(graph.replay)}


def measure() -> dict:
    torch.manual_seed(0)
    config = large_config()
    with torch.device("cuda"):
        state = Wav2Vec2ForCTC(config).state_dict()
    loads, report = workloads(), {}
    for label, options in (("bf16", TorchEngineOptions()), ("fp8", TorchEngineOptions(fp8=True))):
        with torch.device("cuda"):
            model = Wav2Vec2ForCTC(config)
        model.load_state_dict(state)
        engine = TorchEngine(model.eval(), "cuda", options)
        rows: dict = {"fp8_unavailable": engine.ctc.fp8_unavailable}
        for name in ("32x10s", "mixed", "1x5s"):
            clips = speechlike(loads[name], seed=1)
            run = engine_runner(torch, engine, clips, 0.35)
            ms = wall_ms(run)
            row = {"wall_ms": ms, "rtf": sum(loads[name]) / ms * 1000}
            if name != "1x5s":  # 1 × 5 s replays a padded CUDA graph: no packed phases
                row.update(phases=host_phases(engine, run), **packed_forward(engine, clips))
            elif engine.graphs is not None:
                # The graph's replay alone against the call's wall time: what the host adds around it.
                key = engine.graphs.key(len(clips), max(len(c) for c in clips))
                row["graph_replay_ms"] = event_ms(engine.graphs.graphs[key].graph.replay)
                row["profile"] = kernel_profile(torch, run)
            rows[name] = row
            print(label, name, json.dumps(row), flush=True)
        if engine.ctc.fp8 is not None:
            clips = speechlike(loads["32x10s"], seed=1)
            rows["profile_32x10s"] = kernel_profile(torch, engine_runner(torch, engine, clips, 0.35))
        report[label] = rows
        del engine, model
        torch.cuda.empty_cache()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Host phases and the packed forward of the torch engine, BF16 and FP8 (needs a GPU).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for engine_phases.json")
    args = parser.parse_args(argv)
    report = measure()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine_phases.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
