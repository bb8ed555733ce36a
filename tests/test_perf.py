"""perf_analyzer (installed by the project's setup) against the session's `asr` ensemble, and its parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from vaani.loadtest import perf
from vaani.loadtest.clips import Clip, ClipPlan, load_clips, make_clips
from vaani.serving.contract import ACOUSTIC, AUDIO, DECODER, ENSEMBLE_STEPS, PREPROCESS

DATA = Path(__file__).parent / "data" / "perf_sample"


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


@pytest.mark.server
def test_perf_analyzer_against_asr(triton, tmp_path):
    clips = load_clips(make_clips(tmp_path / "clips", ClipPlan(count=3, min_seconds=2, max_seconds=12)))
    # A lenient stability bound: the test checks that it runs and measures, not how steady the CI box is.
    code, rows = perf.run(
        clips,
        triton.grpc_url,
        tmp_path / "perf",
        "1:1:1",
        entries=3,
        cycles=2,
        max_trials=4,
        stability_percent=100,
    )
    assert code == 0, (tmp_path / "perf" / "perf.log").read_text()[-3000:]
    assert rows[0]["Inferences/Second"] > 0 and rows[0]["Audio seconds/Second"] > 0
    composing = (tmp_path / "perf" / "perf_composing.csv").read_text()
    assert all(step in composing for step in ENSEMBLE_STEPS)
    assert (tmp_path / "perf" / "perf.png").exists()
