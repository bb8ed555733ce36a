"""(d) of the GPU benchmark: the whole `asr` ensemble served by `tritonserver`, under gRPC load.

Why a module of its own: what a client gets is not what the engine alone does: Triton's queues,
dynamic batching, the python steps and the copies between them all take their share. This suite
builds a `torch`-engine repository of the same random model, starts the pip `tritonserver` with
the python-backend stub's paths set for this machine, loads it closed-loop from async gRPC clients
(spread over processes, so that the client is not the bottleneck) at concurrency 1 and 64, and
reads Triton's own per-step counters and perf_analyzer's per-step breakdown.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import site
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vaani.benchmarks.gpu_workloads import mixed_seconds, speechlike
from vaani.serving.contract import ACOUSTIC, AUDIO, ENSEMBLE, SAMPLING_RATE, TRANSCRIPT, version_dir


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
    install_steps(repository, settings.engine)
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


def step_statistics(url: str, phases: tuple[str, ...] = PHASES) -> dict[str, dict[str, float]]:
    """Triton's cumulative per-model counters: requests, executions (batches) and ms in each of ``phases``."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics(as_json=True)
    client.close()
    out = {}
    for model in stats.get("model_stats", []):
        infer = model.get("inference_stats", {})
        out[model["name"]] = {
            "requests": float(model.get("inference_count", 0)),
            "executions": float(model.get("execution_count", 0)),
            **{f"{phase}_ms": float(infer.get(phase, {}).get("ns", 0)) / 1e6 for phase in phases},
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
    torch,
    config,
    state: dict,
    workdir: Path,
    duration: float,
    server_pythonpath: str,
    instances: int = 1,
    changes: dict | None = None,
) -> dict:
    """(d): build a torch-engine repository, start tritonserver, load it at concurrency 1 and 64.

    ``instances`` `wav2vec2` instances share the GPU: while one does its host work (Triton's
    input copies, padding, results back), the other can keep the GPU busy.
    """
    from transformers import Wav2Vec2ForCTC

    from vaani.build.repository import RepositorySettings, served_models
    from vaani.supervision.process import Ports, TritonProcess

    model = Wav2Vec2ForCTC(config)
    model.load_state_dict(state)
    settings = RepositorySettings(
        engine="torch",
        max_batch_size=64,
        queue_delay_us=500,
        host_steps_queue_delay_us=0,  # a GPU engine is fast: the host steps go at once (docs/load-tests.md)
        python_instances=4,
        acoustic_instances=instances,
        max_audio_seconds=30.0,
    )
    settings = replace(settings, **(changes or {}))
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
        process = TritonProcess(
            repository, Ports(18000, 18001, 18002), log_file=log, models=served_models(settings.engine)
        )
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
    text = log.read_text()
    results["server_log_tail"] = text[-3000:]
    # What the engine said when it started (graphs captured or turned off), long before the tail.
    results["engine_messages"] = [line for line in text.splitlines() if line.startswith("torch engine:")]
    print("\n".join(f"  {line}" for line in results["engine_messages"]))
    return results
