"""The `vaani` command: one entry point whose subcommands the Make targets call.

Each area of the project registers its own subcommands, so this file stays a list and
`vaani transcribe` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vaani.errors import UserFacingError

COMMAND_MODULES = (
    "vaani.build.commands",
    "vaani.supervision.commands",
    "vaani.client.commands",
    "vaani.gateway.commands",
    "vaani.recipe.corpus.commands",
    "vaani.recipe.training.commands",
    "vaani.recipe.commands",
    "vaani.loadtest.commands",
    "vaani.benchmarks.commands",
    "vaani.stack.commands",
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="vaani",
        description="Export, serve, load test and evaluate wav2vec2 CTC speech recognition on Triton.",
    )
    subcommands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subcommands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as error:
        print(f"vaani {args.command}: error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
