"""The stack's images: a Debian base (pulled, or made with mmdebstrap when no registry answers) and
the project's images built on it.

Builds go through the engine itself rather than the compose tool: podman-compose 1.0 passes no
build secrets, and timing each image separately is what the check reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vaani.errors import UserFacingError
from vaani.stack.runtime import Runtime

DEFAULT_BASE = "debian:bookworm-slim"
LOCAL_BASE = "localhost/vaani-debian:bookworm"
SUITE = "bookworm"
CA_SECRET = "ca-certificates"
PULL_TIMEOUT_S = 120


@dataclass(frozen=True)
class ImageSpec:
    """One image of docker-compose.cpu.yml: its Dockerfile and the tag compose runs it under."""

    dockerfile: Path
    tag: str
    variable: str  # the compose variable that names the tag


PROJECT_IMAGES = (
    ImageSpec(Path("docker/cpu/vaani.Dockerfile"), "localhost/vaani-cpu:latest", "VAANI_IMAGE"),
    ImageSpec(
        Path("docker/cpu/prometheus.Dockerfile"), "localhost/vaani-prometheus:latest", "PROMETHEUS_IMAGE"
    ),
)


def _pulled(runtime: Runtime, image: str) -> bool:
    try:
        return runtime.run("pull", image, check=False, timeout=PULL_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_image(runtime: Runtime, requested: str = DEFAULT_BASE) -> str:
    """An image to build on: ``requested`` when present or pullable, else a local bookworm made here."""
    if runtime.image_exists(requested) or _pulled(runtime, requested):
        return requested
    if requested != DEFAULT_BASE:
        raise UserFacingError(f"base image {requested} is neither present nor pullable")
    if not runtime.image_exists(LOCAL_BASE):
        make_base(runtime, LOCAL_BASE)
    return LOCAL_BASE


def make_base(runtime: Runtime, image: str, suite: str = SUITE) -> None:
    """Debian ``suite`` (minbase) from the Debian mirror the host uses, imported as ``image``."""
    if not shutil.which("mmdebstrap"):
        raise UserFacingError(
            "no registry answered and mmdebstrap is missing: `scripts/system-packages.sh containers` "
            "installs it (or pass --base-image with an image you have)"
        )
    bootstrap = subprocess.Popen(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates", suite, "-"],
        stdout=subprocess.PIPE,
    )
    try:
        runtime.run("import", "--change", 'CMD ["/bin/bash"]', "-", image, stdin=bootstrap.stdout)
    finally:
        bootstrap.stdout.close()
        if bootstrap.wait() != 0:
            raise UserFacingError(f"mmdebstrap {suite} failed (exit {bootstrap.returncode})")


def ca_bundle() -> Path | None:
    """The CA bundle this host's pip trusts: passed to builds so pip works behind TLS inspection."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build(runtime: Runtime, spec: ImageSpec, base: str) -> None:
    """``spec`` on ``base``; layers are cached, so an unchanged tree rebuilds in seconds.

    Build steps use the host's network: apt and pip then resolve names as the host does. On a
    bridge they depend on the engine's NAT and DNS forwarding, which failed in CI ("Temporary
    failure resolving 'deb.debian.org'") on a host where the host itself resolved fine.
    """
    args = ["build", "--network", "host", "-f", str(spec.dockerfile), "-t", spec.tag]
    args += ["--build-arg", f"BASE_IMAGE={base}"]
    bundle = ca_bundle()
    if bundle:
        args += ["--secret", f"id={CA_SECRET},src={bundle}"]
    runtime.run(*args, ".")
