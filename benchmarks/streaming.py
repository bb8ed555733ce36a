"""Live recognition under load: real-time streams to `asr_stream` against per-chunk latency.

Builds the model's repository (default: the bundled one, `vaani build`'s defaults), starts its own
tritonserver on free ports and, for each scenario, holds streams of held-out sentences with pauses
(`vaani.recipe.corpus.recordings`), each chunk sent at real-time pace. Per scenario: every chunk's
latency (sent → its answer; p50/p95/p99/max), how long after its last chunk each stream's last
answer came (the lag: a stream is *held in real time* when it stays within 2 s, the issue's goal),
the final text's WER beside `asr`'s on the same recordings, and how many requests `wav2vec2` ran per
execution (chunks of different streams sharing acoustic runs). Scenarios: 1, 2, 4, 8 concurrent
streams in 200 ms chunks, then one stream in 100 ms, 500 ms and 1 s chunks (the chunk-length
trade-off), each repeated. The concurrency scenarios also run, interleaved, against a second server
whose step has one instance (``--stream-instances 1``, the baseline of the default 4).

    python -m vaani.benchmarks.streaming --output benchmarks/results/streaming-cpu-2026-12-05
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.client.streaming import ChunkAnswer, stream_audio
from vaani.recipe.corpus.recordings import long_recording
from vaani.scoring import score
from vaani.serving.contract import ACOUSTIC, SAMPLING_RATE
from vaani.supervision.process import Ports, TritonProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
HELD_LAG_S = 2.0  # the goal: the last answer within 2 s of the last chunk
CONCURRENCY = (1, 2, 4, 8)
CHUNKS = (0.1, 0.5, 1.0)  # one stream each, beside 200 ms


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.array(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(array, q)), 1) for q in (50, 95, 99)} | {
        "max_ms": round(float(array.max()), 1)
    }


def _executions(url: str) -> tuple[int, int]:
    """`wav2vec2`'s (requests, executions) so far, from Triton's statistics."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    stats = client.get_inference_statistics(ACOUSTIC, as_json=True)["model_stats"][0]
    client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def run_scenario(
    url: str, recordings: list[tuple[np.ndarray, str]], asr_texts: list[str], streams: int, chunk_s: float
) -> dict:
    """``streams`` real-time streams at once, each its own recording, in ``chunk_s`` chunks."""
    results: dict[int, list[ChunkAnswer]] = {}
    failures: list[str] = []

    def one(n: int) -> None:
        try:
            results[n] = stream_audio(recordings[n][0], url, chunk_seconds=chunk_s, pace=1.0)
        except Exception as error:  # recorded, not raised: the table says how many streams failed
            failures.append(f"stream {n}: {error!r}")

    before = _executions(url)
    threads = [threading.Thread(target=one, args=(n,)) for n in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests, executions = (a - b for a, b in zip(_executions(url), before))
    answers = [a for n in sorted(results) for a in results[n]]
    lags = [max(a.answered for a in results[n]) - results[n][-1].sent for n in sorted(results)]
    truths = [recordings[n][1] for n in sorted(results)]
    finals = [results[n][-1].transcript for n in sorted(results)]
    return {
        "streams": streams,
        "chunk_s": chunk_s,
        "chunks": len(answers),
        "errors": sum(1 for a in answers if a.error) + len(failures),
        **_percentiles([a.latency for a in answers]),
        "max_lag_s": round(max(lags), 3) if lags else None,
        "held": sum(1 for lag in lags if lag <= HELD_LAG_S),
        "wer": round(100 * score(truths, finals).wer, 2) if finals else None,
        "asr_wer": round(100 * score(truths, [asr_texts[n] for n in sorted(results)]).wer, 2),
        "acoustic_requests_per_execution": round(requests / executions, 2) if executions else None,
        "failures": failures,
    }


def _asr_texts(url: str, recordings: list[tuple[np.ndarray, str]]) -> list[str]:
    """`asr`'s transcripts of the same recordings, each sent whole: what the streams' WER is set beside."""
    client = TranscriptionClient(url, "grpc")
    texts = [client.transcribe(audio) for audio, _ in recordings]
    client.close()
    return texts


COLUMNS = (
    "step instances", "streams", "chunk", "chunks", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms",
    "last answer after last chunk (worst stream)", "held in real time", "WER (asr, same audio)",
    "wav2vec2 requests / execution",
)  # fmt: skip


def _row(r: dict) -> list[str]:
    latency = [f"{r[key]:.0f}" for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    return [
        str(r["instances"]), str(r["streams"]), f"{r['chunk_s'] * 1000:.0f} ms", str(r["chunks"]),
        str(r["errors"]), *latency,
        f"{r['max_lag_s']:.2f} s", f"{r['held']}/{r['streams']}", f"{r['wer']:.2f} % ({r['asr_wer']:.2f} %)",
        str(r["acoustic_requests_per_execution"]),
    ]  # fmt: skip


def _table(rows: list[dict]) -> str:
    """Markdown: one line per scenario, server and repeat."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " ---: |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.streaming", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default=str(ROOT / "models" / "tiny-hindi"))
    parser.add_argument("--output", type=Path, default=Path("results/streaming"))
    parser.add_argument("--repeats", type=int, default=2, help="runs of every scenario (each reported)")
    parser.add_argument("--sentences", type=int, default=4, help="held-out sentences per stream's recording")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    servers = {}  # step instances → repository: the default, and one instance as the baseline
    for settings in (RepositorySettings(), RepositorySettings(stream_instances=1)):
        work = args.output / "work" / f"stream-instances-{settings.stream_instances}"
        servers[settings.stream_instances] = build(args.model, work / "model_repository", settings)
    default = RepositorySettings().stream_instances
    recordings = []
    for n in range(max(CONCURRENCY)):
        audio, placed = long_recording(args.sentences, seed=3100 + n)
        recordings.append((audio, " ".join(p.text for p in placed)))
    seconds = [round(audio.size / SAMPLING_RATE, 2) for audio, _ in recordings]
    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        urls = {}
        for instances, repository in servers.items():
            ports = Ports(free_port(), free_port(), free_port())
            log = repository.parent / "tritonserver.log"
            stack.enter_context(TritonProcess(repository, ports, log_file=log)).wait_ready()
            urls[instances] = f"localhost:{ports.grpc}"
            stream_audio(recordings[0][0][:SAMPLING_RATE], urls[instances], pace=0)  # warm-up, not reported
        asr_texts = _asr_texts(urls[default], recordings)
        for repeat in range(args.repeats):
            scenarios = [(i, n, 0.2) for n in CONCURRENCY for i in urls] + [(default, 1, c) for c in CHUNKS]
            for instances, streams, chunk_s in scenarios:
                row = run_scenario(urls[instances], recordings, asr_texts, streams, chunk_s)
                row |= {"instances": instances, "repeat": repeat + 1}
                print(json.dumps(row, ensure_ascii=False), flush=True)
                rows.append(row)
    rows.sort(key=lambda r: (r["chunk_s"] != 0.2, r["chunk_s"], r["streams"], -r["instances"], r["repeat"]))
    report = {
        "command": "python -m vaani.benchmarks.streaming "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": _commit(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average_at_end": os.getloadavg(),
        "model": args.model,
        "settings": "vaani build defaults (onnxruntime, decoder auto: beam search + the bundled LM); "
        "the baseline: the same with --stream-instances 1",
        "recording_seconds": seconds,
        "rows": rows,
    }
    (args.output / "results.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    (args.output / "table.md").write_text(_table(rows))
    print(_table(rows))
    print(f"wrote {args.output / 'results.json'} and table.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
