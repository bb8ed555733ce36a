"""The GPU benchmark: wav2vec2-large shape, eager PyTorch vs the `torch` engine vs the served ensemble.

One command, one GPU, a few minutes::

    python -m vaani.benchmarks.gpu_benchmark --out benchmarks/results

It measures, on the same GPU and in one run, so that the numbers compare:

* the arithmetic ceiling (a large BF16 matrix product) that "fraction of ceiling" refers to;
* (a) eager Hugging Face FP32, (b) eager BF16 with SDPA, (c) the `torch` engine alone
  (its default, the padded forward it had before packed execution, and variants, each one
  knob changed), at 1 × 5 s, 32 × 10 s, 64 × 10 s and a mixed 2–15 s set; milliseconds,
  real-time factor, peak GPU memory;
* accuracy: the engine's logits against FP32 on random large-shaped weights, and its
  transcripts against the FP32 reference on the bundled model's test set when given;
* (d) the whole `asr` ensemble through `tritonserver` under an async gRPC load at
  concurrency 1 and 64 (p50/p99 latency, real-time factor);
* a kernel-time profile of the engine at 32 × 10 s, the evidence for where time goes.

Weights are random, built from the config (no download). The raw results are JSON;
`vaani.benchmarks.gpu_report` turns them into the Markdown table and the plot.

This module is the command alone: its options, the order in which the suites run on one GPU, the
environment recorded, and the regression guard's verdict printed at the end. Each suite is a module
of its own, so that one can be read, changed or run without the others: `gpu_workloads` (the
model's shape, the clips of each workload, the packed test set), `gpu_timing` (how GPU time is
read), `gpu_normalization_suite` (the engine's normalization beside the ones it does not use),
`gpu_engine_suite` ((a)–(c), accuracy, kernel profiles), `gpu_served_suite` ((d)); `gpu_report`
writes the report and holds the regression guard.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from vaani.benchmarks.gpu_engine_suite import bundled_accuracy, engine_suite, packed_check
from vaani.benchmarks.gpu_normalization_suite import normalization_suite
from vaani.benchmarks.gpu_served_suite import served_suite
from vaani.benchmarks.gpu_timing import Timer, matmul_ceiling
from vaani.benchmarks.gpu_workloads import flops_per_audio_second, large_config, prepare_eval, workloads


def environment(torch) -> dict:
    import transformers

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpu_memory_gib": props.total_memory / 2**30,
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "time": dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S"),  # orders runs of one date
        "tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = large_config()
    reference = Wav2Vec2ForCTC(config).eval()
    state = copy.deepcopy(reference.state_dict())
    results: dict = {
        "command": " ".join(["python -m vaani.benchmarks.gpu_benchmark", *sys.argv[1:]]),
        "commit": args.commit,
        "environment": environment(torch),
        "model": {
            "parameters": sum(p.numel() for p in reference.parameters()),
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "heads": config.num_attention_heads,
            "ffn": config.intermediate_size,
            "flops_per_audio_second": flops_per_audio_second(config),
        },
    }
    del reference
    ceiling = matmul_ceiling(torch)
    results["ceiling_flops"] = ceiling
    print(
        f"{results['environment']['gpu']}: BF16 matrix product {ceiling / 1e12:.0f} TFLOP/s; "
        f"model {results['model']['parameters'] / 1e6:.1f} M parameters, "
        f"{results['model']['flops_per_audio_second'] / 1e9:.1f} GFLOP per audio-second"
    )
    loads = workloads()
    results["workload_seconds"] = loads
    if not args.skip_engine:
        results["packed_check"] = packed_check(torch, config)
        results["normalization"] = normalization_suite(
            torch, config, Timer(torch, budget_s=0.2, min_reps=10, max_reps=50), loads
        )
        results.update(engine_suite(torch, config, state, Timer(torch, budget_s=args.budget), loads))
    if args.eval_file and args.eval_model:
        try:
            bundled = bundled_accuracy(torch, Path(args.eval_model), Path(args.eval_file), args.eval_limit)
            results["bundled_accuracy"] = bundled
            same = sum(r == e for r, e in zip(bundled["reference"], bundled["engine"]))
            print(f"bundled test set: {same}/{len(bundled['engine'])} engine transcripts equal FP32's")
            same = sum(r == e for r, e in zip(bundled["reference"], bundled["engine_fp8"]))
            print(f"bundled test set: {same}/{len(bundled['engine_fp8'])} FP8 transcripts equal FP32's")
        except Exception as error:  # the speed numbers stand without it
            results["bundled_error"] = f"{type(error).__name__}: {error}"
            print(f"bundled test set failed: {results['bundled_error']}")
    if not args.skip_server:
        torch.cuda.empty_cache()
        workdir = Path(tempfile.mkdtemp(prefix="vaani-gpubench-"))
        try:
            runs = [
                served_suite(
                    torch,
                    config,
                    state,
                    workdir / str(n),
                    args.duration,
                    args.server_pythonpath,
                    n,
                    args.served_settings,
                )
                for n in args.acoustic_instances
            ]
            results["served"] = {
                "settings": [run["settings"] for run in runs],
                "perf_analyzer": [run["perf_analyzer"] for run in runs],
                "scenarios": [scenario for run in runs for scenario in run["scenarios"]],
                "gpu_memory_gib": max(run.get("gpu_memory_gib", 0.0) for run in runs),
                "engine_messages": [run["engine_messages"] for run in runs],
            }
        except Exception as error:  # the engine numbers stand without the server's
            results["served_error"] = f"{type(error).__name__}: {error}"
            print(f"(d) failed: {results['served_error']}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def _settings_changes(text: str) -> dict[str, object]:
    """``field=value,…`` as typed `RepositorySettings` values (`settings_changes`), for argparse."""
    from vaani.build.repository import settings_changes

    try:
        return settings_changes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed repeats per case")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per scenario")
    parser.add_argument("--skip-server", action="store_true", help="leave out (d), the served ensemble")
    parser.add_argument(
        "--skip-engine",
        action="store_true",
        help="leave out (a)-(c), the engine alone and its eager baselines: the served ensemble only",
    )
    parser.add_argument(
        "--acoustic-instances",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="(d) once per count of wav2vec2 instances on the GPU, e.g. 1,2",
    )
    parser.add_argument(
        "--served-settings",
        type=_settings_changes,
        default={},
        metavar="FIELD=VALUE,…",
        help="(d) with these RepositorySettings fields changed from the suite's, e.g. "
        "host_steps_queue_delay_us=0,turn_audio_seconds=0 (recorded with the results)",
    )
    parser.add_argument("--server-pythonpath", default="", help="put first on the server's PYTHONPATH")
    parser.add_argument(
        "--commit",
        default="",
        help="the commit measured, as recorded with the results (gpu-machine.sh: git, or $COMMIT)",
    )
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="recorded runs: each workload is compared with the newest one there (regression guard)",
    )
    parser.add_argument(
        "--eval-file", help="bundled test set as .npz (see vaani.benchmarks.gpu_report prepare-eval)"
    )
    parser.add_argument("--eval-model", help="the bundled model directory")
    parser.add_argument("--eval-limit", type=int, default=160, help="utterances of the test set used")
    parser.add_argument(
        "--prepare-eval", type=Path, metavar="MANIFEST", help="only pack MANIFEST into --eval-file"
    )
    args = parser.parse_args(argv)
    if args.prepare_eval:
        prepare_eval(args.prepare_eval, Path(args.eval_file), args.eval_limit)
        return 0
    results = run(args)
    from vaani.benchmarks.gpu_report import regression_check, write_report

    # Before writing: with --out inside --baseline-dir this run must not be its own baseline.
    results["regression_check"] = regression_check(results, args.baseline_dir)
    paths = write_report(results, args.out)
    print("wrote " + ", ".join(str(p) for p in paths))
    print("\n".join(["against the newest recorded run:", *results["regression_check"]["lines"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
