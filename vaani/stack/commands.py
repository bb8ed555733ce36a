"""`vaani compose-check`: the CPU container stack built, run, checked and torn down."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaani.stack import images


def register(subcommands: argparse._SubParsersAction) -> None:
    check = subcommands.add_parser(
        "compose-check",
        help="build docker-compose.cpu.yml's images, bring the stack up, check it, tear it down",
        description="Build the CPU stack's images (on a Debian base made with mmdebstrap when no registry "
        "answers), bring docker-compose.cpu.yml up with Docker or podman, wait for the healthchecks, "
        "transcribe through Triton and the gateway, check Prometheus's scrape of Triton, the admin key "
        "and the published addresses, run headless Locust with two workers, restart Triton, then tear "
        "everything down. Run from the project root. Log, Locust CSV and container logs into --output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    check.add_argument("--output", type=Path, default=Path("results/compose-check"))
    check.add_argument("--model", default="models/tiny-hindi", help="model the repository is built for")
    check.add_argument(
        "--runtime", choices=("docker", "podman"), help="default: Docker if it answers, else podman"
    )
    check.add_argument("--base-image", default=images.DEFAULT_BASE, help="Debian bookworm image to build on")
    check.add_argument(
        "--bind", default="127.0.0.1", help="VAANI_BIND: the host address ports are published on"
    )
    check.add_argument("--locust-users", type=int, default=4)
    check.add_argument("--locust-seconds", type=int, default=20)
    check.set_defaults(func=_compose_check)


def _compose_check(args: argparse.Namespace) -> int:
    from vaani.stack.check import CheckSettings, ComposeCheck

    settings = CheckSettings(
        root=Path.cwd(),
        output=args.output,
        model=args.model,
        runtime=args.runtime,
        base_image=args.base_image,
        bind=args.bind,
        locust_users=args.locust_users,
        locust_seconds=args.locust_seconds,
    )
    return ComposeCheck(settings).run()
