"""perf_analyzer against the `asr` ensemble: input data from real clips, runs, parsing and the plot.

perf_analyzer measures from the server's side too: with an ensemble it prints, per concurrency,
each composing model's queue and compute times, which is where a profile starts. Its CSV keeps
only the ensemble's totals, so the "Composing models" blocks are parsed from its output into a
second CSV.

perf_analyzer drops a concurrency it cannot measure (no stable window within --max-trials) from
its CSV, says so on stderr and still exits 0; and it orders the CSV by throughput, so a saturated
server's levels come out backwards. So the rows are put in concurrency order here, every requested
level is checked against them, and a sweep with a hole fails.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vaani.errors import UserFacingError
from vaani.loadtest.clips import Clip
from vaani.serving.contract import AUDIO, ENSEMBLE

INSTALL_HINT = "run scripts/install-perf-analyzer.sh (make setup does) to put it into the virtual environment"


def binary() -> str:
    """The perf_analyzer of this environment (bin/ next to the interpreter), else the one on PATH."""
    local = Path(sys.executable).parent / "perf_analyzer"
    found = str(local) if local.exists() else shutil.which("perf_analyzer")
    if not found:
        raise UserFacingError(f"perf_analyzer is not installed: {INSTALL_HINT}")
    return found


def spread_by_length(clips: list[Clip], count: int) -> list[Clip]:
    """``count`` clips from the shortest to the longest, evenly spaced in length order."""
    ordered = sorted(clips, key=lambda c: c.seconds)
    if count >= len(ordered):
        return ordered
    step = (len(ordered) - 1) / max(1, count - 1)
    return [ordered[round(i * step)] for i in range(count)]


def write_input_data(clips: list[Clip], path: Path) -> float:
    """perf_analyzer ``--input-data`` JSON: one entry per clip, base64 float32 with its own shape.

    Returns the mean clip length, which turns perf_analyzer's inferences/s into audio-seconds/s
    (it cycles through the entries in order, so each is sent equally often).
    """
    entries = [
        {
            AUDIO: {
                "b64": base64.b64encode(c.audio.astype("<f4").tobytes()).decode(),
                "shape": [len(c.audio)],
            }
        }
        for c in clips
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": entries}))
    return sum(c.seconds for c in clips) / len(clips)


def command(
    url: str,
    input_data: Path,
    csv_path: Path,
    concurrency: str,
    protocol: str = "grpc",
    window_requests: int = 12,
    max_trials: int = 5,
    stability_percent: int = 50,
) -> list[str]:
    """The perf_analyzer command line: ``concurrency`` is ``start:end:step``.

    Windows are counted in requests, not time: with clips from 2 to 15 s a time window holds a
    different mix of lengths each time and never looks stable, while a window of whole cycles
    through the clips does.
    """
    return [
        binary(),
        "-m",
        ENSEMBLE,
        "-u",
        url,
        "-i",
        protocol,
        "--input-data",
        str(input_data),
        "--concurrency-range",
        concurrency,
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(window_requests),
        "--max-trials",
        str(max_trials),
        "--stability-percentage",
        str(stability_percent),
        "-f",
        str(csv_path),
        "--verbose-csv",
    ]


_CONCURRENCY = re.compile(r"^Request concurrency: (\d+)", re.M)
_MODEL = re.compile(r"^\s+(\w+), version: (\S+)\n(?P<body>(?:\s{4,}.+\n)+)", re.M)
_PART = re.compile(r"([a-z][a-z ]*?) (\d+) usec")


def parse_composing(output: str) -> list[dict[str, object]]:
    """Per concurrency and composing model: counts and the server-side latency parts, in microseconds."""
    rows = []
    blocks = _CONCURRENCY.split(output)[1:]
    for concurrency, block in zip(blocks[::2], blocks[1::2]):
        composing = block.split("Composing models:", 1)
        if len(composing) < 2:
            continue
        for match in _MODEL.finditer(composing[1]):
            body = match["body"]
            row: dict[str, object] = {"concurrency": int(concurrency), "model": match[1]}
            for key in ("Inference count", "Execution count"):
                found = re.search(rf"{key}: (\d+)", body)
                row[key.lower().replace(" ", "_")] = int(found[1]) if found else 0
            latency = re.search(r"Avg request latency: (\d+) usec \((.*)\)", body)
            if latency:
                row["avg_latency_us"] = int(latency[1])
                for name, value in _PART.findall(latency[2]):
                    row[name.strip().replace(" ", "_") + "_us"] = int(value)
            rows.append(row)
    return rows


def concurrency_levels(concurrency: str) -> list[int]:
    """The levels of perf_analyzer's ``--concurrency-range start[:end[:step]]``: ``end`` included, a
    lone ``start`` is one level. An open range (``end`` 0) needs a latency limit this tool never sets."""
    parts = concurrency.split(":")
    if len(parts) > 3 or not all(part.isdigit() for part in parts):
        raise UserFacingError(f"concurrency must be start:end:step, e.g. 1:4:1; got {concurrency!r}")
    numbers = [int(part) for part in parts]
    start = numbers[0]
    end = numbers[1] if len(numbers) > 1 else start
    step = numbers[2] if len(numbers) > 2 else 1
    if not 1 <= start <= end or step < 1:
        raise UserFacingError(
            f"concurrency {concurrency!r}: start and step must be at least 1 and end at least start"
        )
    return list(range(start, end + 1, step))


def unmeasured(levels: list[int], rows: list[dict[str, float]], output: str) -> dict[int, str]:
    """Each requested level missing from perf_analyzer's CSV rows, with what its ``output`` says about
    that level (it names the concurrency it could not stabilize), else its last line."""
    measured = {round(row["Concurrency"]) for row in rows}
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    missing = {}
    for level in levels:
        if level not in measured:
            said = [line for line in lines if re.search(rf"\bconcurrency {level}\b", line)]
            missing[level] = " ".join(said) or f"not in its CSV; its last line: {last}"
    return missing


@dataclass(frozen=True)
class PerfRun:
    """One sweep: the measured rows in ascending concurrency, each requested level perf_analyzer did
    not measure with its reason, perf_analyzer's exit status and its whole output (``log``)."""

    rows: list[dict[str, float]]
    unmeasured: dict[int, str]
    returncode: int
    log: Path

    @property
    def code(self) -> int:
        """Non-zero when perf_analyzer failed, and also when it exited 0 but left a level out."""
        return self.returncode or int(bool(self.unmeasured))

    def problems(self) -> list[str]:
        """Why the sweep failed: one line per level that could not be measured, with perf_analyzer's
        reason, then where its whole output is."""
        if not self.code:
            return []
        reasons = [
            f"perf_analyzer could not measure concurrency {n}: {why}" for n, why in self.unmeasured.items()
        ]
        return [*reasons, f"perf_analyzer exited {self.returncode}; its whole output: {self.log}"]


def collect(
    levels: list[int], raw: Path, process: subprocess.CompletedProcess, mean_seconds: float, log: Path
) -> PerfRun:
    """perf_analyzer's CSV at ``raw`` (absent when it failed) as rows in ascending concurrency with
    audio throughput, checked against the requested ``levels`` and the ``process``'s output."""
    rows = sorted(read_csv(raw), key=lambda row: row["Concurrency"]) if raw.exists() else []
    rows = add_audio_throughput(rows, mean_seconds)
    missing = unmeasured(levels, rows, process.stdout + process.stderr)
    return PerfRun(rows, missing, process.returncode, log)


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as source:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(source)
        ]


def add_audio_throughput(rows: list[dict[str, float]], mean_seconds: float) -> list[dict[str, float]]:
    return [{**row, "Audio seconds/Second": row["Inferences/Second"] * mean_seconds} for row in rows]


def plot(rows: list[dict[str, float]], png: Path, title: str) -> None:
    """Throughput (audio-seconds/s, inferences/s) against p99 latency, one point per concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p99 = [r["p99 latency"] / 1000 for r in rows]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(p99, [r["Inferences/Second"] for r in rows], "o-", label="requests/s")
    if all("Audio seconds/Second" in r for r in rows):
        axis.plot(p99, [r["Audio seconds/Second"] for r in rows], "s--", label="audio-seconds/s")
    for x, row in zip(p99, rows):
        axis.annotate(
            f"c={row['Concurrency']:.0f}",
            (x, row["Inferences/Second"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    axis.set_xlabel("p99 latency (ms)")
    axis.set_ylabel("throughput")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)


def run(
    clips: list[Clip],
    url: str,
    output: Path,
    concurrency: str = "1:4:1",
    protocol: str = "grpc",
    entries: int = 6,
    cycles: int = 2,
    max_trials: int = 5,
    stability_percent: int = 50,
) -> PerfRun:
    """Run perf_analyzer and write ``perf.log`` and, for the levels it measured, ``perf.csv``,
    ``perf_composing.csv`` and ``perf.png``."""
    levels = concurrency_levels(concurrency)
    output.mkdir(parents=True, exist_ok=True)
    chosen = spread_by_length(clips, entries)
    mean_seconds = write_input_data(chosen, output / "perf_input.json")
    raw = output / "perf_analyzer.csv"
    raw.unlink(missing_ok=True)
    window = cycles * len(chosen)
    args = command(
        url, output / "perf_input.json", raw, concurrency, protocol, window, max_trials, stability_percent
    )
    print(
        f"perf_analyzer over {protocol} at {url}, concurrency {concurrency}, {len(chosen)} clips of "
        f"{', '.join(f'{c.seconds:.1f}' for c in chosen)} s",
        file=sys.stderr,
    )
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    log = output / "perf.log"
    log.write_text(" ".join(args) + "\n\n" + result.stdout + result.stderr)
    sweep = collect(levels, raw, result, mean_seconds, log)
    if sweep.rows:
        write_results(sweep.rows, result.stdout, output, protocol)
    return sweep


def write_results(rows: list[dict[str, float]], stdout: str, output: Path, protocol: str) -> None:
    """``perf.csv``, ``perf_composing.csv`` (from perf_analyzer's ``stdout``) and ``perf.png``."""
    with (output / "perf.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    composing = parse_composing(stdout)
    if composing:
        fields = list(dict.fromkeys(k for row in composing for k in row))
        with (output / "perf_composing.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=fields, restval=0)
            writer.writeheader()
            writer.writerows(composing)
    plot(rows, output / "perf.png", f"asr over {protocol}: throughput vs p99 latency")
