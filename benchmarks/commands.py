"""`vaani bench`: Triton against the FastAPI baseline and the other runtimes, on servers it starts itself."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vaani.benchmarks import word_times
from vaani.benchmarks.bench import Bench, BenchPlan
from vaani.benchmarks.bench_report import regenerate
from vaani.build.commands import add_settings_arguments, settings_from_args
from vaani.loadtest.clips import add_clip_arguments, load_clips, manifest_from_args


def register(subcommands: argparse._SubParsersAction) -> None:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    bench = subcommands.add_parser(
        "bench",
        help="Triton vs Hugging Face (in process), ONNX Runtime (in process) and FastAPI, in one table",
        description="Measure, on this machine with one model and one set of clips: (a) the Hugging Face "
        "pipeline in process, (b) ONNX Runtime in process, (c) the Triton ensemble over HTTP and gRPC at "
        "1 user and at --users, (d) FastAPI + uvicorn around the Hugging Face pipeline under the same "
        "Locust load. Starts its own servers on free ports. Writes bench.csv, bench.md (the table, with "
        "CPU, date and model), bench.png and the Locust files into OUTPUT. --model base-random makes a "
        "base-size wav2vec2 with random weights (no download).",
        formatter_class=formatter,
    )

    bench.add_argument(
        "--model", default="models/tiny-hindi", help="model directory, Hugging Face id, or base-random"
    )
    bench.add_argument(
        "--sources",
        type=Path,
        default=Path("model_repository"),
        help="repository holding the steps' model.py",
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=Path("results/bench"),
        help="results folder: bench.csv, .md, .json, .png",
    )
    bench.add_argument(
        "--work-dir",
        type=Path,
        help="models, Triton repository, clips, Locust files and server logs (default: OUTPUT/work)",
    )
    bench.add_argument("--name", default="", help="title of the table (default: from the model)")
    bench.add_argument("--users", type=int, default=8, help="the saturation load: concurrent Locust users")
    bench.add_argument(
        "--seconds", type=float, default=60, help="measured time of each row, all rounds together"
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds: every row is measured once per round, so background load hits all alike",
    )
    bench.add_argument(
        "--budget",
        type=int,
        default=0,
        help="CPU threads for PyTorch and in-process ONNX Runtime (0: threads x acoustic-instances of the "
        "Triton settings, or every core when --threads is 0)",
    )
    bench.add_argument(
        "--check-clips", type=int, default=6, help="clips whose transcripts each server must match"
    )
    bench.add_argument(
        "--regenerate",
        action="store_true",
        help="only rewrite table and plot from OUTPUT/bench.csv and bench.json",
    )
    add_clip_arguments(bench)
    add_settings_arguments(bench)
    bench.set_defaults(func=_bench)
    word_times.register(subcommands)


def _bench(args: argparse.Namespace) -> int:

    if args.regenerate:
        print(regenerate(args.output).read_text())
        return 0
    settings = settings_from_args(args)
    budget = args.budget or (settings.threads or os.cpu_count() or 1) * settings.acoustic_instances
    work = args.work_dir or args.output / "work"
    manifest = manifest_from_args(args, work)
    plan = BenchPlan(
        model=args.model,
        output=args.output,
        work=work,
        sources=args.sources,
        settings=settings,
        threads=budget,
        users=args.users,
        seconds=args.seconds,
        check_clips=args.check_clips,
        rounds=max(1, args.rounds),
        name=args.name,
    )
    table = Bench(plan, load_clips(manifest), manifest).run()
    print(table.read_text())
    print(f"{args.output}/bench.csv, bench.md, bench.png", file=sys.stderr)
    return 0
