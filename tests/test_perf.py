"""perf_analyzer (installed by the project's setup) against the session's `asr` ensemble, and its parsing."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vaani.errors import UserFacingError
from vaani.loadtest import perf
from vaani.loadtest.clips import Clip, ClipPlan, load_clips, make_clips
from vaani.serving.contract import ACOUSTIC, AUDIO, DECODER, ENSEMBLE_STEPS, PREPROCESS

DATA = Path(__file__).parent / "data" / "perf_sample"

# perf_analyzer 2.51.0 against the bundled model on the shared 2-core CPU, as `vaani perf
# --concurrency 1:4:1 --entries 3 --stability 30` runs it: concurrency 4 never settled, and
# perf_analyzer left it out of its CSV, said so on stderr only and exited 0. Its rows are written
# here backwards, as perf_analyzer orders them when throughput falls with concurrency (it sorts its
# CSV by throughput).
DROPPED_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,\
Avg latency,request/response,response wait
3,1.99614,78,301829,2,1152,1297692,4265,3,1509174,1959550,1960057,1961679,1605026,81,1604917
2,1.99461,81,311532,2,641,637041,2305,4,1028393,1190128,1218266,1220211,951609,85,951488
1,1.89701,120,305966,3,356,217712,1186,5,472322,673368,712459,747024,525352,125,525186
"""
DROPPED_STDOUT = """\
Request concurrency: 4
Inferences/Second vs. Client Average Batch Latency
Concurrency: 1, throughput: 1.89701 infer/sec, latency 525352 usec
Concurrency: 2, throughput: 1.99461 infer/sec, latency 951609 usec
Concurrency: 3, throughput: 1.99614 infer/sec, latency 1605026 usec
"""
DROPPED_STDERR = (
    "Failed to obtain stable measurement within 5 measurement windows for concurrency 4. "
    "Please try to increase the --measurement-request-count.\n"
)


def test_input_data_is_base64_float32_with_one_shape_per_entry(tmp_path):
    clips = [Clip(f"c{n}", "", np.linspace(-1, 1, n, dtype=np.float32)) for n in (32_000, 48_000, 80_000)]
    mean = perf.write_input_data(clips, tmp_path / "input.json")
    entries = json.loads((tmp_path / "input.json").read_text())["data"]
    assert [e[AUDIO]["shape"] for e in entries] == [[32_000], [48_000], [80_000]]
    decoded = np.frombuffer(base64.b64decode(entries[1][AUDIO]["b64"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, clips[1].audio)
    assert mean == pytest.approx((2 + 3 + 5) / 3)


def test_spread_by_length_takes_shortest_to_longest():
    clips = [Clip(str(n), "", np.zeros(n * 1600, dtype=np.float32)) for n in (50, 10, 30, 20, 40)]
    assert [c.path for c in perf.spread_by_length(clips, 3)] == ["10", "30", "50"]


def test_composing_models_are_parsed_per_concurrency():
    rows = perf.parse_composing((DATA / "perf_analyzer.out").read_text())
    assert {(r["concurrency"], r["model"]) for r in rows} == {
        (c, m) for c in (1, 2) for m in (PREPROCESS, ACOUSTIC, DECODER)
    }
    wav2vec2 = next(r for r in rows if r["model"] == ACOUSTIC and r["concurrency"] == 1)
    assert wav2vec2["inference_count"] > 0
    assert wav2vec2["compute_infer_us"] > 0 and "queue_us" in wav2vec2


def test_plot_from_recorded_csv(tmp_path):
    rows = perf.add_audio_throughput(perf.read_csv(DATA / "perf_analyzer.csv"), mean_seconds=9.0)
    perf.plot(rows, tmp_path / "perf.png", "sample")
    assert (tmp_path / "perf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_concurrency_range_levels():
    assert perf.concurrency_levels("1:4:1") == [1, 2, 3, 4]
    assert perf.concurrency_levels("1:4") == [1, 2, 3, 4]
    assert perf.concurrency_levels("2:8:3") == [2, 5, 8]
    assert perf.concurrency_levels("4") == [4]
    for wrong in ("", "1:0:1", "4:1", "1:4:0", "a:b", "1:2:3:4"):
        with pytest.raises(UserFacingError):
            perf.concurrency_levels(wrong)


def test_a_level_perf_analyzer_dropped_fails_the_sweep(tmp_path):
    (tmp_path / "perf_analyzer.csv").write_text(DROPPED_CSV)
    process = subprocess.CompletedProcess([], 0, DROPPED_STDOUT, DROPPED_STDERR)
    sweep = perf.collect([1, 2, 3, 4], tmp_path / "perf_analyzer.csv", process, 9.0, tmp_path / "perf.log")
    assert [row["Concurrency"] for row in sweep.rows] == [1, 2, 3], "ascending concurrency"
    assert sweep.code != 0, "perf_analyzer exited 0, but level 4 is missing"
    assert list(sweep.unmeasured) == [4]
    assert "stable measurement within 5 measurement windows for concurrency 4" in sweep.unmeasured[4]
    assert sweep.problems()[0].startswith("perf_analyzer could not measure concurrency 4: Failed")


def test_a_complete_sweep_passes(tmp_path):
    process = subprocess.CompletedProcess([], 0, (DATA / "perf_analyzer.out").read_text(), "")
    sweep = perf.collect([1, 2], DATA / "perf_analyzer.csv", process, 9.0, tmp_path / "perf.log")
    assert sweep.code == 0 and not sweep.unmeasured and not sweep.problems()
    assert [row["Concurrency"] for row in sweep.rows] == [1, 2]


@pytest.mark.server
def test_perf_analyzer_against_asr(triton, tmp_path):
    clips = load_clips(make_clips(tmp_path / "clips", ClipPlan(count=3, min_seconds=2, max_seconds=12)))
    # A lenient stability bound: the test checks that it runs and measures, not how steady the CI box is.
    sweep = perf.run(
        clips,
        triton.grpc_url,
        tmp_path / "perf",
        "1:1:1",
        entries=3,
        cycles=2,
        max_trials=4,
        stability_percent=100,
    )
    assert sweep.code == 0, (tmp_path / "perf" / "perf.log").read_text()[-3000:]
    rows = sweep.rows
    assert rows[0]["Inferences/Second"] > 0 and rows[0]["Audio seconds/Second"] > 0
    composing = (tmp_path / "perf" / "perf_composing.csv").read_text()
    assert all(step in composing for step in ENSEMBLE_STEPS)
    assert (tmp_path / "perf" / "perf.png").exists()


@pytest.mark.server
def test_perf_names_each_level_it_could_not_measure(triton, tmp_path):
    """Two windows can never be judged stable (perf_analyzer compares the last three): the sweep
    must fail and name every requested level with perf_analyzer's reason."""
    clips = load_clips(make_clips(tmp_path / "clips", ClipPlan(count=2, min_seconds=2, max_seconds=4)))
    sweep = perf.run(clips, triton.grpc_url, tmp_path / "perf", "1:2:1", entries=2, cycles=1, max_trials=2)
    assert sweep.code != 0 and not sweep.rows
    assert list(sweep.unmeasured) == [1, 2]
    assert "stable measurement within 2 measurement windows for concurrency 1" in sweep.unmeasured[1]
    assert len(sweep.problems()) == 3 and not (tmp_path / "perf" / "perf.csv").exists()
