"""Markdown, JSON and a plot from the raw results of `vaani.benchmarks.gpu_benchmark`.

Kept apart from the benchmark so that the report (the part the README quotes) is tested
in CI on recorded results, without a GPU; the targets it judges are the issue's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENGINE = "engine"  # the variant that is served (defaults of TorchEngineOptions)


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
    """The goals of issue 13 (packed execution), judged on this run."""
    mixed_engine = _row(results, "mixed", ENGINE)
    engine = _row(results, "32x10s", ENGINE)
    mixed = _scenario(results, "mixed", 64)
    single = _scenario(results, "1x5s", 1)
    return [
        Target(
            "engine alone, mixed 2–15 s, 64 clips",
            10_000,
            mixed_engine and mixed_engine["rtf"],
            "× real time",
        ),
        Target("engine alone, 32 × 10 s", 11_000, engine and engine["rtf"], "× real time"),
        Target("ensemble, concurrency 64, mixed 2–15 s", 8_000, mixed and mixed["rtf"], "× real time"),
        Target(
            "ensemble, 1 × 5 s, p50 latency", 8.0, single and single["p50_ms"], "ms", higher_is_better=False
        ),
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
    parts += ["", "## Accuracy", ""]
    for label, accuracy in results.get("logit_accuracy", {}).items():
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
    axis.axhline(11_000, color="red", linestyle=":", linewidth=1, label="engine target (32 × 10 s)")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    axis.set_ylabel("real-time factor (audio-seconds per second)")
    axis.set_title(f"wav2vec2-large on {results['environment']['gpu']} ({results['environment']['date']})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


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
    """Re-render the Markdown and the plot from a recorded JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    for path in write_report(results, args.out or args.results.parent):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
