"""The greedy `ctc_decoder` step alone, served: what one of its executions costs, from outside the step.

Why: with turns (`vaani.serving.steps.turns`) the step's ``execute()`` only admits requests and a
thread decodes and answers them, so Triton's ``compute_infer`` for `ctc_decoder` times admission,
not the decoding: "ms per execution" read from it alone claims more than it measures. Here the step
is called directly, with the inputs the ensemble gives it, and three numbers are read side by side:

- **step CPU per execution**: the CPU time of the step's stub processes (``/proc/<pid>/schedstat``:
  both threads, admission, decoding, answering, its side of the IPC with Triton) over the load,
  divided by Triton's count of the step's executions: what the step costs, whatever thread spends it.
- **admission per execution**: Triton's ``compute_infer`` of the step per execution (``execute()``'s
  wall time), as the GPU report reads it;
- **latency**: client wall time per request (gRPC, Triton's queue and the step), at each concurrency.
  Called directly in a closed loop, a client's next request can reach Triton before the step's
  instance is released (an answer returned by ``execute()`` goes out first); Triton's dynamic
  batcher then sometimes sleeps its default 500 ms before it sees the instance free. Such requests
  are counted (``answered_after_400_ms``): they are this way of calling the step, not its work, and
  through `asr` none were seen (its next request to the step comes from another request's `wav2vec2`).

Inputs as `asr` makes them: held-out sentences (`make testset`) joined with 0.25 s pauses into
clips of 2-15 s (the GPU benchmark's mixed lengths); each clip goes once through `preprocess` and
`wav2vec2`, called directly, and the step gets their ``FRAME_TOKENS``, ``NUM_SAMPLES``,
``WINDOW_LAYOUT`` and ``FRAME_RMS``. With ``--baseline-commit`` (or ``--baseline-code``, a folder
holding its `vaani`, where git is not at hand) a second server runs that serving code for the step
alone, and the two alternate repeat by repeat; every variant's transcripts are checked equal to each
other and to `asr`'s.

    python -m vaani.benchmarks.decoder_step --baseline-commit d6278d1 \
        --output benchmarks/results/ctc-decoder-cpu-2026-12-05

On the GPU machine (no package index, numpy 2, no git): build with ``vaani build --engine torch
--decoder greedy`` and pass ``--repository``, ``--manifest`` the carried ``eval.npz`` and
``--stub-path`` as `benchmarks/gpu-serve-check.sh` sets ``VAANI_STUB_PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

from vaani.audio import load_audio
from vaani.benchmarks.gpu_served_suite import step_delta, step_statistics
from vaani.benchmarks.gpu_workloads import mixed_seconds
from vaani.build.repository import RepositorySettings
from vaani.manifest import read_manifest
from vaani.serving.contract import (
    ACOUSTIC,
    AUDIO,
    DECODER,
    ENSEMBLE,
    ENSEMBLE_STEPS,
    FRAME_RMS,
    FRAME_TOKENS,
    NUM_SAMPLES,
    PREPROCESS,
    SAMPLING_RATE,
    TRANSCRIPT,
    WINDOW_LAYOUT,
    WINDOWS,
    WORDS,
)
from vaani.supervision.process import Ports, TritonProcess, free_port
from vaani.supervision.stubs import stubs_of

TESTSET = Path("data/tiny-hindi-test/test.jsonl")
PAUSE_SECONDS = 0.25
Inputs = dict[str, np.ndarray]


def sentences(manifest: Path) -> list[np.ndarray]:
    """The audio of every held-out sentence of ``manifest``, in its order: a NeMo manifest, or the
    GPU benchmark's packed ``eval.npz`` (`gpu_workloads.prepare_eval`; the GPU machine has no data/)."""
    if manifest.suffix == ".npz":
        packed = np.load(manifest)
        audio, offsets = packed["audio"], packed["offsets"]
        return [(audio[a:b] / 32768.0).astype(np.float32) for a, b in pairwise(offsets)]
    return [load_audio(entry.audio_path) for entry in read_manifest(manifest)]


def clips(speech: list[np.ndarray], seconds: list[float]) -> list[np.ndarray]:
    """Sentences of ``speech`` in turn, each followed by a pause, cut to each of ``seconds``."""
    index, out = 0, []
    pause = np.zeros(round(PAUSE_SECONDS * SAMPLING_RATE), dtype=np.float32)
    for length in seconds:
        pieces, total = [], 0
        while total < length * SAMPLING_RATE:
            audio = speech[index % len(speech)]
            index += 1
            pieces += [audio, pause]
            total += audio.size + pause.size
        out.append(np.concatenate(pieces)[: round(length * SAMPLING_RATE)])
    return out


def _infer(client, model: str, inputs: Inputs, outputs: list[str]) -> Inputs:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    asked = [grpcclient.InferRequestedOutput(name) for name in outputs]
    result = client.infer(model, tensors, outputs=asked)
    return {name: result.as_numpy(name) for name in outputs}


def decoder_inputs(url: str, audio: list[np.ndarray]) -> tuple[list[Inputs], list[str]]:
    """What the ensemble sends `ctc_decoder` for each clip (``preprocess`` and ``wav2vec2`` called
    directly, greedy), and `asr`'s transcript of each."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    requests, texts = [], []
    for clip in audio:
        cut = _infer(
            client, PREPROCESS, {AUDIO: clip[None, :]}, [WINDOWS, WINDOW_LAYOUT, NUM_SAMPLES, FRAME_RMS]
        )
        scores = _infer(
            client, ACOUSTIC, {k: cut[k] for k in (WINDOWS, WINDOW_LAYOUT, NUM_SAMPLES)}, [FRAME_TOKENS]
        )
        requests.append({**scores, **{k: cut[k] for k in (NUM_SAMPLES, WINDOW_LAYOUT, FRAME_RMS)}})
        whole = _infer(client, ENSEMBLE, {AUDIO: clip[None, :]}, [TRANSCRIPT])
        texts.append(whole[TRANSCRIPT].reshape(-1)[0].decode("utf-8"))
    client.close()
    return requests, texts


def transcripts(url: str, requests: list[Inputs], outputs: list[str]) -> list[str]:
    """The step's answer to each request, one at a time: the transcripts, with the words when asked."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    answers = [_infer(client, DECODER, inputs, outputs) for inputs in requests]
    client.close()
    return [" | ".join(a[name].reshape(-1)[0].decode("utf-8") for name in outputs) for a in answers]


async def _closed_loop(
    url: str, requests: list[Inputs], outputs: list[str], concurrency: int, seconds: float
):
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        index = offset
        while time.perf_counter() < stop_at:
            inputs = requests[index % len(requests)]
            index += concurrency
            tensors = []
            for name, array in inputs.items():
                tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                tensors.append(tensor)
            sent = time.perf_counter()
            await client.infer(
                DECODER, tensors, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs]
            )
            latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await client.close()
    return latencies


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the living threads of the processes ``pids`` have run (``/proc/<pid>/task/*/schedstat``)."""
    tasks = [task for pid in pids for task in Path(f"/proc/{pid}/task").iterdir()]
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9


def measure(
    server: TritonProcess, requests: list[Inputs], outputs: list[str], concurrency: int, seconds: float
) -> dict:
    """One closed-loop load of ``concurrency`` requests in flight to the step: what it cost per
    execution and per request, in the step's CPU, Triton's admission time and the client's wall time."""
    stubs = [s.pid for s in stubs_of(server.process.pid) if s.model == DECODER]
    asyncio.run(_closed_loop(server.grpc_url, requests, outputs, concurrency, 1.0))  # warm
    before, cpu_before, server_before = (
        step_statistics(server.grpc_url),
        cpu_seconds(stubs),
        cpu_seconds([server.process.pid]),
    )
    start = time.perf_counter()
    latencies = asyncio.run(_closed_loop(server.grpc_url, requests, outputs, concurrency, seconds))
    wall = time.perf_counter() - start
    step_cpu = cpu_seconds(stubs) - cpu_before
    server_cpu = cpu_seconds([server.process.pid]) - server_before
    after = step_statistics(server.grpc_url)
    step = step_delta(before, after)[DECODER]
    executions, count = step["executions"], after[DECODER]["requests"] - before[DECODER]["requests"]
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "executions": int(executions),
        "requests_per_execution": round(count / executions, 2),
        "step_requests": int(count),
        "step_cpu_ms_per_execution": round(step_cpu * 1e3 / executions, 3),
        "step_cpu_ms_per_request": round(step_cpu * 1e3 / count, 3),
        # Triton gives each request of an execution its duration: per execution, divide by the batch.
        "execute_ms_per_execution": round(step["compute_infer_ms_per_execution"] / step["mean_batch"], 3),
        "queue_ms_per_request": round(step["queue_ms_per_execution"] / step["mean_batch"], 3),
        "server_cpu_ms_per_request": round(server_cpu * 1e3 / count, 3),
        "latency_p50_ms": round(1e3 * float(np.percentile(latencies, 50)), 2),
        "latency_p99_ms": round(1e3 * float(np.percentile(latencies, 99)), 2),
        "answered_after_400_ms": sum(latency > 0.4 for latency in latencies),
    }


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def summary(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per variant and concurrency: the median over repeats of every figure."""
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        out.setdefault(f"{run['variant']} c={run['concurrency']}", {})
    for name in out:
        mine = [r for r in runs if f"{r['variant']} c={r['concurrency']}" == name]
        out[name] = {k: _median(mine, k) for k in mine[0] if isinstance(mine[0][k], (int, float))}
    return out


def with_code(repository: Path, code: Path, folder: Path) -> Path:
    """A copy of ``repository`` whose steps run the `vaani` package under ``code`` (first on each step's
    ``sys.path``: the stub's interpreter ignores PYTHONPATH), for a baseline where git is not at hand."""
    shutil.rmtree(folder, ignore_errors=True)
    copy = shutil.copytree(repository, folder)
    for step in ENSEMBLE_STEPS:
        model = copy / step / "1" / "model.py"
        model.write_text(f"import sys\nsys.path.insert(0, {str(code.resolve())!r})\n" + model.read_text())
    return copy


def start(repository: Path, models: tuple[str, ...], log: Path, stub_path: str | None) -> TritonProcess:
    """A tritonserver on free ports; ``stub_path`` (the GPU machine's) reaches its stubs alone, as
    `gpu_served_suite` gives it: numpy<2 first, except for `wav2vec2`'s DLPack-only engine."""
    variables = {}
    if stub_path:
        variables = {
            "VAANI_STUB_PATH": stub_path,
            "VAANI_STUB_NUMPY1": stub_path.split(os.pathsep)[0],
            "VAANI_STUB_NUMPY2_FOR": ACOUSTIC,
        }
    os.environ.update(variables)
    try:
        return TritonProcess(
            repository, Ports(free_port(), free_port(), free_port()), log_file=log, models=models
        )
    finally:
        for key in variables:
            del os.environ[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.decoder_step", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="models/tiny-hindi")
    parser.add_argument(
        "--repository", type=Path, help="serve this built repository (greedy) instead of building one"
    )
    parser.add_argument("--manifest", type=Path, default=TESTSET, help="a NeMo manifest or a packed eval.npz")
    parser.add_argument(
        "--clips", type=int, default=64, help="clips of 2-15 s (the GPU benchmark's mixed set)"
    )
    parser.add_argument("--concurrency", default="1,64", help="comma-separated requests in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="of load per concurrency and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--words", action="store_true", help="ask for WORDS too (the word times)")
    parser.add_argument("--baseline-commit", help="a commit whose serving code runs as the baseline")
    parser.add_argument(
        "--baseline-code", type=Path, help="or a folder holding the baseline's `vaani` package"
    )
    parser.add_argument(
        "--stub-path", help="sys.path of the python-backend stubs, numpy<2 first (GPU machine)"
    )
    parser.add_argument("--output", type=Path, default=Path("results/decoder-step"))
    args = parser.parse_args(argv)
    work = args.output / "work"
    outputs = [TRANSCRIPT, WORDS] if args.words else [TRANSCRIPT]
    candidate = args.repository
    if candidate is None:
        from vaani.build.pipeline import build

        candidate = build(
            args.model, work / "repository", RepositorySettings(decoder="greedy", max_batch_size=64)
        )
    repositories = {"candidate": candidate}
    if args.baseline_commit:
        from vaani.benchmarks.fairness import baseline_repository

        repositories = {
            "baseline": baseline_repository(candidate, args.baseline_commit, work / "baseline")
        } | repositories
    elif args.baseline_code:
        repositories = {
            "baseline": with_code(candidate, args.baseline_code, work / "baseline")
        } | repositories
    servers: dict[str, TritonProcess] = {}
    runs: list[dict] = []
    try:
        for name, repository in repositories.items():
            # The candidate makes the step's inputs; the baseline serves the step alone (its other steps'
            # code may not read what this checkout's build wrote).
            models = (ENSEMBLE, *ENSEMBLE_STEPS) if name == "candidate" else (DECODER,)
            servers[name] = start(repository, models, work / f"{name}.log", args.stub_path)
        for server in servers.values():
            server.wait_ready()
        audio = clips(sentences(args.manifest), mixed_seconds(seed=5)[: args.clips])
        requests, asr_texts = decoder_inputs(servers["candidate"].grpc_url, audio)
        texts = {name: transcripts(s.grpc_url, requests, outputs) for name, s in servers.items()}
        for repeat in range(args.repeats):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                for name, server in servers.items():
                    run = {"variant": name, "repeat": repeat + 1}
                    run |= measure(server, requests, outputs, concurrency, args.seconds)
                    runs.append(run)
                    print(json.dumps(run), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    first = next(iter(texts.values()))
    result = {
        "command": "python -m vaani.benchmarks.decoder_step "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "clips": len(audio),
        "clip_seconds": round(sum(a.size for a in audio) / SAMPLING_RATE / len(audio), 2),
        "outputs": outputs,
        "baseline": args.baseline_commit or (args.baseline_code and str(args.baseline_code)),
        "same_transcripts": all(t == first for t in texts.values()),
        "transcripts_equal_asr": [t.split(" | ")[0] for t in first] == asr_texts,
        "commit": os.environ.get("COMMIT")
        or subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, shared with other jobs",
        "summary": summary(runs),
        "runs": runs,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "decoder_step.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
