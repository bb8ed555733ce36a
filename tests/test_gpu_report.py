"""The GPU benchmark's report: Markdown, JSON and plot from recorded results, targets judged right."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from vaani.benchmarks.gpu_report import (
    ENGINE,
    cer,
    markdown,
    newest_before,
    readme_table,
    recorded_runs,
    regression_check,
    targets,
    write_report,
)

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
    mixed_engine, engine, ensemble, latency, fp8 = targets(results)
    assert fp8.measured is None and fp8.gap() == "not measured"  # no FP8 row
    assert mixed_engine.measured is None and mixed_engine.gap() == "not measured"  # no mixed row
    assert engine.met is False and engine.gap() == "missed: 92% of the goal (966 × real time short)"
    assert ensemble.met is False
    assert ensemble.gap() == "missed: 65% of the goal (3,500 × real time short)"
    assert latency.met is False and latency.gap() == "missed: 1.0 ms over"  # 7 ms against 6 ms
    faster = copy.deepcopy(results)
    faster["served"]["scenarios"][0]["p50_ms"] = 5.5
    faster["workloads"]["32x10s"][-1]["rtf"] = 12_500.0
    assert targets(faster)[3].met and targets(faster)[1].gap() == "met"


def test_targets_without_served_results_say_not_measured(results: dict) -> None:
    del results["served"]
    results["served_error"] = "RuntimeError: tritonserver exited"
    _, _, ensemble, _, _ = targets(results)
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


# ---------------------------------------------------------------- the regression guard

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
ENGINE_RUN = RESULTS_DIR / "nvidia-h200-2026-11-23.json"
SERVED_RUN = RESULTS_DIR / "nvidia-h200-2026-12-04" / "in-step-thin.json"


def _recorded(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _save(directory: Path, name: str, results: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def _later(results: dict, date: str = "2026-12-05", time: str = "06:00:00") -> dict:
    """A copy of a recorded run as if measured again later (with the commit it would record)."""
    later = copy.deepcopy(results)
    later["environment"].update(date=date, time=time)
    later["commit"] = "c59f2a9 + working tree"
    return later


def _engine_ms(results: dict, workload: str) -> float:
    return next(row["ms"] for row in results["workloads"][workload] if row["variant"] == ENGINE)


def _scale_engine(results: dict, workload: str, factor: float) -> None:
    for row in results["workloads"][workload]:
        if row["variant"] == ENGINE:
            row["ms"] *= factor
            row["rtf"] /= factor


def test_guard_flags_each_engine_workload_over_five_percent_slower(tmp_path: Path) -> None:
    baseline = _recorded(ENGINE_RUN)
    baseline["commit"] = "80572d6"
    _save(tmp_path, ENGINE_RUN.name, baseline)
    now = _later(baseline)
    del now["served"]
    _scale_engine(now, "32x10s", 1.073)  # 7.3 % slower: loud
    _scale_engine(now, "mixed", 1.04)  # 4 % slower: within the noise the guard allows
    _scale_engine(now, "1x5s", 0.5)  # twice as fast
    check = regression_check(now, tmp_path)
    lines = check["lines"]
    assert lines[0] == f"engine: against {ENGINE_RUN.name} (commit 80572d6, 2026-11-23)"
    assert check["regressions"] == 1
    assert (
        f"REGRESSION: engine 32x10s is 7.3 % slower than {ENGINE_RUN.name} (commit 80572d6, 2026-11-23)"
        in lines
    )
    then = _engine_ms(baseline, "32x10s")
    assert (
        f"  engine 32x10s: {then * 1.073:,.1f} ms now, {then:,.1f} ms then; ratio 1.073 (7.3 % slower)"
        in lines
    )
    assert any(line.startswith("  engine mixed:") and "(4.0 % slower)" in line for line in lines)
    assert any(line.startswith("  engine 1x5s:") and "(50.0 % faster)" in line for line in lines)
    assert not any(line.startswith("REGRESSION") and "mixed" in line for line in lines)
    compared = {item["case"] for item in check["comparisons"]}
    assert compared == {f"engine {name}" for name in baseline["workloads"]}


def test_guard_says_when_the_hosts_python_differs(tmp_path: Path) -> None:
    """The same GPU on a slower host: the launch-bound eager probe says so beside the comparisons."""
    baseline = _recorded(ENGINE_RUN)
    _save(tmp_path, ENGINE_RUN.name, baseline)
    now = _later(baseline)
    del now["served"]
    assert not any(line.startswith("  host:") for line in regression_check(now, tmp_path)["lines"])
    probe = next(row for row in now["workloads"]["1x5s"] if row["variant"] == "eager BF16 + SDPA")
    then_ms = probe["ms"]
    probe["ms"] *= 1.43
    lines = regression_check(now, tmp_path)["lines"]
    assert (
        f"  host: Hugging Face's eager BF16 1x5s (launch-bound, unchanged code) {then_ms * 1.43:.1f} ms now, "
        f"{then_ms:.1f} ms then: another host's Python, so small calls and served rows compare hosts too"
        in lines
    )


def test_guard_compares_served_throughput_and_latency_with_the_newest_served_run(tmp_path: Path) -> None:
    served = _recorded(SERVED_RUN)
    _save(tmp_path / "nvidia-h200-2026-12-04", SERVED_RUN.name, served)
    _save(tmp_path, ENGINE_RUN.name, _recorded(ENGINE_RUN))
    now = _later(served)
    mixed = next(
        s for s in now["served"]["scenarios"] if s["workload"] == "mixed" and s["acoustic_instances"] == 2
    )
    mixed["rtf"] /= 1.10  # 10 % slower: throughput is judged as time, then ÷ now
    single = next(
        s for s in now["served"]["scenarios"] if s["concurrency"] == 1 and s["acoustic_instances"] == 2
    )
    single["p50_ms"] *= 1.02  # latency 2 % up: allowed
    check = regression_check(now, tmp_path)
    assert set(check["baselines"]) == {"served"}  # a served-only run is compared on what it measured
    assert check["baselines"]["served"].endswith(f"nvidia-h200-2026-12-04/{SERVED_RUN.name}")
    assert check["regressions"] == 1
    regression = next(line for line in check["lines"] if line.startswith("REGRESSION"))
    assert regression.startswith("REGRESSION: served mixed c=64, 2 instance(s) is 10.0 % slower than ")
    assert f"nvidia-h200-2026-12-04/{SERVED_RUN.name} (" in regression and ", 2026-12-04)" in regression


def test_guard_takes_the_newest_older_run_on_the_same_gpu(tmp_path: Path) -> None:
    recorded = _recorded(ENGINE_RUN)
    old = _later(recorded, "2026-12-01", "09:00:00")
    morning, evening = _later(recorded, "2026-12-02", "08:00:00"), _later(recorded, "2026-12-02", "20:00:00")
    future = _later(recorded, "2026-12-30", "08:00:00")
    h100 = _later(recorded, "2026-12-03", "08:00:00")
    h100["environment"]["gpu"] = "NVIDIA H100 80GB HBM3"
    for name, run in [
        ("a.json", old),
        ("b.json", evening),
        ("c.json", morning),
        ("d.json", future),
        ("e.json", h100),
    ]:
        _save(tmp_path / "runs", name, run)
    (tmp_path / "runs" / "other-tool.json").write_text('{"rows": []}', encoding="utf-8")
    check = regression_check(_later(recorded, "2026-12-05"), tmp_path)
    assert check["baselines"]["engine"] == str(tmp_path / "runs" / "b.json")  # evening of the newest date
    assert check["lines"][0] == "engine: against runs/b.json (commit c59f2a9 + working tree, 2026-12-02)"
    assert check["regressions"] == 0


def test_guard_without_an_earlier_run_says_so(tmp_path: Path) -> None:
    now = _later(_recorded(ENGINE_RUN))
    now["environment"]["gpu"] = "NVIDIA B200"
    check = regression_check(now, tmp_path)
    assert check["regressions"] == 0 and check["comparisons"] == []
    assert (
        check["lines"][0]
        == f"engine: no earlier recorded run on NVIDIA B200 under {tmp_path} to compare with"
    )


def test_guard_orders_same_day_runs_recorded_without_a_time_as_the_readme_cites_them() -> None:
    """Before times were recorded: of one date, the run named `<gpu>-<date>.json` is the newest."""
    runs = recorded_runs(RESULTS_DIR)
    canonical = next(run for run in runs if run.path == ENGINE_RUN)
    assert newest_before(_later(canonical.results), runs, "engine").path.parent == RESULTS_DIR
    before = newest_before(canonical.results, runs, "engine")
    assert before is not None and before.path.name.startswith("nvidia-h200-2026-11-23-")


def test_benchmark_results_carry_the_check_into_the_report(tmp_path: Path, results: dict) -> None:
    baseline = copy.deepcopy(results)
    _save(tmp_path / "recorded", "nvidia-h200-2026-11-21.json", baseline)
    now = _later(results)
    _scale_engine(now, "32x10s", 1.2)
    now["regression_check"] = regression_check(now, tmp_path / "recorded")
    text = markdown(now)
    assert "## Against the newest recorded run" in text
    assert "REGRESSION: engine 32x10s is 20.0 % slower than nvidia-h200-2026-11-21.json" in text


def test_check_command_exits_nonzero_on_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vaani.benchmarks.gpu_report import main

    _save(tmp_path / "recorded", ENGINE_RUN.name, _recorded(ENGINE_RUN))
    now = _later(_recorded(ENGINE_RUN))
    path = _save(tmp_path, "now.json", now)
    assert main([str(path), "--check", str(tmp_path / "recorded")]) == 0
    _scale_engine(now, "mixed", 1.06)
    _save(tmp_path, "now.json", now)
    assert main([str(path), "--check", str(tmp_path / "recorded")]) == 1
    assert "REGRESSION: engine mixed is 6.0 % slower" in capsys.readouterr().out


def test_normalization_suite_checks_every_method_against_float64() -> None:
    """The benchmark's normalization section on the CPU: the engine's and each candidate's error and gaps."""
    from vaani.benchmarks.gpu_normalization_suite import BLOCK_SUMS, SCATTER_ADD, normalization_suite
    from vaani.benchmarks.gpu_workloads import large_config

    torch = pytest.importorskip("torch")
    timer = lambda run, warmup=0: {"ms": 0.0, "ms_min": 0.0, "reps": 1}  # noqa: E731  (timing is the GPU's)
    suite = normalization_suite(torch, large_config(), timer, {"few": [0.02, 3.0, 0.5, 7.0]}, device="cpu")
    methods = suite["few"]
    assert set(methods) == {SCATTER_ADD, BLOCK_SUMS, "float64 cumulative sum", "segment_reduce, float64"}
    assert methods[BLOCK_SUMS]["max_abs_error"] < 1e-5
    assert all(m["gap_max"] == 0.0 for m in methods.values())


def test_before_variant_swaps_the_engine_normalization_only_for_its_duration() -> None:
    """The engine itself keeps its normalization: the replaced one is in it only while measured."""
    pytest.importorskip("torch")
    from vaani.benchmarks.gpu_normalization_suite import packed_normalization
    from vaani.benchmarks.normalization_alternatives import normalize_packed_scatter
    from vaani.serving.engines import torch_engine, torch_normalization

    with packed_normalization(normalize_packed_scatter):
        assert torch_engine.normalize_packed is normalize_packed_scatter
    assert torch_engine.normalize_packed is torch_normalization.normalize_packed
    with packed_normalization(None):
        assert torch_engine.normalize_packed is torch_normalization.normalize_packed
