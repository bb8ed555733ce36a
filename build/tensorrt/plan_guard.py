"""Container entrypoint: refuse to serve a TensorRT plan built by another TensorRT version.

A plan only loads in the exact TensorRT build that made it; Triton's own error for a
mismatch ("The engine plan file is not compatible with this version of TensorRT") comes
late, per model, and leaves the server half up. This check runs before `tritonserver`
starts, compares the plan's metadata (written by `vaani engine`) with the TensorRT of the
image, and stops with a message that says what to rebuild. It imports the standard library
and `metadata` (standard library too) only: it runs in the Triton image with nothing else.

Usage (docker-compose.yml)::

    python3 -m vaani.build.tensorrt.plan_guard --repository /models -- tritonserver ...
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from vaani.build.tensorrt.metadata import metadata_path

ADMIN_KEY_VARIABLE = "TRITON_ADMIN_KEY"
ADMIN_KEY_PLACEHOLDER = "${" + ADMIN_KEY_VARIABLE + "}"
LIBRARY_GLOBS = ("/usr/lib/x86_64-linux-gnu/libnvinfer.so.*", "/usr/lib/aarch64-linux-gnu/libnvinfer.so.*")


class PlanMismatch(RuntimeError):
    """The repository's plan cannot be served by this image; the message says why and what to do."""


def parse_dpkg(output: str) -> str | None:
    """TensorRT version from ``dpkg-query -W -f='${Package} ${Version}\\n' 'libnvinfer*'``.

    Debian versions look like ``10.8.0.43-1+cuda12.8``; the part before ``-`` is TensorRT's.
    """
    for line in output.splitlines():
        package, _, version = line.strip().partition(" ")
        if re.fullmatch(r"libnvinfer\d+", package) and version:
            return version.split("-")[0]
    return None


def parse_library_names(names: list[str]) -> str | None:
    """TensorRT version from library file names such as ``libnvinfer.so.10.8.0`` (no build number)."""
    versions = []
    for name in names:
        match = re.search(r"libnvinfer\.so\.(\d+(?:\.\d+)+)$", name)
        if match:
            versions.append(match.group(1))
    return max(versions, key=lambda v: (v.count("."), [int(p) for p in v.split(".")]), default=None)


def versions_match(built: str, served: str) -> bool:
    """Equal on every component both sides report (a library file name lacks the build number)."""
    a, b = built.split("."), served.split(".")
    common = min(len(a), len(b))
    return common >= 3 and a[:common] == b[:common]


def server_tensorrt_version() -> str | None:
    """The TensorRT of this image: dpkg first (full version), then the library's file name."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "libnvinfer*"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        version = parse_dpkg(result.stdout)
    except (OSError, subprocess.TimeoutExpired):
        version = None
    if version:
        return version
    names = [Path(p).name for pattern in LIBRARY_GLOBS for p in glob.glob(pattern)]
    return parse_library_names(names)


def check_plan(plan: Path, metadata: dict | None, server_version: str | None) -> str:
    """Return a one-line verdict for a servable plan; raise `PlanMismatch` otherwise."""
    if metadata is None:
        raise PlanMismatch(
            f"{plan} has no {plan.name}.json beside it, so its TensorRT version is unknown. "
            "Build plans with `make engine`, which writes that file."
        )
    built = str(metadata.get("tensorrt_version", ""))
    if server_version is None:
        raise PlanMismatch(
            f"cannot tell the TensorRT version of this image (no libnvinfer found) to check {plan}"
        )
    if not built or not versions_match(built, server_version):
        raise PlanMismatch(
            f"{plan} was built with TensorRT {built or '?'}, but this server has TensorRT {server_version}; "
            "a plan only loads in the TensorRT that built it. Rebuild it with `make engine` using the same "
            "TRITON_TAG as docker compose (the engine image nvcr.io/nvidia/tensorrt:<TRITON_TAG>-py3 ships "
            "the TensorRT of nvcr.io/nvidia/tritonserver:<TRITON_TAG>-py3)."
        )
    return f"{plan}: TensorRT {built} matches the server's {server_version}"


def check_repository(repository: Path, server_version: str | None) -> list[str]:
    """Check every plan of ``repository``; a repository without any plan cannot serve in this image."""
    plans = sorted(repository.glob("*/*/model.plan"))
    if not plans:
        raise PlanMismatch(
            f"no TensorRT plan under {repository}: this image serves the TensorRT engine only. "
            "Run `make engine` before `docker compose up`."
        )
    verdicts = []
    for plan in plans:
        meta_file = metadata_path(plan)
        metadata = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else None
        verdicts.append(check_plan(plan, metadata, server_version))
    return verdicts


def server_arguments(command: list[str], environment: dict[str, str]) -> list[str]:
    """Fill the admin key into the restricted-API flags.

    An unset key becomes a random one nobody knows: the model-repository and shared-memory
    APIs are then closed rather than open.
    """
    key = environment.get(ADMIN_KEY_VARIABLE) or secrets.token_urlsafe(32)
    return [part.replace(ADMIN_KEY_PLACEHOLDER, key) for part in command]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.build.tensorrt.plan_guard", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="server command to run when the check passes"
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        for verdict in check_repository(args.repository, server_tensorrt_version()):
            print(f"plan_guard: {verdict}", flush=True)
    except PlanMismatch as error:
        print(f"plan_guard: refusing to serve: {error}", file=sys.stderr, flush=True)
        return 3
    if not command:
        return 0
    os.execvp(command[0], server_arguments(command, dict(os.environ)))
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
