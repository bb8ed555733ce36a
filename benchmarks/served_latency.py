"""The fixed cost of one served `asr` request: where each millisecond goes at concurrency 1.

Why: the engine alone runs a 5 s clip in a fraction of what a client waits for it served (issue 22
item 4: 2.44 ms against a p50 of 11.9 ms on an H200). The difference is the server's: each step's
dynamic-batching delay, the python backend's IPC, copies, the `wav2vec2` turns thread's hand-off,
the ensemble and gRPC. This module measures it on a model small enough that the engine is a small
part: the same clip through

- **in process**: `preprocess`'s work (cut, normalize, frame loudness), the engine, greedy decoding,
  each timed, no server;
- **served**: `asr` over gRPC, one request at a time, with Triton's statistics of every model read
  before and after: per request, each step's queue, compute_input, compute_infer (``execute()``),
  compute_output and its whole time in the step (``success``), and the ensemble's own total;
- **under load**: closed-loop gRPC at the given concurrencies on the GPU benchmark's mixed 2-15 s
  lengths: requests a second and each step's mean batch (what a change to batching must keep).

Each variant is a repository built from the same model with some `RepositorySettings` changed
(``--variant NAME=field=value,…``), optionally serving the code of another commit (``--code
NAME=COMMIT``); all variants' servers run side by side and are measured in turn, repeat by repeat.

    python -m vaani.benchmarks.served_latency --variant default= --variant nodelay=queue_delay_us=0 \
        --output benchmarks/results/served-latency-cpu-2026-12-05
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vaani.benchmarks.decoder_step import TESTSET, clips, sentences
from vaani.benchmarks.gpu_served_suite import load_test, step_statistics
from vaani.benchmarks.gpu_workloads import mixed_seconds
from vaani.build.repository import RepositorySettings, settings_changes
from vaani.serving.contract import AUDIO, ENSEMBLE, ENSEMBLE_STEPS, SAMPLING_RATE, TRANSCRIPT, version_dir
from vaani.supervision.process import Ports, TritonProcess, free_port

PHASES = ("queue", "compute_input", "compute_infer", "compute_output", "success")
MODELS = (ENSEMBLE, *ENSEMBLE_STEPS)


def settings_of(overrides: str, base: RepositorySettings) -> RepositorySettings:
    """``field=value,…`` applied to ``base`` (`settings_changes`)."""
    return dataclasses.replace(base, **settings_changes(overrides))


def per_request(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Per model over one load: ms per request in each phase, and requests per execution."""
    out = {}
    for name in MODELS:
        now, then = after.get(name), before.get(name, {})
        if now is None:
            continue
        requests = now["requests"] - then.get("requests", 0.0)
        executions = now["executions"] - then.get("executions", 0.0)
        if requests <= 0:
            continue
        out[name] = {
            "mean_batch": round(requests / executions, 2) if executions else 0.0,
            **{f"{p}_ms": round((now[f"{p}_ms"] - then.get(f"{p}_ms", 0.0)) / requests, 3) for p in PHASES},
        }
    return out


def one_at_a_time(url: str, clip: np.ndarray, count: int) -> list[float]:
    """Client wall time (ms) of ``count`` requests of ``clip`` to `asr`, each sent when the last returned."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    audio = clip[None, :]
    latencies = []
    for _ in range(count):
        tensor = grpcclient.InferInput(AUDIO, list(audio.shape), "FP32")
        tensor.set_data_from_numpy(audio)
        sent = time.perf_counter()
        client.infer(ENSEMBLE, [tensor], outputs=[grpcclient.InferRequestedOutput(TRANSCRIPT)])
        latencies.append((time.perf_counter() - sent) * 1e3)
    client.close()
    return latencies


def transcript_of(url: str, clip: np.ndarray) -> str:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput(AUDIO, [1, clip.size], "FP32")
    tensor.set_data_from_numpy(clip[None, :])
    answer = client.infer(ENSEMBLE, [tensor]).as_numpy(TRANSCRIPT).reshape(-1)[0].decode("utf-8")
    client.close()
    return answer


def in_process(repository: Path, settings: RepositorySettings, clip: np.ndarray, count: int) -> dict:
    """The served steps' work on ``clip`` without a server (same engine file and threads): median ms of
    each part over ``count`` runs, and the transcript."""
    from vaani.serving.acoustic import AcousticSpec
    from vaani.serving.alignment import frame_rms
    from vaani.serving.contract import ACOUSTIC
    from vaani.serving.ctc import GreedyDecoder, transcript
    from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine
    from vaani.serving.preprocessing import normalize

    folder = version_dir(repository, ACOUSTIC)
    spec = AcousticSpec.load(folder / "acoustic.json")
    engine = OnnxRuntimeEngine(folder / "model.onnx", threads=settings.threads)
    engine.best_tokens = True
    windowing, decoder = settings.windowing(spec), GreedyDecoder(spec)
    parts: dict[str, list[float]] = {"preprocess": [], "engine": [], "decode": []}
    text = ""
    for _ in range(count + 3):  # the first runs warm ONNX Runtime
        t0 = time.perf_counter()
        windowing.windows(clip[None, :])
        values = normalize(clip[None, :])
        frame_rms(clip, spec.frames(clip.size), spec.samples_per_frame)
        t1 = time.perf_counter()
        tokens = engine.run_groups([values], [[clip.size]], spec.frames, settings.max_padding)[0]
        t2 = time.perf_counter()
        text = transcript(decoder.words_ids(np.asarray(tokens)[0]))
        t3 = time.perf_counter()
        for part, ms in zip(parts, ((t1 - t0), (t2 - t1), (t3 - t2))):
            parts[part].append(ms * 1e3)
    out = {part: round(statistics.median(v[3:]), 3) for part, v in parts.items()}
    out["total"] = round(sum(out.values()), 3)
    out["transcript"] = text
    return out


def measure(server: TritonProcess, clip: np.ndarray, count: int) -> dict:
    one_at_a_time(server.grpc_url, clip, 10)  # warm
    before = step_statistics(server.grpc_url, PHASES)
    latencies = one_at_a_time(server.grpc_url, clip, count)
    steps = per_request(before, step_statistics(server.grpc_url, PHASES))
    return {
        "requests": count,
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p90_ms": round(float(np.percentile(latencies, 90)), 3),
        "mean_ms": round(float(np.mean(latencies)), 3),
        "steps": steps,
    }


def under_load(server: TritonProcess, audio: list[np.ndarray], concurrency: int, seconds: float) -> dict:
    before = step_statistics(server.grpc_url, PHASES)
    result = load_test(server.grpc_url, audio, concurrency, seconds, warmup=1.0)
    steps = per_request(before, step_statistics(server.grpc_url, PHASES))
    return {
        "concurrency": concurrency,
        "requests_per_s": round(result["throughput_rps"], 2),
        "rtf": round(result["rtf"], 1),
        "p50_ms": round(result["p50_ms"], 1),
        "p99_ms": round(result["p99_ms"], 1),
        "mean_batch": {name: s["mean_batch"] for name, s in steps.items()},
    }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def breakdown(result: dict) -> list[str]:
    """Medians over repeats, per variant: client p50, each step's ms per request (its queue and its
    whole time in the step), the ensemble's total and what lies outside the steps."""
    engine = _median([r["engine"] for r in result["in_process"]])
    work = _median([r["total"] for r in result["in_process"]])
    lines = [
        f"In process (median of the repeats): engine {engine} ms, preprocess + engine + decode {work} ms.",
        "",
        "| variant | client p50 | client mean | asr (in Triton) | "
        + " | ".join(f"{step} queue / total" for step in ENSEMBLE_STEPS)
        + " | asr − steps | client − asr |",
        "| --- |" + " ---: |" * (5 + len(ENSEMBLE_STEPS)),
    ]
    for name in result["variants"]:
        mine = [r for r in result["runs"] if r["variant"] == name and "steps" in r]
        if not mine:
            continue
        step = {
            (model, phase): _median([r["steps"][model][f"{phase}_ms"] for r in mine])
            for model in MODELS
            for phase in PHASES
        }
        asr = step[ENSEMBLE, "success"]
        inside = sum(step[model, "success"] for model in ENSEMBLE_STEPS)
        cells = " | ".join(f"{step[m, 'queue']} / {step[m, 'success']}" for m in ENSEMBLE_STEPS)
        lines.append(
            f"| {name} | {_median([r['p50_ms'] for r in mine])} | {_median([r['mean_ms'] for r in mine])} | "
            f"{asr} | {cells} | {round(asr - inside, 2)} | "
            f"{round(_median([r['mean_ms'] for r in mine]) - asr, 2)} |"
        )
    return lines


def throughput(result: dict) -> list[str]:
    """Per variant and concurrency: requests a second (median, range) and each step's mean batch."""
    lines = [
        "| variant | concurrency | requests/s (median, range) | p50 ms | p99 ms | "
        + " | ".join(f"{step} batch" for step in ENSEMBLE_STEPS)
        + " |",
        "| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(ENSEMBLE_STEPS),
    ]
    loads = sorted({r["concurrency"] for r in result["runs"] if "concurrency" in r})
    for concurrency in loads:
        for name in result["variants"]:
            mine = [r for r in result["runs"] if r["variant"] == name and r.get("concurrency") == concurrency]
            rates = [r["requests_per_s"] for r in mine]
            batches = " | ".join(
                str(_median([r["mean_batch"].get(step, 0.0) for r in mine])) for step in ENSEMBLE_STEPS
            )
            lines.append(
                f"| {name} | {concurrency} | {_median(rates)} ({min(rates)}–{max(rates)}) | "
                f"{_median([r['p50_ms'] for r in mine])} | {_median([r['p99_ms'] for r in mine])} | "
                f"{batches} |"
            )
    return lines


MICRO = "micro-random"


def micro_model(directory: Path) -> Path:
    """A wav2vec2 CTC of the bundled model's family, one layer wide enough to run (random weights): its
    engine takes about a millisecond for 5 s, so what a request costs beyond it is the server's."""
    from vaani.recipe.tiny_model import save_processor, tiny_config

    if (directory / "config.json").exists():
        return directory
    import torch
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = tiny_config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    Wav2Vec2ForCTC(config).save_pretrained(str(directory), safe_serialization=True)
    save_processor(directory)
    return directory


def _pairs(values: list[str]) -> dict[str, str]:
    return dict(v.partition("=")[::2] for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.served_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", default="models/tiny-hindi", help=f"a model folder or name, or {MICRO} (built here)"
    )
    parser.add_argument("--manifest", type=Path, default=TESTSET)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=field=value,… : a repository with these RepositorySettings changed (NAME= for none)",
    )
    parser.add_argument(
        "--code", action="append", default=[], help="NAME=COMMIT: that variant runs COMMIT's steps"
    )
    parser.add_argument(
        "--base",
        default="decoder=greedy,quantize=false",
        help="field=value,… all variants start from (greedy as on a GPU; FP32)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="the clip's length")
    parser.add_argument("--requests", type=int, default=300, help="one at a time, per variant and repeat")
    parser.add_argument("--load", default="8,16", help="concurrencies of the throughput check ('' for none)")
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("results/served-latency"))
    parser.add_argument("--report", type=Path, help="only write the tables of this served_latency.json")
    args = parser.parse_args(argv)
    if args.report:
        return report(json.loads(args.report.read_text(encoding="utf-8")), args.report.parent)
    from vaani.benchmarks.fairness import baseline_repository
    from vaani.build.pipeline import build

    work = args.output / "work"
    base = settings_of(args.base, RepositorySettings())
    variants = {name: settings_of(changes, base) for name, changes in _pairs(args.variant).items()}
    codes = _pairs(args.code)
    clip = clips(sentences(args.manifest), [args.seconds])[0]
    mixed = clips(sentences(args.manifest), mixed_seconds(seed=5))
    repositories = {}
    model = str(micro_model(work / MICRO)) if args.model == MICRO else args.model
    for name, settings in variants.items():
        repositories[name] = build(model, work / name, settings)
        if name in codes:
            repositories[name] = baseline_repository(repositories[name], codes[name], work / f"{name}-code")
    servers = {
        name: TritonProcess(
            repository,
            Ports(free_port(), free_port(), free_port()),
            log_file=work / f"{name}.log",
            models=(ENSEMBLE, *ENSEMBLE_STEPS),
        )
        for name, repository in repositories.items()
    }
    runs: list[dict] = []
    engine_runs: list[dict] = []
    texts = {}
    try:
        for server in servers.values():
            server.wait_ready()
        texts = {name: transcript_of(s.grpc_url, clip) for name, s in servers.items()}
        concurrencies = [int(c) for c in args.load.split(",") if c]
        first = next(iter(variants))
        for repeat in range(1, args.repeats + 1):
            engine_runs.append(in_process(repositories[first], variants[first], clip, 50))
            print(json.dumps({"in_process": engine_runs[-1]}, ensure_ascii=False), flush=True)
            # Each repeat starts with the next variant: a machine whose other load rises or falls
            # during a repeat favours none of them.
            names = list(servers)
            turn = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in turn:
                runs.append(
                    {"variant": name, "repeat": repeat, **measure(servers[name], clip, args.requests)}
                )
                print(json.dumps(runs[-1]), flush=True)
            for concurrency in concurrencies:
                for name in turn:
                    server = servers[name]
                    loaded = under_load(server, mixed, concurrency, args.load_seconds)
                    runs.append({"variant": name, "repeat": repeat, **loaded})
                    print(json.dumps(runs[-1]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    result = {
        "command": "python -m vaani.benchmarks.served_latency "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "clip_seconds": round(clip.size / SAMPLING_RATE, 3),
        "variants": {name: dataclasses.asdict(s) for name, s in variants.items()},
        "code": codes,
        "transcripts": texts,
        "in_process": engine_runs,
        "runs": runs,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "served_latency.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return report(result, args.output)


def report(result: dict, folder: Path) -> int:
    """``served_latency.md`` in ``folder``: the breakdown and the throughput tables, also printed."""
    table = "\n".join([*breakdown(result), "", *throughput(result), ""])
    (folder / "served_latency.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
