"""Summaries of per-request records: throughput in requests and audio-seconds, latency percentiles.

Locust's own CSVs report requests per second; for speech the unit that matters is audio: a
server that answers 10 requests/s of 1 s clips does less work than one answering 2 requests/s of
15 s clips. Every run therefore logs one record per request (when, how long, how much audio) and
the numbers here are computed from those records, the same way for every system in the bench.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

REQUEST_FIELDS = ("start", "latency_ms", "audio_seconds", "request_type", "name", "users", "ok")


@dataclass(frozen=True)
class RequestRecord:
    """One request: start (epoch seconds), latency, audio length, and the user count at its start."""

    start: float
    latency_ms: float
    audio_seconds: float
    request_type: str
    name: str
    users: int
    ok: bool


@dataclass(frozen=True)
class Summary:
    """Throughput and latency of a set of requests; latencies are of the successful ones."""

    requests: int
    failures: int
    elapsed_s: float
    requests_per_s: float
    audio_seconds_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_rtf: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(records: Iterable[RequestRecord]) -> Summary:
    """Throughput over the span from the first start to the last end, so idle tails do not dilute it."""
    records = list(records)
    good = [r for r in records if r.ok]
    if not good:
        return Summary(len(records), len(records), 0.0, 0.0, 0.0, *([float("nan")] * 4))
    begin = min(r.start for r in good)
    end = max(r.start + r.latency_ms / 1000 for r in good)
    elapsed = max(end - begin, 1e-9)
    latencies = np.array([r.latency_ms for r in good])
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    rtf = np.mean([r.latency_ms / 1000 / r.audio_seconds for r in good if r.audio_seconds > 0])
    return Summary(
        requests=len(records),
        failures=len(records) - len(good),
        elapsed_s=elapsed,
        requests_per_s=len(good) / elapsed,
        audio_seconds_per_s=sum(r.audio_seconds for r in good) / elapsed,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_rtf=float(rtf),
    )


def summarize_runs(runs: list[list[RequestRecord]]) -> Summary:
    """Several runs of one system as one: counts and latencies pooled, throughput over the summed spans.

    The bench interleaves short runs of every system so that a neighbour's load on a shared
    machine hits them all alike; the gaps between one system's runs are not its time.
    """
    parts = [summarize(run) for run in runs if run]
    pooled = summarize([r for run in runs for r in run])
    elapsed = sum(p.elapsed_s for p in parts)
    if not elapsed:
        return pooled
    good = pooled.requests - pooled.failures
    audio = sum(r.audio_seconds for run in runs for r in run if r.ok)
    values = pooled.as_dict() | {
        "elapsed_s": elapsed,
        "requests_per_s": good / elapsed,
        "audio_seconds_per_s": audio / elapsed,
    }
    return Summary(**values)


def by_key(records: Iterable[RequestRecord], key) -> dict[object, Summary]:
    """One summary per value of ``key(record)``, in sorted key order."""
    groups: dict[object, list[RequestRecord]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return {k: summarize(groups[k]) for k in sorted(groups)}


def write_records(records: Iterable[RequestRecord], path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(REQUEST_FIELDS)
        for record in records:
            writer.writerow([getattr(record, name) for name in REQUEST_FIELDS])


def read_records(path: Path) -> list[RequestRecord]:
    types = {f.name: f.type for f in fields(RequestRecord)}
    casts = {"float": float, "int": int, "str": str, "bool": lambda v: v == "True"}
    with path.open(newline="") as source:
        return [
            RequestRecord(**{k: casts[types[k]](v) for k, v in row.items()}) for row in csv.DictReader(source)
        ]


def write_summaries(rows: list[dict[str, object]], path: Path) -> None:
    """Rows of labels plus `Summary` fields as one CSV."""
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
