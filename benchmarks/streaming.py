"""Live recognition under load: real-time streams to `asr_stream` against per-chunk latency.

Builds the model's repository (default: the bundled one, `vaani build`'s defaults), starts its own
tritonserver on free ports and, for each scenario, holds streams of held-out sentences with pauses
(`vaani.recipe.corpus.recordings`), each chunk sent at real-time pace. Per scenario: every chunk's
latency (sent → its answer; p50/p95/p99/max), how long after its last chunk each stream's last
answer came (the lag: a stream is *held in real time* when it stays within 2 s, the issue's goal),
the final text's WER beside `asr`'s on the same recordings, and how many requests `wav2vec2` ran per
execution (chunks of different streams sharing acoustic runs), how many requests `asr` served per
chunk (a chunk costs one per partial and one per segment it finishes; one between two partials,
none), and how soon the text shows: the mean time from a stream's first chunk until each word of its
final text is first on screen (its n-th word: the first answer that holds n words), the price of
recomputing the partial less often. Scenarios: 1, 2, 4, 8 concurrent streams in 200 ms chunks, then
one stream in 100 ms, 500 ms and 1 s chunks (the chunk-length trade-off), each repeated. Every
scenario runs, interleaved, against one server per ``--stream-instances`` and
``--stream-partial-seconds`` value (each row names its server's, read from its config).

Accuracy on single utterances: every entry of ``--manifest`` (default: the bundled model's held-out
test set, where present) streamed in 200 ms chunks as fast as answered, eight at a time, its final
text scored beside `asr`'s answer for the whole file.

With ``--url`` it measures a server that is already running instead (a GPU machine's `vaani serve`):
no build, no baseline. Machines without espeak-ng or jiwer take the recordings from ``--recordings``
(written by a run that could make them) and report no WER. Many streams are spread over
``--client-processes`` so that the client's own GIL does not set the pace.

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
import time
from pathlib import Path

import numpy as np
from tritonclient.utils import InferenceServerException

from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.client.streaming import ChunkAnswer, stream_audio
from vaani.serving.contract import ACOUSTIC, ENSEMBLE, SAMPLING_RATE, STREAM
from vaani.supervision.process import Ports, TritonProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
HELD_LAG_S = 2.0  # the goal: the last answer within 2 s of the last chunk
CONCURRENCY = (1, 2, 4, 8)
CHUNKS = (0.1, 0.5, 1.0)  # one stream each, beside 200 ms
HELDOUT = ROOT / "data" / "tiny-hindi-test" / "test.jsonl"  # `make testset`


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:  # no chunk was answered (the server died at once)
        return {f"p{q}_ms": None for q in (50, 95, 99)} | {"max_ms": None}
    array = np.array(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(array, q)), 1) for q in (50, 95, 99)} | {
        "max_ms": round(float(array.max()), 1)
    }


def _executions(url: str) -> tuple[int, int, int]:
    """`wav2vec2`'s requests and executions so far, and `asr`'s requests, from Triton's statistics."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    acoustic = client.get_inference_statistics(ACOUSTIC, as_json=True)["model_stats"][0]
    ensemble = client.get_inference_statistics(ENSEMBLE, as_json=True)["model_stats"][0]
    client.close()
    counts = (acoustic.get("inference_count", 0), acoustic.get("execution_count", 0))
    return int(counts[0]), int(counts[1]), int(ensemble.get("inference_count", 0))


def server_settings(url: str) -> dict:
    """What a server's `asr_stream` runs with, from its config: step instances, partial interval (s)."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    config = client.get_model_config(STREAM, as_json=True)["config"]
    client.close()
    partial = int(config["parameters"]["partial_samples"]["string_value"]) / SAMPLING_RATE
    return {"instances": sum(int(g.get("count", 1)) for g in config["instance_group"]), "partial_s": partial}


def text_delay(answers: list[ChunkAnswer]) -> float | None:
    """Mean seconds from the stream's first chunk sent until each word of its final text shows: its
    n-th word at the first answer that holds n words (partial or finished)."""
    words = len(answers[-1].transcript.split()) if answers else 0
    if not words:
        return None
    start, shown, times = answers[0].sent, 0, []
    for answer in sorted(answers, key=lambda a: a.answered):
        count = min(len(answer.transcript.split()), words)
        times += [answer.answered - start] * max(0, count - shown)
        shown = max(shown, count)
    return float(np.mean(times))


def _wer(truths: list[str], texts: list[str]) -> float | None:
    """WER in percent; None where jiwer is not installed (GPU machines have no package index)."""
    try:
        from vaani.scoring import score
    except ImportError:
        return None
    return round(100 * score(truths, texts).wer, 2) if texts else None


def _streams(url: str, jobs: list[tuple[int, np.ndarray, float]], chunk_s: float) -> tuple[dict, list[str]]:
    """Each job (stream number, audio, start delay) as a real-time stream of its own thread."""
    results: dict[int, list[ChunkAnswer]] = {}
    failures: list[str] = []

    def one(n: int, audio: np.ndarray, delay: float) -> None:
        time.sleep(delay)
        try:
            results[n] = stream_audio(audio, url, chunk_seconds=chunk_s, pace=1.0)
        except Exception as error:  # recorded, not raised: the table says how many streams failed
            failures.append(f"stream {n}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=one, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, failures


def run_scenario(
    url: str,
    recordings: list[tuple[np.ndarray, str]],
    asr_texts: list[str],
    streams: int,
    chunk_s: float,
    processes: int = 1,
) -> dict:
    """``streams`` real-time streams at once, stream n on recording n (cycled), in ``chunk_s`` chunks;
    their starts spread over one chunk, as independent speakers' would be."""
    jobs = [(n, recordings[n % len(recordings)][0], chunk_s * n / streams) for n in range(streams)]
    before = _executions(url)
    if processes <= 1:
        results, failures = _streams(url, jobs, chunk_s)
    else:
        from multiprocessing import get_context

        with get_context("spawn").Pool(processes) as pool:
            parts = pool.starmap(_streams, [(url, jobs[k::processes], chunk_s) for k in range(processes)])
        results = {n: answers for part, _ in parts for n, answers in part.items()}
        failures = [failure for _, part in parts for failure in part]
    try:
        requests, executions, decodes = (a - b for a, b in zip(_executions(url), before))
        lost = None
    except InferenceServerException as error:  # it died during the scenario: keep what the clients saw
        requests, executions, decodes = 0, 0, 0
        lost = f"the server stopped answering during this scenario: {error}"
    answers = [a for n in sorted(results) for a in results[n]]
    lags = [max(a.answered for a in results[n]) - results[n][-1].sent for n in sorted(results)]
    truths = [recordings[n % len(recordings)][1] for n in sorted(results)]
    finals = [results[n][-1].transcript for n in sorted(results)]
    delays = [d for d in (text_delay(results[n]) for n in sorted(results)) if d is not None]
    return {
        "streams": streams,
        "chunk_s": chunk_s,
        "chunks": len(answers),
        "errors": sum(1 for a in answers if a.error) + len(failures),
        **_percentiles([a.latency for a in answers]),
        "max_lag_s": round(max(lags), 3) if lags else None,
        "held": sum(1 for lag in lags if lag <= HELD_LAG_S),
        "wer": _wer(truths, finals),
        "asr_wer": _wer(truths, [asr_texts[n % len(asr_texts)] for n in sorted(results)]),
        "acoustic_requests_per_execution": round(requests / executions, 2) if executions else None,
        "asr_requests_per_chunk": round(decodes / len(answers), 2) if answers and not lost else None,
        "text_delay_s": round(float(np.mean(delays)), 3) if delays else None,
        "failures": failures[:10],  # the first few: one reason is usually all of them
        "server_lost": lost,
    }


def _asr_texts(url: str, recordings: list[tuple[np.ndarray, str]]) -> list[str]:
    """`asr`'s transcripts of the same recordings, each sent whole: what the streams' WER is set beside."""
    client = TranscriptionClient(url, "grpc")
    texts = [client.transcribe(audio) for audio, _ in recordings]
    client.close()
    return texts


COLUMNS = (
    "step instances", "partial every", "streams", "chunk", "chunks", "errors", "p50 ms", "p95 ms",
    "p99 ms", "max ms", "last answer after last chunk (worst stream)", "held in real time",
    "WER (asr, same audio)", "asr requests / chunk", "word shown (mean s from start)",
    "wav2vec2 requests / execution",
)  # fmt: skip


def _row(r: dict) -> list[str]:
    latency = ["–" if r[key] is None else f"{r[key]:.0f}" for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    partial = f"{r['partial_s'] * 1000:.0f} ms" if r["partial_s"] else "chunk"
    delay = "–" if r["text_delay_s"] is None else f"{r['text_delay_s']:.2f}"
    lag = "–" if r["max_lag_s"] is None else f"{r['max_lag_s']:.2f} s"
    return [
        str(r["instances"]), partial, str(r["streams"]), f"{r['chunk_s'] * 1000:.0f} ms",
        str(r["chunks"]), str(r["errors"]), *latency,
        lag, f"{r['held']}/{r['streams']}", _wer_cell(r),
        str(r["asr_requests_per_chunk"]), delay, str(r["acoustic_requests_per_execution"]),
    ]  # fmt: skip


def heldout(url: str, manifest: Path, chunk_s: float = 0.2, parallel: int = 8) -> dict:
    """WER of the streams' final text and of `asr` on every entry of ``manifest``, the same audio."""
    from concurrent.futures import ThreadPoolExecutor

    from vaani.audio import load_audio
    from vaani.manifest import read_manifest

    entries = read_manifest(manifest)
    audio = [load_audio(entry.audio_path) for entry in entries]
    with ThreadPoolExecutor(parallel) as pool:
        finals = list(pool.map(lambda a: stream_audio(a, url, chunk_s, pace=0)[-1].transcript, audio))
    truths = [entry.text for entry in entries]
    asr = _asr_texts(url, [(a, "") for a in audio])
    return {
        "manifest": str(manifest.relative_to(ROOT)) if manifest.is_relative_to(ROOT) else str(manifest),
        "utterances": len(entries),
        "chunk_s": chunk_s,
        "stream_wer": _wer(truths, finals),
        "asr_wer": _wer(truths, asr),
        "identical": sum(f == a for f, a in zip(finals, asr)),
    }


def _wer_cell(row: dict) -> str:
    if row["wer"] is None:
        return "–" if row.get("server_lost") else "– (no jiwer)"
    return f"{row['wer']:.2f} % ({row['asr_wer']:.2f} %)"


def _float_audio(samples: np.ndarray) -> np.ndarray:
    """FP32 audio from a saved recording (16-bit samples; older files hold FP32)."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return samples


def load_recordings(path: Path | None, count: int, sentences: int) -> list[tuple[np.ndarray, str]]:
    """``count`` recordings of held-out sentences with pauses: read from ``path`` when it exists, else
    made (espeak-ng) and, with a ``path``, written there for a machine that cannot make them."""
    if path is not None and path.exists():
        saved = np.load(path)
        texts = [str(t) for t in saved["texts"]]
        return [(_float_audio(saved[f"audio_{n}"]), texts[n]) for n in range(len(texts))]
    from vaani.recipe.corpus.recordings import long_recording

    made = []
    for n in range(count):
        audio, placed = long_recording(sentences, seed=3100 + n)
        made.append((audio, " ".join(p.text for p in placed)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # As 16-bit samples, as a recording holds them: the file travels to the GPU machine, whose
        # transfer limit the checkout and the server's files nearly fill (float32 took 4.0 MB, this 1.8).
        arrays = {
            f"audio_{n}": np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
            for n, (audio, _) in enumerate(made)
        }
        np.savez_compressed(path, texts=np.array([t for _, t in made]), **arrays)
    return made


def _accuracy_line(accuracy: dict) -> str:
    if accuracy["stream_wer"] is None:
        return ""
    return (
        f"\nSingle utterances ({accuracy['utterances']} of {accuracy['manifest']}, "
        f"{accuracy['chunk_s'] * 1000:.0f} ms chunks): stream WER {accuracy['stream_wer']:.2f} %, "
        f"`asr` {accuracy['asr_wer']:.2f} %, "
        f"{accuracy['identical']} transcripts identical.\n"
    )


def _numbers(text: str, kind=float) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def _table(rows: list[dict]) -> str:
    """Markdown: one line per scenario, server and repeat."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " ---: |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
    except OSError:  # no git on the machine
        return os.environ.get("VAANI_COMMIT", "unknown")
    return done.stdout.strip() or os.environ.get("VAANI_COMMIT", "unknown")


def _start_servers(args: argparse.Namespace, stack: contextlib.ExitStack) -> list[str]:
    """`vaani build`'s defaults but for one ``--stream-instances`` and ``--stream-partial-seconds``
    value each (the first of each list first), each served on free ports: their gRPC URLs."""
    urls = []
    for instances in _numbers(args.stream_instances, int):
        for partial in _numbers(args.stream_partial_seconds):
            settings = RepositorySettings(stream_instances=instances, stream_partial_seconds=partial)
            work = args.output / "work" / f"stream-instances-{instances}-partial-{partial:g}"
            repository = build(args.model, work / "model_repository", settings)
            ports = Ports(free_port(), free_port(), free_port())
            log = repository.parent / "tritonserver.log"
            stack.enter_context(TritonProcess(repository, ports, log_file=log)).wait_ready()
            urls.append(f"localhost:{ports.grpc}")
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.streaming", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default=str(ROOT / "models" / "tiny-hindi"))
    parser.add_argument("--output", type=Path, default=Path("results/streaming"))
    parser.add_argument("--repeats", type=int, default=2, help="runs of every scenario (each reported)")
    parser.add_argument("--sentences", type=int, default=4, help="held-out sentences per stream's recording")
    parser.add_argument("--url", help="measure this running server (gRPC host:port): no build, no baseline")
    parser.add_argument(
        "--stream-instances", default="4", help="one server per value (its --stream-instances), e.g. 4,1"
    )
    parser.add_argument(
        "--stream-partial-seconds",
        default=",".join(
            dict.fromkeys(f"{v:g}" for v in (0, RepositorySettings().stream_partial_seconds, 1))
        ),
        help="one server per value (its --stream-partial-seconds; 0: a partial at every chunk), e.g. 0,0.6,1",
    )
    parser.add_argument(
        "--concurrency", default=",".join(map(str, CONCURRENCY)), help="streams, e.g. 1,2,4,8"
    )
    parser.add_argument("--chunk-lengths", default=",".join(map(str, CHUNKS)), help="one stream each (s)")
    parser.add_argument(
        "--recordings", type=Path, help="an .npz of the recordings: read if it exists, else written"
    )
    parser.add_argument(
        "--client-processes", type=int, default=1, help="processes the streams are spread over"
    )
    parser.add_argument(
        "--manifest", type=Path, default=HELDOUT, help="single utterances for the accuracy pass ('': none)"
    )
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    concurrency, chunk_lengths = _numbers(args.concurrency, int), _numbers(args.chunk_lengths)
    recordings = load_recordings(args.recordings, max(CONCURRENCY), args.sentences)
    seconds = [round(audio.size / SAMPLING_RATE, 2) for audio, _ in recordings]
    rows: list[dict] = []
    accuracy = None
    with contextlib.ExitStack() as stack:
        urls = [args.url] if args.url else _start_servers(args, stack)
        servers = {url: server_settings(url) for url in urls}
        default = urls[0]
        for url in urls:
            stream_audio(recordings[0][0][:SAMPLING_RATE], url, pace=0)  # warm-up, not reported
        asr_texts = _asr_texts(default, recordings)
        for repeat in range(args.repeats):
            scenarios = [(url, n, 0.2) for n in concurrency for url in urls] + [
                (url, 1, c) for c in chunk_lengths for url in urls
            ]
            for url, streams, chunk_s in scenarios:
                row = run_scenario(url, recordings, asr_texts, streams, chunk_s, args.client_processes)
                row |= servers[url] | {"repeat": repeat + 1}
                print(json.dumps(row, ensure_ascii=False), flush=True)
                rows.append(row)
                if row["server_lost"]:
                    break
            if rows and rows[-1]["server_lost"]:  # nothing after it would measure anything
                break
        lost = next((r for r in rows if r["server_lost"]), None)
        if lost:
            print(f"stopped at {lost['streams']} streams: {lost['server_lost']}", flush=True)
        elif args.manifest and args.manifest.is_file():
            accuracy = heldout(default, args.manifest)
            print(json.dumps(accuracy, ensure_ascii=False), flush=True)
    rows.sort(
        key=lambda r: (
            r["chunk_s"] != 0.2, r["chunk_s"], r["streams"], -r["instances"], r["partial_s"], r["repeat"]
        )
    )  # fmt: skip
    report = {
        "command": "python -m vaani.benchmarks.streaming "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": _commit(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average_at_end": os.getloadavg(),
        "model": args.model,
        "settings": f"a running server at {args.url}"
        if args.url
        else "vaani build defaults (onnxruntime, decoder auto: beam search + the bundled LM) but for "
        f"--stream-instances {args.stream_instances} "
        f"× --stream-partial-seconds {args.stream_partial_seconds}",
        "recording_seconds": seconds,
        "rows": rows,
        "heldout": accuracy,
    }
    (args.output / "results.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    table = _table(rows) + (_accuracy_line(accuracy) if accuracy else "")
    if lost:
        table += (
            f"\nStopped at {lost['streams']} streams: {lost['server_lost']}; its row holds what the"
            " clients saw.\n"
        )
    (args.output / "table.md").write_text(table)
    print(table)
    print(f"wrote {args.output / 'results.json'} and table.md")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
