"""The GPU benchmark's report: Markdown, JSON and plot from recorded results, targets judged right."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from vaani.benchmarks.gpu_report import ENGINE, cer, markdown, readme_table, targets, write_report

RECORDED = sorted(
    path
    for path in (Path(__file__).resolve().parents[1] / "benchmarks" / "results").glob("*.json")
    if '"ceiling_flops"' in path.read_text(encoding="utf-8")  # this benchmark's, not other tools'
)


def _row(variant: str, ms: float, audio: float) -> dict:
    return {
        "variant": variant,
        "ms": ms,
        "ms_min": ms * 0.98,
        "reps": 5,
        "audio_seconds": audio,
        "rtf": audio / (ms / 1000),
        "peak_memory_gib": 1.5,
    }


def _scenario(workload: str, concurrency: int, rtf: float, p50: float) -> dict:
    return {
        "workload": workload,
        "concurrency": concurrency,
        "requests": 100,
        "audio_seconds": 500.0,
        "rtf": rtf,
        "p50_ms": p50,
        "p90_ms": p50 * 1.2,
        "p99_ms": p50 * 1.5,
        "throughput_rps": 50.0,
        "steps": {},
    }


@pytest.fixture
def results() -> dict:
    """A small recorded-shaped result: two paths, two workloads, the served scenarios."""
    workloads = {"1x5s": [5.0], "32x10s": [10.0] * 32}
    return {
        "command": "python -m vaani.benchmarks.gpu_benchmark --out benchmarks/results",
        "environment": {
            "gpu": "NVIDIA H200",
            "date": "2026-11-21",
            "torch": "2.11.0",
            "cuda": "13.0",
            "transformers": "5.17.0",
            "python": "3.12.3",
        },
        "model": {"parameters": 315_506_371, "flops_per_audio_second": 38.4e9},
        "ceiling_flops": 790e12,
        "workload_seconds": {**workloads, "mixed": [2.0, 15.0]},
        "workloads": {
            "1x5s": [_row("eager BF16 + SDPA", 8.6, 5.0), _row(ENGINE, 2.0, 5.0)],
            "32x10s": [_row("eager BF16 + SDPA", 52.0, 320.0), _row(ENGINE, 29.0, 320.0)],
        },
        "logit_accuracy": {
            ENGINE: {
                "clips_seconds": [2.0, 15.0],
                "max_abs_diff": 0.05,
                "logit_scale": 3.0,
                "relative_l2": 0.01,
                "argmax_agreement": 0.97,
            }
        },
        "bundled_accuracy": {
            "truth": ["नमस्ते दुनिया", "एक दो"],
            "reference": ["नमस्ते दुनिया", "एक दो"],
            "engine": ["नमस्ते दुनिया", "एक दो"],
        },
        "profile_32x10s": {
            "total_ms": 28.0,
            "categories_ms": {"matrix product": 20.0, "attention": 8.0},
            "top": [{"kernel": "sm90_gemm", "ms": 20.0, "calls": 96}],
        },
        "served": {
            "scenarios": [_scenario("1x5s", 1, 700.0, 7.0), _scenario("mixed", 64, 6_500.0, 90.0)],
            "gpu_memory_gib": 12.0,
        },
    }


def test_write_report_names_files_by_gpu_and_date(tmp_path: Path, results: dict) -> None:
    paths = write_report(results, tmp_path)
    assert [p.name for p in paths] == [
        "nvidia-h200-2026-11-21.json",
        "nvidia-h200-2026-11-21.md",
        "nvidia-h200-2026-11-21.png",
    ]
    assert json.loads(paths[0].read_text(encoding="utf-8")) == results
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_states_time_real_time_factor_and_ceiling_share(results: dict) -> None:
    table = readme_table(results)
    # 32 × 10 s in 29 ms: 11,034× real time; × 38.4 GFLOP / 790 TFLOP/s = 54 % of the ceiling.
    assert "29.0 ms · 11,034× · 54%" in table
    assert "| **engine** |" in table
    assert "`asr` via tritonserver, mixed, concurrency 64" in table
    assert "p50 90.0 ms" in table


def test_targets_compare_measured_with_goals(results: dict) -> None:
    mixed_engine, engine, ensemble, latency = targets(results)
    assert mixed_engine.measured is None and mixed_engine.gap() == "not measured"  # no mixed row
    assert engine.met and engine.gap() == "met"  # 11,034× ≥ 11,000×
    assert ensemble.met is False
    assert ensemble.gap() == "missed: 81% of the goal (1,500 × real time short)"
    assert latency.met  # 7 ms ≤ 8 ms
    slower = copy.deepcopy(results)
    slower["served"]["scenarios"][0]["p50_ms"] = 9.5
    assert targets(slower)[3].gap() == "missed: 1.5 ms over"


def test_targets_without_served_results_say_not_measured(results: dict) -> None:
    del results["served"]
    results["served_error"] = "RuntimeError: tritonserver exited"
    _, _, ensemble, _ = targets(results)
    assert ensemble.measured is None and ensemble.gap() == "not measured"
    text = markdown(results)
    assert "(d) did not run: RuntimeError: tritonserver exited" in text


def test_markdown_reports_accuracy_and_profile(results: dict) -> None:
    text = markdown(results)
    assert text.startswith("# GPU benchmark: NVIDIA H200, 2026-11-21")
    assert "relative L2 1.00e-02" in text
    assert "CER FP32 reference 0.00 %, engine 0.00 % (Δ +0.00 points); 2 of 2" in text
    assert "| matrix product | 20.00 | 71% |" in text


def test_cer_counts_character_edits() -> None:
    assert cer(["abcd"], ["abcd"]) == 0.0
    assert cer(["abcd"], ["abxd"]) == 25.0
    assert cer(["ab", "cd"], ["ab", ""]) == 50.0
    assert cer(["a  b"], ["a b"]) == 0.0  # whitespace is collapsed on both sides


@pytest.mark.parametrize("path", RECORDED, ids=[p.name for p in RECORDED])
def test_recorded_results_render(tmp_path: Path, path: Path) -> None:
    """Every committed benchmark result still renders with the current report code."""
    results = json.loads(path.read_text(encoding="utf-8"))
    written = write_report(results, tmp_path)
    text = written[1].read_text(encoding="utf-8")
    assert results["environment"]["gpu"] in text
    assert all(target.name in text for target in targets(results))


def test_served_report_puts_the_recorded_paths_side_by_side(tmp_path: Path) -> None:
    from vaani.benchmarks.served_report import main

    recorded = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "nvidia-h200-2026-12-04"
    pairs = [f"BLS={recorded / 'bls-masks.json'}", f"in-step={recorded / 'in-step-thin.json'}"]
    assert main([*pairs, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "served.md").read_text(encoding="utf-8")
    in_step = json.loads((recorded / "in-step-thin.json").read_text(encoding="utf-8"))
    mixed = next(s for s in in_step["served"]["scenarios"] if s["workload"] == "mixed")
    assert f"| in-step | {mixed['acoustic_instances']} | mixed | 64 | {mixed['rtf']:,.0f}× |" in text
    assert "| BLS | 2 | windows |" in text and "| in-step | 2 | wav2vec2 |" in text  # per-step rows
    assert "| in-step | 2 |" in text.split("perf_analyzer's composing models")[1]
    assert (tmp_path / "served.png").stat().st_size > 10_000
