"""The bench's outputs: one CSV, one Markdown table (the README includes it) and one PNG.

Kept apart from the measuring code so that the table and plot can be regenerated from a
recorded ``bench.csv`` + ``bench.json`` (and tested on small recorded samples).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

BASELINE = "fastapi"


@dataclass(frozen=True)
class BenchRow:
    """One system at one concurrency; ratios are against the FastAPI baseline at the same concurrency."""

    system: str
    protocol: str
    concurrency: int
    requests: int
    failures: int
    requests_per_s: float
    audio_seconds_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_rtf: float
    transcripts_match: float
    throughput_vs_baseline: float = math.nan
    p99_vs_baseline: float = math.nan


def with_ratios(rows: list[BenchRow]) -> list[BenchRow]:
    """Fill the ratio columns from the baseline row of the same concurrency (NaN where there is none)."""
    baseline = {r.concurrency: r for r in rows if r.system == BASELINE}
    out = []
    for row in rows:
        base = baseline.get(row.concurrency)
        if base is None or not base.audio_seconds_per_s:
            out.append(row)
            continue
        values = asdict(row)
        values["throughput_vs_baseline"] = row.audio_seconds_per_s / base.audio_seconds_per_s
        values["p99_vs_baseline"] = row.p99_ms / base.p99_ms
        out.append(BenchRow(**values))
    return out


def write_csv(rows: list[BenchRow], path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(BenchRow)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def read_csv(path: Path) -> list[BenchRow]:
    casts = {"str": str, "int": int, "float": float}
    kinds = {f.name: casts[f.type] for f in fields(BenchRow)}
    with path.open(newline="") as source:
        return [BenchRow(**{k: kinds[k](v) for k, v in row.items()}) for row in csv.DictReader(source)]


def _ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}×"


def goal(rows: list[BenchRow], factor: float = 1.5) -> str:
    """The promise: at saturation, Triton ≥ ``factor`` × FastAPI's throughput at equal or better p99."""
    top = max(r.concurrency for r in rows)
    triton = [r for r in rows if r.system == "triton" and r.concurrency == top]
    if not triton or not any(r.system == BASELINE and r.concurrency == top for r in rows):
        return "no saturation run of both Triton and FastAPI: no comparison"
    best = max(triton, key=lambda r: r.throughput_vs_baseline)
    met = best.throughput_vs_baseline >= factor and best.p99_vs_baseline <= 1.0
    return (
        f"At {top} concurrent users Triton ({best.protocol}) serves {best.throughput_vs_baseline:.2f}× the "
        f"audio-seconds/s of the FastAPI baseline at {best.p99_vs_baseline:.2f}× its p99 latency: the goal "
        f"(≥ {factor}× at equal or better p99) is {'met' if met else 'not met'}."
    )


def markdown(rows: list[BenchRow], conditions: dict[str, object]) -> str:
    """The table with its conditions (model, CPU, date, threads, clips, load) above it."""
    lines = [f"### {conditions.get('title', 'vaani bench')}", ""]
    for key in ("model", "parameters", "cpu", "cores", "threads", "date", "clips", "load", "triton"):
        if key in conditions:
            lines.append(f"- **{key}**: {conditions[key]}")
    lines += [
        "",
        "| system | protocol | concurrency | requests/s | audio-s/s | p50 ms | p90 ms | p99 ms | RTF | "
        "throughput vs FastAPI | p99 vs FastAPI | failures | transcripts = PyTorch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.system} | {r.protocol} | {r.concurrency} | {r.requests_per_s:.2f} | "
            f"{r.audio_seconds_per_s:.1f} | {r.p50_ms:.0f} | {r.p90_ms:.0f} | {r.p99_ms:.0f} | "
            f"{r.mean_rtf:.3f} | {_ratio(r.throughput_vs_baseline)} | {_ratio(r.p99_vs_baseline)} | "
            f"{r.failures}/{r.requests} | {r.transcripts_match:.0%} |"
        )
    lines += ["", goal(rows), ""]
    return "\n".join(lines)


def plot(rows: list[BenchRow], png: Path, title: str) -> None:
    """Audio-seconds/s and p99 latency per system and concurrency, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.system}\n{r.protocol} c={r.concurrency}" for r in rows]
    colors = [
        "tab:gray" if r.system == BASELINE else "tab:green" if r.system == "triton" else "tab:blue"
        for r in rows
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.bar(labels, [r.audio_seconds_per_s for r in rows], color=colors)
    left.set_ylabel("audio-seconds per second (higher is better)")
    right.bar(labels, [r.p99_ms for r in rows], color=colors)
    right.set_ylabel("p99 latency, ms (lower is better)")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=7, rotation=45)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)


def write_all(rows: list[BenchRow], conditions: dict[str, object], directory: Path) -> Path:
    """``bench.csv``, ``bench.json`` (conditions), ``bench.md`` and ``bench.png`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = with_ratios(rows)
    write_csv(rows, directory / "bench.csv")
    (directory / "bench.json").write_text(json.dumps(conditions, indent=1, ensure_ascii=False) + "\n")
    table = directory / "bench.md"
    table.write_text(markdown(rows, conditions), encoding="utf-8")
    plot(rows, directory / "bench.png", str(conditions.get("title", "vaani bench")))
    return table


def regenerate(directory: Path) -> Path:
    """Table and plot again from a recorded ``bench.csv`` and ``bench.json``."""
    conditions = json.loads((directory / "bench.json").read_text())
    return write_all(read_csv(directory / "bench.csv"), conditions, directory)
