"""One hour of speech in one request: wall time, real-time factor and peak memory of the server.

The recording is minutes of held-out synthetic sentences with known pauses
(`vaani.recipe.corpus.recordings`), repeated to the length asked, sent to a running server as one
request (`vaani serve`, any engine); while it runs, the resident memory of tritonserver and of
each step's process is sampled from `/proc`. Printed and written: what was sent, the wall time,
the real-time factor, the peak memory per process, and the WER against the sentences' text.

    python -m vaani.benchmarks.long_audio --minutes 60 --output benchmarks/results/long-audio
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

import jiwer
import numpy as np

from vaani.client.api import TranscriptionClient
from vaani.loadtest.soak import server_processes
from vaani.recipe.corpus.recordings import long_recording
from vaani.scoring import normalize
from vaani.serving.contract import SAMPLING_RATE
from vaani.supervision.stubs import rss_mb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.long_audio", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default="localhost:8000", help="the server's HTTP address")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    parser.add_argument("--grpc-url", default="localhost:8001")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument(
        "--sentences", type=int, default=60, help="distinct sentences, repeated to the length"
    )
    parser.add_argument("--output", type=Path, default=Path("results/long-audio"))
    args = parser.parse_args(argv)
    audio, placed = long_recording(args.sentences)
    repeats = max(1, int(args.minutes * 60 * SAMPLING_RATE // audio.size))  # within the server maximum
    audio = np.tile(audio, repeats)
    reference = " ".join([" ".join(p.text for p in placed)] * repeats)
    seconds = audio.size / SAMPLING_RATE
    port = int(args.url.rsplit(":", 1)[1])
    processes = server_processes(port)
    peak = {pid: rss_mb(pid) for pid in processes}
    idle = dict(peak)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in processes:
                peak[pid] = max(peak[pid], rss_mb(pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client = TranscriptionClient(
        args.grpc_url if args.protocol == "grpc" else args.url, protocol=args.protocol
    )
    start = time.monotonic()
    text = client.transcribe(audio)
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    result = {
        "audio_seconds": round(seconds, 1),
        "request_mb": round(audio.nbytes / 2**20, 1),
        "protocol": args.protocol,
        "wall_seconds": round(wall, 1),
        "real_time_factor": round(wall / seconds, 4),
        "speed_x_real_time": round(seconds / wall, 1),
        "wer": round(jiwer.wer(normalize(reference), normalize(text)), 4),
        "memory_mb": {
            processes[pid]: {"idle": round(idle[pid]), "peak": round(peak[pid])} for pid in processes
        },
        "cpu": platform.processor() or platform.machine(),
        "cores": len(__import__("os").sched_getaffinity(0)),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "long_audio.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
