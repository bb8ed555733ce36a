"""Side-by-side report of served-only GPU runs (`gpu_benchmark --skip-engine`): one per data path.

    python -m vaani.benchmarks.served_report NAME=RESULTS.json [NAME=RESULTS.json …] --out DIR

writes ``served.md`` (totals, Triton's per-step breakdown, perf_analyzer's composing models)
and ``served.png`` (real-time factor per path and scenario) into DIR.

Triton's statistics give each request the duration of the execution it ran in, so a step's
milliseconds per request below are the length of its executions, not a share of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def load(pairs: list[str]) -> dict[str, dict]:
    """``NAME=PATH`` pairs → the recorded results by name, in the order given."""
    runs = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        runs[name] = json.loads(Path(path).read_text(encoding="utf-8"))
    return runs


def totals_table(runs: dict[str, dict]) -> list[str]:
    lines = [
        "| path | wav2vec2 instances | scenario | concurrency | real time | p50 ms | p99 ms | requests |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, results in runs.items():
        for s in results["served"]["scenarios"]:
            lines.append(
                f"| {name} | {s['acoustic_instances']} | {s['workload']} | {s['concurrency']} | "
                f"{s['rtf']:,.0f}× | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['requests']} |"
            )
    return lines


def steps_table(runs: dict[str, dict], workload: str = "mixed") -> list[str]:
    lines = [
        f"| path | instances | step | mean batch | {' | '.join(p + ' ms' for p in PHASES)} |",
        "| --- | ---: | --- | ---: |" + " ---: |" * len(PHASES),
    ]
    for name, results in runs.items():
        for s in results["served"]["scenarios"]:
            if s["workload"] != workload:
                continue
            for step, d in sorted(s["steps"].items()):
                batch = d["mean_batch"]
                cells = " | ".join(f"{d[f'{p}_ms_per_execution'] / batch:.1f}" for p in PHASES)
                lines.append(f"| {name} | {s['acoustic_instances']} | {step} | {batch:.1f} | {cells} |")
    return lines


def perf_table(runs: dict[str, dict]) -> list[str]:
    lines = [
        "| path | instances | perf_analyzer real time | step | queue µs | compute input µs | compute infer µs | compute output µs |",  # noqa: E501
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, results in runs.items():
        settings = results["served"]["settings"]
        for run, setting in zip(results["served"].get("perf_analyzer", []), settings):
            if not run.get("composing"):
                continue
            for row in run["composing"]:
                lines.append(
                    f"| {name} | {setting['acoustic_instances']} | {run['rtf']:,.0f}× | {row['model']} | "
                    f"{row.get('queue_us', 0)} | {row.get('compute_input_us', 0)} | "
                    f"{row.get('compute_infer_us', 0)} | {row.get('compute_output_us', 0)} |"
                )
    return lines


def markdown(runs: dict[str, dict]) -> str:
    first = next(iter(runs.values()))
    env = first["environment"]
    settings = first["served"]["settings"][0]
    parts = [
        f"# Served `asr` on {env['gpu']}, {env['date']}: data paths side by side",
        "",
        f"PyTorch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, Python "
        f"{env['python']}; wav2vec2-large shape with random weights, `torch` engine (BF16, packed), "
        f"greedy decoder; `max_batch_size` {settings['max_batch_size']}, queue delay "
        f"{settings['queue_delay_us']} µs, {settings['python_instances']} instances of each python step. "
        "Clients: closed-loop async gRPC (`gpu_served_suite.load_test`), speech-like noise clips; "
        "mixed = 64 clips of 2–15 s; perf_analyzer at concurrency 64 over 24 of those clips.",
        "",
        "Commands: " + "; ".join(f"{name}: `{r['command']}`" for name, r in runs.items()),
        "",
        "## Totals",
        "",
        *totals_table(runs),
        "",
        "## Triton's per-step statistics, mixed clips at concurrency 64 (ms per request)",
        "",
        *steps_table(runs),
        "",
        "## perf_analyzer's composing models (concurrency 64; absent where the run had no perf_analyzer)",
        "",
        *perf_table(runs),
        "",
    ]
    return "\n".join(parts)


def plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [], []
    for name, results in runs.items():
        for s in results["served"]["scenarios"]:
            if s["concurrency"] > 1:
                labels.append(f"{name}\n{s['workload']}, {s['acoustic_instances']} inst.")
                values.append(s["rtf"])
    figure, axis = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.5))
    axis.bar(range(len(values)), values, color="#4c72b0")
    axis.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20, ha="right")
    axis.set_ylabel("audio-seconds per second (× real time)")
    axis.set_title("served asr, concurrency 64")
    for x, v in enumerate(values):
        axis.text(x, v, f"{v:,.0f}×", ha="center", va="bottom", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME=RESULTS.json, one per data path, in table order")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = load(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "served.md").write_text(markdown(runs), encoding="utf-8")
    plot(runs, args.out / "served.png")
    print(f"wrote {args.out / 'served.md'} and {args.out / 'served.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
