"""The bench's table and plot, and the request statistics they are made of, on recorded sample data."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from vaani.benchmarks import bench_report as report
from vaani.loadtest.stats import RequestRecord, by_key, read_records, summarize, write_records

DATA = Path(__file__).parent / "data" / "bench_sample"


def _records() -> list[RequestRecord]:
    # Ten 2-s requests of 4 s of audio, back to back from t=0: 0.5 requests/s, 2 audio-s/s.
    return [RequestRecord(2.0 * i, 2000.0, 4.0, "triton-http", "0-5 s", 1, True) for i in range(10)]


def test_summary_counts_audio_seconds_and_failures():
    records = [*_records(), RequestRecord(20.0, 5.0, 4.0, "triton-http", "0-5 s", 1, False)]
    s = summarize(records)
    assert (s.requests, s.failures) == (11, 1)
    assert s.elapsed_s == pytest.approx(20.0)
    assert s.requests_per_s == pytest.approx(0.5)
    assert s.audio_seconds_per_s == pytest.approx(2.0)
    assert s.p99_ms == pytest.approx(2000.0) and s.mean_rtf == pytest.approx(0.5)


def test_all_failed_summary_has_no_latency():
    s = summarize([RequestRecord(0.0, 5.0, 4.0, "fastapi", "", 1, False)])
    assert s.failures == 1 and s.requests_per_s == 0 and math.isnan(s.p99_ms)


def test_records_round_trip_and_group(tmp_path):
    records = [*_records(), RequestRecord(0.0, 10.0, 1.0, "triton-grpc", "0-5 s", 4, True)]
    write_records(records, tmp_path / "requests.csv")
    assert read_records(tmp_path / "requests.csv") == records
    groups = by_key(records, lambda r: (r.request_type, r.users))
    assert list(groups) == [("triton-grpc", 4), ("triton-http", 1)]


def test_table_and_plot_from_recorded_bench(tmp_path):
    for name in ("bench.csv", "bench.json"):
        shutil.copy(DATA / name, tmp_path / name)
    table = report.regenerate(tmp_path).read_text()
    rows = report.read_csv(tmp_path / "bench.csv")
    assert table.count("\n| ") == len(rows) + 2  # header, separator, one line per row
    for key in ("**model**", "**cpu**", "**date**", "**threads**"):
        assert key in table
    baseline = [r for r in rows if r.system == "fastapi"]
    assert baseline and all(r.throughput_vs_baseline == pytest.approx(1.0) for r in baseline)
    assert "goal" in table.splitlines()[-1]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_are_against_the_baseline_at_the_same_concurrency():
    def row(system, concurrency, audio, p99):
        return report.BenchRow(system, "http", concurrency, 10, 0, 1.0, audio, 1, 1, p99, 0.1, 1.0)

    rows = report.with_ratios(
        [
            row("triton", 1, 30, 100),
            row("triton", 8, 90, 400),
            row("fastapi", 1, 20, 100),
            row("fastapi", 8, 30, 800),
        ]
    )
    assert rows[0].throughput_vs_baseline == pytest.approx(1.5)
    assert rows[1].throughput_vs_baseline == pytest.approx(3.0) and rows[1].p99_vs_baseline == pytest.approx(
        0.5
    )
    assert "is met" in report.goal(rows)
    assert "not met" in report.goal(
        report.with_ratios([row("triton", 8, 40, 400), row("fastapi", 8, 30, 800)])
    )
