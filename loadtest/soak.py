"""`vaani soak`: a bounded soak of a running server — failures, latency per minute, memory per process.

Clients send mixed-length clips back to back over gRPC for the whole run. Each clip's first
transcript is its reference: a later, different transcript is counted as a change (a server
that degrades under load answers, but wrongly). Every few seconds the resident memory of the
server and of each step's process is sampled from `/proc`, so growth that stays is visible.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vaani.client.api import TranscriptionClient, TranscriptionError
from vaani.loadtest.clips import Clip
from vaani.supervision.stubs import rss_mb, server_listening_on, stubs_of


@dataclass(frozen=True)
class Sample:
    """Resident memory of one process at one moment of the run."""

    seconds: float
    process: str
    rss_mb: float


def server_processes(http_port: int) -> dict[int, str]:
    """The tritonserver listening on ``http_port`` and its step processes: pid → label."""
    server = server_listening_on(http_port)
    if server is None:
        return {}
    return {server: "tritonserver", **{stub.pid: stub.model for stub in stubs_of(server)}}


@dataclass
class Soak:
    grpc_url: str
    http_port: int
    clips: list[Clip]
    clients: int = 8
    seconds: float = 600.0
    sample_every: float = 5.0

    def run(self) -> dict[str, object]:
        start = time.monotonic()
        stop = start + self.seconds
        records: list[tuple[float, float, bool, bool]] = []  # (t, latency, failed, changed)
        references: dict[int, str] = {}
        lock = threading.Lock()
        samples: list[Sample] = []

        def client_loop(index: int) -> None:
            client = TranscriptionClient(self.grpc_url, protocol="grpc")
            order = np.random.default_rng(index).permutation(len(self.clips))
            step = 0
            while time.monotonic() < stop:
                clip_index = int(order[step % len(order)])
                step += 1
                sent = time.monotonic()
                try:
                    text, failed = client.transcribe(self.clips[clip_index].audio), False
                except TranscriptionError:
                    text, failed = None, True
                latency = time.monotonic() - sent
                with lock:
                    changed = False
                    if text is not None:
                        reference = references.setdefault(clip_index, text)
                        changed = text != reference
                    records.append((sent - start, latency, failed, changed))
            client.close()

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        while time.monotonic() < stop:
            now = time.monotonic() - start
            for pid, label in server_processes(self.http_port).items():
                samples.append(Sample(round(now, 1), f"{label}:{pid}", round(rss_mb(pid), 1)))
            time.sleep(self.sample_every)
        for thread in threads:
            thread.join()
        return {"records": records, "samples": samples}


def per_minute(records: list[tuple[float, float, bool, bool]]) -> list[dict[str, object]]:
    minutes: dict[int, list[tuple[float, bool, bool]]] = defaultdict(list)
    for t, latency, failed, changed in records:
        minutes[int(t // 60)].append((latency, failed, changed))
    rows = []
    for minute in sorted(minutes):
        latencies = np.array([latency for latency, failed, _ in minutes[minute] if not failed])
        rows.append(
            {
                "minute": minute + 1,
                "requests": len(minutes[minute]),
                "failures": sum(failed for _, failed, _ in minutes[minute]),
                "changed_transcripts": sum(changed for _, _, changed in minutes[minute]),
                "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies.size else None,
                "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1) if latencies.size else None,
            }
        )
    return rows


def write_report(result: dict[str, object], settings: dict[str, object], output: Path) -> dict[str, object]:
    """soak.json (summary), soak_minutes.csv, soak_rss.csv and soak.png into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    rows = per_minute(result["records"])
    samples: list[Sample] = result["samples"]
    by_process: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_process[sample.process].append(sample)
    memory = {
        name: {
            "first_mb": points[0].rss_mb,
            "peak_mb": max(p.rss_mb for p in points),
            "last_mb": points[-1].rss_mb,
        }
        for name, points in by_process.items()
    }
    summary = {
        **settings,
        "requests": sum(r["requests"] for r in rows),
        "failures": sum(r["failures"] for r in rows),
        "changed_transcripts": sum(r["changed_transcripts"] for r in rows),
        "minutes": rows,
        "memory": memory,
    }
    (output / "soak.json").write_text(json.dumps(summary, indent=1))
    with (output / "soak_minutes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["minute"])
        writer.writeheader()
        writer.writerows(rows)
    with (output / "soak_rss.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["seconds", "process", "rss_mb"])
        writer.writeheader()
        writer.writerows(asdict(sample) for sample in samples)
    _plot(rows, by_process, output / "soak.png", settings)
    return summary


def _plot(
    rows: list[dict[str, object]], by_process: dict[str, list[Sample]], png: Path, settings: dict
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    minutes = [r["minute"] for r in rows]
    left.plot(minutes, [r["p50_ms"] for r in rows], marker="o", label="p50")
    left.plot(minutes, [r["p99_ms"] for r in rows], marker="o", label="p99")
    left.set(xlabel="minute", ylabel="latency (ms)", title="latency per minute")
    left.legend()
    for name, points in sorted(by_process.items()):
        right.plot([p.seconds / 60 for p in points], [p.rss_mb for p in points], label=name)
    right.set(xlabel="minute", ylabel="RSS (MB)", title="resident memory per process")
    right.legend(fontsize=7)
    figure.suptitle(
        f"soak: {settings.get('clients')} gRPC clients, {settings.get('minutes')} min, "
        f"{settings.get('clips')} clips"
    )
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
