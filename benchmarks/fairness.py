"""Fairness: how long a 2 s request waits while a 10-minute recording is transcribed, and what it costs.

Builds the model's repository with the default settings and starts a real tritonserver on it; with
``--baseline-commit`` a second one runs the serving code (`vaani/`) of that commit on a copy of the
repository (each step's ``model.py`` puts it first on ``sys.path``: the stub's interpreter ignores
PYTHONPATH), and the two alternate repeat by repeat, so that both meet the same machine. One repeat
on one server: the long recording alone (its wall time), then again with a short request sent every
``--gap`` seconds, each after the previous one's answer, for as long as the long one runs (each
short one's latency, the long one's wall time). The long recording is held-out sentences of the test
set (`make testset`) joined with pauses of 0.3–0.8 s to ``--minutes``; the short request is one
held-out sentence of about 2 s.

    python -m vaani.benchmarks.fairness --baseline-commit 75edb62 \
        --output benchmarks/results/fairness-cpu-2026-12-05
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from vaani.audio import load_audio
from vaani.build.pipeline import build
from vaani.build.repository import ENSEMBLE_STEPS, RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.manifest import read_manifest
from vaani.serving.contract import ENSEMBLE, SAMPLING_RATE
from vaani.supervision.process import Ports, TritonProcess, free_port

TESTSET = Path("data/tiny-hindi-test/test.jsonl")


def long_recording(manifest: Path, seconds: float, seed: int = 2026) -> np.ndarray:
    """Held-out sentences in manifest order, each after a pause of 0.3–0.8 s, to ``seconds``."""
    rng = random.Random(seed)
    pieces, total = [], 0
    entries = read_manifest(manifest)
    while total < seconds * SAMPLING_RATE:
        for entry in entries:
            pause = np.zeros(round(rng.uniform(0.3, 0.8) * SAMPLING_RATE), dtype=np.float32)
            clip = load_audio(entry.audio_path)
            pieces += [pause, clip]
            total += pause.size + clip.size
            if total >= seconds * SAMPLING_RATE:
                break
    return np.concatenate(pieces)[: round(seconds * SAMPLING_RATE)]


def short_clip(manifest: Path, seconds: float = 2.0) -> np.ndarray:
    """The held-out sentence whose length is closest to ``seconds``."""
    entry = min(read_manifest(manifest), key=lambda e: abs(float(e.fields["duration"]) - seconds))
    return load_audio(entry.audio_path)


def baseline_repository(repository: Path, commit: str, folder: Path) -> Path:
    """A copy of ``repository`` whose steps run the serving code of ``commit`` (git archive: no checkout)."""
    code = folder / "code"
    shutil.rmtree(folder, ignore_errors=True)
    code.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit, "vaani"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    copy = shutil.copytree(repository, folder / "repository")
    for step in ENSEMBLE_STEPS:
        model = copy / step / "1" / "model.py"
        model.write_text(f"import sys\nsys.path.insert(0, {str(code.resolve())!r})\n" + model.read_text())
    return copy


@dataclasses.dataclass
class Round:
    """One long recording on one server, alone or beside short requests."""

    variant: str
    beside_short: bool
    long_seconds: float
    short_seconds: list[float]
    transcript: str


def one_round(
    server: TritonProcess, variant: str, long: np.ndarray, short: np.ndarray | None, gap: float
) -> Round:
    done = threading.Event()
    latencies: list[float] = []

    def shorts() -> None:
        client = TranscriptionClient(server.grpc_url, protocol="grpc")
        while not done.wait(gap):  # each short request is sent while the long one runs
            start = time.monotonic()
            client.transcribe(short)
            latencies.append(time.monotonic() - start)
        client.close()

    sender = threading.Thread(target=shorts, daemon=True) if short is not None else None
    client = TranscriptionClient(server.grpc_url, protocol="grpc")
    start = time.monotonic()
    if sender:
        sender.start()
    text = client.transcribe(long)
    wall = time.monotonic() - start
    done.set()
    if sender:
        sender.join()
    client.close()
    return Round(variant, short is not None, round(wall, 2), [round(s, 3) for s in latencies], text)


def summary(rounds: list[Round], variant: str) -> dict[str, object]:
    alone = [r.long_seconds for r in rounds if r.variant == variant and not r.beside_short]
    beside = [r.long_seconds for r in rounds if r.variant == variant and r.beside_short]
    shorts = sorted(s for r in rounds if r.variant == variant for s in r.short_seconds)
    return {
        "long_alone_s": alone,
        "long_beside_short_s": beside,
        "long_growth": round(statistics.median(beside) / statistics.median(alone) - 1, 3),
        "short_count": len(shorts),
        "short_median_s": round(statistics.median(shorts), 3) if shorts else None,
        "short_max_s": shorts[-1] if shorts else None,
        "short_within_2s": sum(s <= 2.0 for s in shorts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.fairness", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="models/tiny-hindi")
    parser.add_argument("--manifest", type=Path, default=TESTSET)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--gap", type=float, default=4.0, help="seconds between a short answer and the next")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-commit", help="a commit whose serving code runs as the baseline")
    parser.add_argument("--output", type=Path, default=Path("results/fairness"))
    args = parser.parse_args(argv)
    work = args.output / "work"
    long = long_recording(args.manifest, args.minutes * 60)
    short = short_clip(args.manifest)
    servers: dict[str, TritonProcess] = {}
    rounds: list[Round] = []
    try:
        repositories = {"candidate": build(args.model, work / "repository", RepositorySettings())}
        if args.baseline_commit:
            baseline = baseline_repository(repositories["candidate"], args.baseline_commit, work / "baseline")
            repositories = {"baseline": baseline, **repositories}
        for name, repository in repositories.items():
            ports = Ports(free_port(), free_port(), free_port())
            # The ensemble and its steps only: the baseline may know no other model the build wrote.
            models = (ENSEMBLE, *ENSEMBLE_STEPS)
            servers[name] = TritonProcess(repository, ports, log_file=work / f"{name}.log", models=models)
        for server in servers.values():
            server.wait_ready()
            warm = TranscriptionClient(server.grpc_url, protocol="grpc")
            warm.transcribe(long[: 60 * SAMPLING_RATE])
            warm.close()
        for repeat in range(args.repeats):
            for name, server in servers.items():
                for beside in (False, True):
                    played = one_round(server, name, long, short if beside else None, args.gap)
                    rounds.append(played)
                    shown = f"shorts {played.short_seconds}" if beside else "alone"
                    print(f"repeat {repeat + 1} {name}: long {played.long_seconds} s, {shown}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    texts = {r.variant: r.transcript for r in rounds}
    result = {
        "long_audio_s": round(long.size / SAMPLING_RATE, 1),
        "short_audio_s": round(short.size / SAMPLING_RATE, 2),
        "gap_s": args.gap,
        "baseline_commit": args.baseline_commit,
        "same_transcripts": len(set(texts.values())) == 1
        and all(r.transcript == texts[r.variant] for r in rounds),
        "commit": subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, shared with other jobs",
        "variants": {name: summary(rounds, name) for name in servers},
        "rounds": [dataclasses.asdict(r) | {"transcript": len(r.transcript)} for r in rounds],
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "fairness.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
