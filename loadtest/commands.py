"""`vaani loadtest`, `vaani perf`: load against a running server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vaani.errors import ServerUnreachable, UserFacingError

DEFAULT_HTTP = "localhost:8000"


def _users_list(text: str) -> list[int]:
    try:
        users = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected user counts like 1,2,4,8; got {text!r}") from None
    if not users or min(users) < 1:
        raise argparse.ArgumentTypeError("user counts must be positive")
    return users


def register(subcommands: argparse._SubParsersAction) -> None:
    from vaani.loadtest.clips import add_clip_arguments

    formatter = argparse.ArgumentDefaultsHelpFormatter
    load = subcommands.add_parser(
        "loadtest",
        help="Locust load (HTTP and gRPC users, mixed-length clips) against a running server",
        description="Run Locust headless against a running `asr` server (vaani serve): each user sends "
        "mixed-length clips back to back; results are requests/s, audio-seconds/s, real-time factor and "
        "latency percentiles, written as Locust's CSV + HTML plus <OUTPUT>/locust_audio.csv. "
        "--step-users ramps the user count in steps to find saturation. Exits non-zero on any failure "
        "(an error or an empty transcript); with exit status 3 when no server answers.",
        formatter_class=formatter,
    )
    _add_addresses(load)
    load.add_argument("--users", type=int, default=4, help="concurrent users (closed loop, no wait)")
    load.add_argument("--seconds", type=float, default=60, help="run time")
    load.add_argument(
        "--protocol", choices=("http", "grpc", "both"), default="both", help="which Triton users to run"
    )
    load.add_argument(
        "--step-users",
        type=_users_list,
        help="step ramp instead of a fixed load: user counts such as 1,2,4,8,16, one step each",
    )
    load.add_argument("--step-seconds", type=float, default=30, help="length of each ramp step")
    add_clip_arguments(load)
    load.set_defaults(func=_loadtest)

    perf = subcommands.add_parser(
        "perf",
        help="perf_analyzer over a concurrency range, with the per-step (composing model) breakdown",
        description="Run NVIDIA perf_analyzer against the `asr` ensemble of a running server with real "
        "clips of several lengths as --input-data (base64, one shape per entry). Writes perf.csv "
        "(client and server times per concurrency, plus audio-seconds/s), perf_composing.csv (queue and "
        "compute time of preprocess, wav2vec2 and ctc_decoder), perf.png (throughput vs p99 latency) and "
        "the raw log into OUTPUT. Exits non-zero, naming each concurrency and perf_analyzer's reason, when "
        "any requested concurrency could not be measured.",
        formatter_class=formatter,
    )
    _add_addresses(perf)
    perf.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    perf.add_argument(
        "--concurrency", default="1:4:1", help="perf_analyzer --concurrency-range start:end:step"
    )
    perf.add_argument(
        "--entries", type=int, default=6, help="clips in the input data, spread over the lengths"
    )
    perf.add_argument(
        "--cycles", type=int, default=2, help="measurement window, in passes through the input clips"
    )
    perf.add_argument(
        "--max-trials", type=int, default=5, help="windows tried per concurrency for a stable one"
    )
    perf.add_argument(
        "--stability",
        type=int,
        default=50,
        help="percent by which the last three windows may differ and still count as stable",
    )
    add_clip_arguments(perf)
    perf.set_defaults(func=_perf)

    soak = subcommands.add_parser(
        "soak",
        help="a bounded soak of a running server: failures, changed transcripts, latency per minute, RSS",
        description="Keep --clients gRPC clients sending mixed-length clips back to back for --minutes "
        "against a running server; record failures, transcripts that change from a clip's first one, "
        "p50/p99 latency per minute and the resident memory of tritonserver and each step's process "
        "(sampled from /proc; the server must run on this machine). Writes soak.json, soak_minutes.csv, "
        "soak_rss.csv and soak.png into OUTPUT/soak. Exits 1 on any failure or changed transcript.",
        formatter_class=formatter,
    )
    _add_addresses(soak)
    soak.add_argument("--clients", type=int, default=8, help="concurrent gRPC clients (closed loop)")
    soak.add_argument("--minutes", type=float, default=10, help="length of the run")
    soak.add_argument(
        "--attack",
        metavar="GATEWAY",
        help="after a calm first minute, attack too (bomb uploads and held connections at the gateway at "
        "GATEWAY, host:port; random logits straight to ctc_decoder); exits 1 unless 99 %% of the good "
        "requests sent under attack stay within the calm minute's p99 latency",
    )
    add_clip_arguments(soak)
    soak.set_defaults(func=_soak)


def _add_addresses(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-url", default=DEFAULT_HTTP, help="Triton HTTP address (host:port)")
    parser.add_argument(
        "--grpc-url",
        help="Triton gRPC address (host:port); default: the HTTP address's host, the port above its port",
    )
    parser.add_argument("--output", type=Path, default=Path("results"), help="results folder")


def _grpc_url(args: argparse.Namespace) -> str:
    """--grpc-url, else Triton's gRPC port beside --http-url's, as the locustfile pairs them."""
    from vaani.loadtest.runner import grpc_address

    return args.grpc_url or grpc_address(args.http_url)


def _loadtest(args: argparse.Namespace) -> int:
    from vaani.loadtest.clips import manifest_from_args
    from vaani.loadtest.runner import run_locust
    from vaani.loadtest.stats import by_key

    manifest = manifest_from_args(args, args.output)
    targets = ["http", "grpc"] if args.protocol == "both" else [args.protocol]
    run = run_locust(
        args.http_url,
        targets,
        manifest,
        args.output / "locust",
        users=args.users,
        seconds=args.seconds,
        grpc_url=_grpc_url(args),
        step_users=args.step_users,
        step_seconds=args.step_seconds,
    )
    if run.returncode == ServerUnreachable.exit_status:
        raise ServerUnreachable(f"{' '.join(run.errors())} (Locust's log: {run.log})")
    if not run.records:
        raise UserFacingError(f"Locust sent no requests; its log says why: {run.log}")
    print(
        f"{'protocol':<12} {'users':>5} {'requests':>8} {'failed':>6} {'req/s':>7} {'audio s/s':>9} "
        f"{'RTF':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}"
    )
    for (kind, users), s in by_key(run.records, lambda r: (r.request_type, r.users)).items():
        print(
            f"{kind:<12} {users:>5} {s.requests:>8} {s.failures:>6} {s.requests_per_s:>7.2f} "
            f"{s.audio_seconds_per_s:>9.1f} {s.mean_rtf:>6.3f} {s.p50_ms:>7.0f} {s.p90_ms:>7.0f} "
            f"{s.p99_ms:>7.0f}"
        )
    print(f"\nCSV, HTML and log: {run.prefix}_*.csv, {run.prefix}.html, {run.log}")
    return run.returncode


def _perf(args: argparse.Namespace) -> int:
    from vaani.loadtest import perf
    from vaani.loadtest.clips import load_clips, manifest_from_args

    clips = load_clips(manifest_from_args(args, args.output))
    url = _grpc_url(args) if args.protocol == "grpc" else args.http_url
    result = perf.run(
        clips,
        url,
        args.output,
        args.concurrency,
        args.protocol,
        args.entries,
        args.cycles,
        args.max_trials,
        args.stability,
    )
    for row in result.rows:
        print(
            f"concurrency {row['Concurrency']:.0f}: {row['Inferences/Second']:.2f} infer/s, "
            f"{row['Audio seconds/Second']:.1f} audio-s/s, p99 {row['p99 latency'] / 1000:.0f} ms"
        )
    if result.rows:
        print(f"\n{args.output}/perf.csv, perf_composing.csv, perf.png")
    for problem in result.problems():
        print(problem, file=sys.stderr)
    if any("stable" in reason for reason in result.unmeasured.values()):
        print(
            "To let a level settle: a longer window (--cycles), more --max-trials or a larger --stability.",
            file=sys.stderr,
        )
    return result.code


def _soak(args: argparse.Namespace) -> int:
    from vaani.loadtest.clips import load_clips, manifest_from_args
    from vaani.loadtest.soak import Attack, Soak, write_report

    output = args.output / "soak"
    clips = load_clips(manifest_from_args(args, args.output))
    port = int(args.http_url.rsplit(":", 1)[1])
    grpc_url = _grpc_url(args)
    print(f"soak: {args.clients} gRPC clients for {args.minutes} min against {grpc_url}", flush=True)
    attack = Attack(args.attack, grpc_url) if args.attack else None
    result = Soak(grpc_url, port, clips, args.clients, args.minutes * 60, attack=attack).run()
    settings = {
        "clients": args.clients,
        "minutes": args.minutes,
        "clips": len(clips),
        "grpc_url": grpc_url,
        "attack_on": args.attack,
    }
    summary = write_report(result, settings, output)
    for row in summary["minutes"]:
        print(row)
    for name, memory in summary["memory"].items():
        print(
            f"{name}: RSS first {memory['first_mb']} MB, peak {memory['peak_mb']} MB, "
            f"last {memory['last_mb']} MB"
        )
    print(
        f"{summary['requests']} requests, {summary['failures']} failures, "
        f"{summary['changed_transcripts']} changed transcripts; wrote {output}"
    )
    if attack:
        print(json.dumps(summary["attack"], indent=1))
        kept = summary["attack"]["good_within_calm_p99_share"] or 0
        return 1 if kept < 0.99 or summary["changed_transcripts"] else 0
    return 1 if summary["failures"] or summary["changed_transcripts"] else 0
