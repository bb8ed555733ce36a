"""Markdown, JSON and a plot from the raw results of `vaani.benchmarks.gpu_benchmark`.

Kept apart from the benchmark so that the report (the part the README quotes) is tested
in CI on recorded results, without a GPU; the targets it judges are the issue's.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

ENGINE = "engine"  # the variant that is served (defaults of TorchEngineOptions)
FP8 = "engine FP8 matrix products"  # TorchEngineOptions(fp8=True): issue 22's stretch goal


@dataclass(frozen=True)
class Target:
    name: str
    goal: float
    measured: float | None
    unit: str
    higher_is_better: bool = True

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal

    def gap(self) -> str:
        """How far from the goal, as the README states it."""
        if self.measured is None:
            return "not measured"
        if self.met:
            return "met"
        if self.higher_is_better:
            short = self.goal - self.measured
            return f"missed: {self.measured / self.goal:.0%} of the goal ({short:,.0f} {self.unit} short)"
        return f"missed: {self.measured - self.goal:.1f} {self.unit} over"


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance of two strings (characters) or word lists; jiwer is not on GPU machines."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus character error rate (whitespace collapsed on both sides), in percent."""
    refs = [" ".join(r.split()) for r in references]
    hyps = [" ".join(h.split()) for h in hypotheses]
    errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    return 100.0 * errors / max(sum(len(r) for r in refs), 1)


def slug(results: dict) -> str:
    """File stem: GPU name and date, e.g. ``nvidia-h200-2026-11-21``."""
    gpu = re.sub(r"[^a-z0-9]+", "-", results["environment"]["gpu"].lower()).strip("-")
    return f"{gpu}-{results['environment']['date']}"


def fraction_of_ceiling(results: dict, rtf: float) -> float:
    return rtf * results["model"]["flops_per_audio_second"] / results["ceiling_flops"]


def _row(results: dict, workload: str, variant: str) -> dict | None:
    for row in results["workloads"].get(workload, []):
        if row["variant"] == variant:
            return row
    return None


def _scenario(results: dict, workload: str, concurrency: int) -> dict | None:
    """The best served run of a workload (highest real-time factor, lowest latency on ties)."""
    matches = [
        s
        for s in results.get("served", {}).get("scenarios", [])
        if s["workload"] == workload and s["concurrency"] == concurrency
    ]
    if concurrency == 1:
        return min(matches, key=lambda s: s["p50_ms"], default=None)
    return max(matches, key=lambda s: s["rtf"], default=None)


def targets(results: dict) -> list[Target]:
    """The goals of issue 22 (the engine back and beyond, served at its speed), judged on this run."""
    mixed_engine = _row(results, "mixed", ENGINE)
    engine = _row(results, "32x10s", ENGINE)
    mixed = _scenario(results, "mixed", 64)
    single = _scenario(results, "1x5s", 1)
    fp8 = _row(results, "mixed", FP8)
    return [
        Target(
            "engine alone, mixed 2–15 s, 64 clips",
            12_000,
            mixed_engine and mixed_engine["rtf"],
            "× real time",
        ),
        Target("engine alone, 32 × 10 s", 12_000, engine and engine["rtf"], "× real time"),
        Target("ensemble, concurrency 64, mixed 2–15 s", 10_000, mixed and mixed["rtf"], "× real time"),
        Target(
            "ensemble, 1 × 5 s, p50 latency", 6.0, single and single["p50_ms"], "ms", higher_is_better=False
        ),
        Target("engine with FP8 matrix products, mixed 2–15 s", 16_000, fp8 and fp8["rtf"], "× real time"),
    ]


def bundled_summary(results: dict) -> dict | None:
    """CER of the reference and the engine against the truth, and the engine's Δ."""
    bundled = results.get("bundled_accuracy")
    if not bundled:
        return None
    truth, reference, engine = bundled["truth"], bundled["reference"], bundled["engine"]
    cer_reference, cer_engine = cer(truth, reference), cer(truth, engine)
    return {
        "utterances": len(truth),
        "identical": sum(r == e for r, e in zip(reference, engine)),
        "cer_reference": cer_reference,
        "cer_engine": cer_engine,
        "cer_delta": cer_engine - cer_reference,
        "cer_engine_vs_reference": cer(reference, engine),
        "identical_fp8": sum(r == e for r, e in zip(reference, bundled.get("engine_fp8", []))),
        "utterances_fp8": len(bundled.get("engine_fp8", [])),
    }


def readme_table(results: dict) -> str:
    """The table for the README: each path at each workload, then the targets."""
    names = list(results["workloads"])
    variants = [row["variant"] for row in results["workloads"][names[0]]]
    lines = [
        "| path | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for variant in variants:
        cells = []
        for name in names:
            row = _row(results, name, variant)
            if row is None:
                cells.append("–")
                continue
            share = fraction_of_ceiling(results, row["rtf"])
            cells.append(f"{row['ms']:,.1f} ms · {row['rtf']:,.0f}× · {share:.0%}")
        label = f"**{variant}**" if variant == ENGINE else variant
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    served = results.get("served", {}).get("scenarios", [])
    for scenario in served:
        name = f"`asr` via tritonserver, {scenario['workload']}, concurrency {scenario['concurrency']}"
        if "acoustic_instances" in scenario:
            name += f", {scenario['acoustic_instances']} wav2vec2 instance(s)"
        lines.append(
            f"| {name} | "
            + f"{scenario['rtf']:,.0f}× · p50 {scenario['p50_ms']:.1f} ms · p99 {scenario['p99_ms']:.1f} ms"
            + " |" * len(names)
        )
    lines += ["", "| target | goal | measured | verdict |", "| --- | ---: | ---: | --- |"]
    for target in targets(results):
        measured = "–" if target.measured is None else f"{target.measured:,.1f} {target.unit}"
        comparison = "≥" if target.higher_is_better else "≤"
        lines.append(
            f"| {target.name} | {comparison} {target.goal:,.0f} {target.unit} | {measured} | {target.gap()} |"
        )
    return "\n".join(lines)


def markdown(results: dict) -> str:
    env, model = results["environment"], results["model"]
    ceiling = results["ceiling_flops"]
    ceiling_rtf = ceiling / model["flops_per_audio_second"]
    parts = [
        f"# GPU benchmark: {env['gpu']}, {env['date']}",
        "",
        f"Command: `{results['command']}`  ",
        f"PyTorch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, "
        f"Python {env['python']}.  ",
        f"Model: wav2vec2-large shape, random weights, {model['parameters'] / 1e6:.1f} M parameters, "
        f"{model['flops_per_audio_second'] / 1e9:.1f} GFLOP per audio-second.  ",
        f"Ceiling: BF16 8192³ matrix product measured at {ceiling / 1e12:.0f} TFLOP/s "
        f"→ {ceiling_rtf:,.0f}× real time at 100 %.",
        "",
        "Cells: median milliseconds per call · real-time factor (audio-seconds per second) · "
        "fraction of the arithmetic ceiling. `mixed` is 64 clips of 2–15 s "
        f"({sum(results['workload_seconds']['mixed']):.0f} audio-seconds).",
        "",
        readme_table(results),
        "",
        "## Peak GPU memory per call (GiB, allocated by PyTorch)",
        "",
    ]
    names = list(results["workloads"])
    parts += ["| path | " + " | ".join(names) + " |", "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for row0 in results["workloads"][names[0]]:
        variant = row0["variant"]
        cells = [
            f"{(_row(results, n, variant) or {}).get('peak_memory_gib', float('nan')):.2f}" for n in names
        ]
        parts.append(f"| {variant} | " + " | ".join(cells) + " |")
    if "served" in results:
        parts += ["", f"GPU memory in use during (d): {results['served'].get('gpu_memory_gib', 0):.1f} GiB."]
    if results.get("served_error"):
        parts += ["", f"(d) did not run: {results['served_error']}"]
    check = results.get("regression_check")
    if check:
        parts += ["", "## Against the newest recorded run (more than 5 % slower: `REGRESSION`)", "", "```"]
        parts += [*check["lines"], "```"]
    parts += ["", "## Accuracy", ""]
    for label, accuracy in results.get("logit_accuracy", {}).items():
        if "unavailable" in accuracy:
            parts.append(f"- {label}: not run here ({accuracy['unavailable']}).")
            continue
        parts.append(
            f"- {label} vs eager FP32, random weights, clips of "
            f"{', '.join(str(s) for s in accuracy['clips_seconds'])} s "
            f"in one padded batch: max |Δlogit| {accuracy['max_abs_diff']:.3g} (logits up to "
            f"{accuracy['logit_scale']:.3g}), relative L2 {accuracy['relative_l2']:.2e}, "
            f"argmax agreement {accuracy['argmax_agreement']:.2%}."
        )
    summary = bundled_summary(results)
    if summary:
        parts.append(
            f"- Bundled test set ({summary['utterances']} utterances): CER FP32 reference "
            f"{summary['cer_reference']:.2f} %, engine {summary['cer_engine']:.2f} % "
            f"(Δ {summary['cer_delta']:+.2f} points); {summary['identical']} of {summary['utterances']} "
            "transcripts identical to the reference "
            f"(CER between them {summary['cer_engine_vs_reference']:.2f} %)."
        )
        if summary["utterances_fp8"]:
            parts.append(
                f"- With FP8 matrix products: {summary['identical_fp8']} of {summary['utterances_fp8']} "
                "bundled transcripts identical to the reference."
            )
    for key, title in (("profile_32x10s", "32 × 10 s"), ("profile_mixed", "mixed 2–15 s")):
        profile = results.get(key)
        if not profile:
            continue
        parts += ["", f"## Where the engine's time goes ({title}, kernel time of one call)", ""]
        parts += ["| category | ms | share |", "| --- | ---: | ---: |"]
        for category, ms in profile["categories_ms"].items():
            parts.append(f"| {category} | {ms:.2f} | {ms / profile['total_ms']:.0%} |")
        parts += ["", "| top kernels | ms | calls |", "| --- | ---: | ---: |"]
        for kernel in profile["top"]:
            parts.append(f"| `{kernel['kernel']}` | {kernel['ms']:.2f} | {kernel['calls']} |")
    return "\n".join(parts) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    variants = [row["variant"] for row in results["workloads"][names[0]]]
    figure, axis = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(variants)
    for index, variant in enumerate(variants):
        values = [(_row(results, n, variant) or {}).get("rtf", 0.0) for n in names]
        axis.bar([i + index * width for i in range(len(names))], values, width, label=variant)
    ceiling_rtf = results["ceiling_flops"] / results["model"]["flops_per_audio_second"]
    axis.axhline(ceiling_rtf, color="black", linestyle="--", linewidth=1, label="arithmetic ceiling")
    axis.axhline(12_000, color="red", linestyle=":", linewidth=1, label="engine target (32 × 10 s)")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    axis.set_ylabel("real-time factor (audio-seconds per second)")
    axis.set_title(f"wav2vec2-large on {results['environment']['gpu']} ({results['environment']['date']})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------- the regression guard

REGRESSION = 0.05  # slower than the newest recorded run by more than this fraction: say so, loudly


@dataclass(frozen=True)
class Comparison:
    """One workload of this run against the same workload of the newest recorded run before it."""

    case: str  # e.g. "engine 32x10s" or "served mixed c=64, 2 instance(s)"
    now: float
    then: float
    unit: str  # "ms" (lower is better) or "× real time" (higher is better)

    @property
    def slower(self) -> float:
        """How much slower this run is, as a fraction (negative: faster)."""
        return self.now / self.then - 1 if self.unit == "ms" else self.then / self.now - 1

    @property
    def regressed(self) -> bool:
        return self.slower > REGRESSION


@dataclass(frozen=True)
class Baseline:
    """A recorded run: its file, results and what identifies it in a report line."""

    path: Path
    results: dict

    @cached_property
    def added(self) -> tuple[str, int]:
        """The commit that added the file and its time (git; ``("", 0)`` where there is none)."""
        try:
            out = subprocess.run(
                ["git", "log", "--diff-filter=A", "-1", "--format=%h %ct", "--", self.path.name],
                cwd=self.path.parent,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            out = []
        return (out[0], int(out[1])) if len(out) == 2 else ("", 0)

    @property
    def order(self) -> tuple[str, str, bool, int, str]:
        """Newest last: date, then time of day (recorded since 2026-12-05), then for older runs
        of one date: the file named as `write_report` names a run (``<gpu>-<date>.json``, the one
        the README cites; same-day runs kept beside it carry a suffix), the time git added the
        file, the name.
        """
        env = self.results["environment"]
        canonical = self.path.stem == slug(self.results)
        return env["date"], env.get("time", ""), canonical, self.added[1], self.path.name

    def commit(self) -> str:
        """The commit the run measured, where it recorded one; else the commit that added its file."""
        if self.results.get("commit"):
            return f"commit {self.results['commit']}"
        return f"recorded in {self.added[0]}" if self.added[0] else "commit not recorded"

    def label(self, root: Path | None = None) -> str:
        name = self.path.relative_to(root) if root and self.path.is_relative_to(root) else self.path.name
        return f"{name} ({self.commit()}, {self.results['environment']['date']})"


def recorded_runs(results_dir: Path) -> list[Baseline]:
    """Every GPU benchmark result under ``results_dir`` (any depth), not other tools' JSON."""
    runs = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(results, dict) and "ceiling_flops" in results and "environment" in results:
            runs.append(Baseline(path, results))
    return runs


# Hugging Face's eager BF16 forward of one 5 s clip: launch-bound and never changed by this project, so
# it times the host's Python. Two runs whose probes differ ran on hosts of different speed, and their
# small calls and served rows compare the hosts as much as the code (2026-12-05: 9.3, 13.1, 18.7 ms).
HOST_PROBE = ("1x5s", "eager BF16 + SDPA")


def _host_probe_ms(results: dict) -> float | None:
    row = _row(results, *HOST_PROBE) if "workloads" in results else None
    return row["ms"] if row else None


def host_line(results: dict, baseline: dict) -> str | None:
    """A line saying the two runs' hosts differ in Python speed (by the probe) by over `REGRESSION`."""
    now, then = _host_probe_ms(results), _host_probe_ms(baseline)
    if not now or not then or abs(now / then - 1) <= REGRESSION:
        return None
    return (
        f"  host: Hugging Face's eager BF16 1x5s (launch-bound, unchanged code) {now:.1f} ms now, "
        f"{then:.1f} ms then: another host's Python, so small calls and served rows compare hosts too"
    )


def _engine_rows(results: dict) -> dict[str, float]:
    return {name: row["ms"] for name in results.get("workloads", {}) if (row := _row(results, name, ENGINE))}


def _served_rows(results: dict) -> dict[str, tuple[float, str]]:
    """Each served scenario by workload, concurrency and instances: throughput at load, p50 alone."""
    rows = {}
    for s in results.get("served", {}).get("scenarios", []):
        case = f"served {s['workload']} c={s['concurrency']}, {s.get('acoustic_instances', 1)} instance(s)"
        rows[case] = (s["p50_ms"], "ms") if s["concurrency"] == 1 else (s["rtf"], "× real time")
    return rows


def newest_before(results: dict, runs: list[Baseline], kind: str) -> Baseline | None:
    """The newest recorded run on the same GPU, older than ``results``, that measured ``kind``.

    ``kind`` is ``"engine"`` (the engine alone) or ``"served"``; a served-only run is no engine
    baseline, and the other way round.
    """
    this = Baseline(Path(slug(results) + ".json"), results)
    rows = _engine_rows if kind == "engine" else _served_rows
    older = [
        run
        for run in runs
        if run.results["environment"]["gpu"] == results["environment"]["gpu"]
        and run.order < this.order
        and rows(run.results)
    ]
    return max(older, key=lambda run: run.order, default=None)


def compare(results: dict, baseline: Baseline, kind: str) -> list[Comparison]:
    """Each ``kind`` workload that both runs measured, this run's figure against the baseline's."""
    if kind == "engine":
        now, then = _engine_rows(results), _engine_rows(baseline.results)
        return [Comparison(f"engine {case}", now[case], then[case], "ms") for case in now if case in then]
    now_s, then_s = _served_rows(results), _served_rows(baseline.results)
    return [
        Comparison(case, now_s[case][0], then_s[case][0], now_s[case][1]) for case in now_s if case in then_s
    ]


def regression_check(results: dict, results_dir: Path) -> dict:
    """This run against the newest recorded runs in ``results_dir``: the lines to print and the data.

    Returns ``{"lines": [...], "regressions": n, "baselines": {kind: path}, "comparisons": [...]}``;
    a line starting ``REGRESSION:`` for each workload more than `REGRESSION` slower.
    """
    runs = recorded_runs(results_dir) if results_dir.is_dir() else []
    gpu = results["environment"]["gpu"]
    lines, comparisons, baselines = [], [], {}
    for kind in ("engine", "served"):
        if not (_engine_rows if kind == "engine" else _served_rows)(results):
            continue
        baseline = newest_before(results, runs, kind)
        if baseline is None:
            lines.append(f"{kind}: no earlier recorded run on {gpu} under {results_dir} to compare with")
            continue
        label = baseline.label(results_dir)
        baselines[kind] = str(baseline.path)
        lines.append(f"{kind}: against {label}")
        if note := host_line(results, baseline.results):
            lines.append(note)
        for item in compare(results, baseline, kind):
            comparisons.append({**item.__dict__, "slower": item.slower, "baseline": str(baseline.path)})
            unit = " ms" if item.unit == "ms" else "×"
            figures = f"{item.now:,.1f}{unit} now, {item.then:,.1f}{unit} then"
            change = f"{abs(item.slower) * 100:.1f} % {'slower' if item.slower > 0 else 'faster'}"
            lines.append(f"  {item.case}: {figures}; ratio {item.now / item.then:.3f} ({change})")
            if item.regressed:
                lines.append(f"REGRESSION: {item.case} is {item.slower * 100:.1f} % slower than {label}")
    regressions = sum(line.startswith("REGRESSION:") for line in lines)
    return {"lines": lines, "regressions": regressions, "baselines": baselines, "comparisons": comparisons}


def write_report(results: dict, out_dir: Path) -> list[Path]:
    """Write ``<gpu>-<date>.json``, ``.md`` and ``.png`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / slug(results)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    if "workloads" not in results:  # a served-only run (--skip-engine): the served report is `served_report`
        return paths[:1]
    paths[1].write_text(markdown(results), encoding="utf-8")
    plot(results, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    """Re-render the Markdown and the plot from a recorded JSON, or (--check) compare it with older runs."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--check",
        type=Path,
        metavar="RESULTS_DIR",
        help="only compare RESULTS with the newest older run under RESULTS_DIR; exit 1 on a regression",
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    if args.check:
        check = regression_check(results, args.check)
        print("\n".join(check["lines"]))
        return 1 if check["regressions"] else 0
    for path in write_report(results, args.out or args.results.parent):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
