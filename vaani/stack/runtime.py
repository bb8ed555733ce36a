"""Docker or podman, behind one small interface: the commands the compose check needs, nothing more.

Docker is used where its daemon answers; otherwise podman with podman-compose. Two podman facts
shape this module: without systemd nothing runs a container's healthcheck on a timer, so
`health` runs it (`podman healthcheck run`) where Docker only reads the status its daemon keeps;
and podman reads `docker/cpu/containers.conf` (through ``CONTAINERS_CONF``) for the runtime,
the network backend and the ulimits of image builds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vaani.errors import UserFacingError

ENGINES = ("docker", "podman")
PODMAN_CONFIG = Path("docker/cpu/containers.conf")


def _answers(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class Runtime:
    """One container runtime and its compose command, run from the project root ``root``."""

    name: str
    compose: tuple[str, ...]
    root: Path
    environment: dict[str, str] = field(default_factory=dict)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.environment, **(extra or {})}

    def run(
        self, *args: str, check: bool = True, timeout: float | None = None, stdin: object = None
    ) -> subprocess.CompletedProcess[str]:
        """``<engine> args…``; a failure raises with the engine's own message when ``check``."""
        result = subprocess.run(
            [self.name, *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.root,
            timeout=timeout,
            check=False,
            stdin=stdin,
        )
        if check and result.returncode != 0:
            raise UserFacingError(f"`{self.name} {' '.join(args)}` failed: {result.stderr.strip()[-2000:]}")
        return result

    def compose_run(
        self, project: str, files: list[Path], env: dict[str, str], *args: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """The compose command on ``files`` as project ``project``; output is returned for the log."""
        command = [*self.compose, "-p", project]
        for path in files:
            command += ["-f", str(path)]
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env=self.env(env),
            cwd=self.root,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise UserFacingError(f"`{' '.join(command + list(args))}` failed:\n{result.stderr[-3000:]}")
        return result

    def image_exists(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False).returncode == 0

    def containers(self, project: str, service: str | None = None) -> list[str]:
        """IDs of the project's containers (running or not), by the labels both compose tools set."""
        filters = ["--filter", f"label=com.docker.compose.project={project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = self.run("ps", "-a", "-q", *filters).stdout
        return out.split()

    def container(self, project: str, service: str) -> str:
        found = self.containers(project, service)
        if not found:
            raise UserFacingError(f"no container of service {service} in project {project}")
        return found[0]

    def health(self, container: str) -> str:
        """healthy, unhealthy or starting; with podman this runs the container's healthcheck once."""
        if self.name == "podman":
            result = self.run("healthcheck", "run", container, check=False)
            if result.returncode == 0:
                return "healthy"
        state = json.loads(self.run("inspect", container).stdout)[0]["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        return str(health.get("Status") or "starting")

    def running(self, container: str) -> bool:
        state = json.loads(self.run("inspect", container).stdout)[0]["State"]
        return bool(state.get("Running"))

    def bindings(self, container: str) -> dict[str, list[str]]:
        """Container port (``8000/tcp``) → the host addresses it is published on (``127.0.0.1:8000``)."""
        ports = json.loads(self.run("inspect", container).stdout)[0]["NetworkSettings"]["Ports"] or {}
        return {
            port: [f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}" for b in (bound or [])]
            for port, bound in ports.items()
        }

    def wait(self, container: str, timeout: float) -> int:
        """Block until ``container`` exits; its exit status."""
        return int(self.run("wait", container, timeout=timeout).stdout.split()[0])

    def restarts(self, container: str) -> int:
        return int(json.loads(self.run("inspect", container).stdout)[0].get("RestartCount") or 0)

    def remove_networks(self, project: str) -> None:
        """The project's networks (podman-compose 1.0's `down` leaves them; Docker's removes them)."""
        label = f"label=com.docker.compose.project={project}"
        for network in self.run("network", "ls", "-q", "--filter", label).stdout.split():
            self.run("network", "rm", network)

    def logs(self, container: str) -> str:
        result = self.run("logs", container, check=False)
        return result.stdout + result.stderr


def detect(root: Path, preferred: str | None = None) -> Runtime:
    """The engine named, else Docker when its daemon answers, else podman (with podman-compose)."""
    candidates = [preferred] if preferred else list(ENGINES)
    for name in candidates:
        if name == "docker" and _answers(["docker", "info"]):
            if _answers(["docker", "compose", "version"]):
                return Runtime("docker", ("docker", "compose"), root)
            if shutil.which("docker-compose"):
                return Runtime("docker", ("docker-compose",), root)
        if name == "podman" and shutil.which("podman") and shutil.which("podman-compose"):
            config = {"CONTAINERS_CONF": str((root / PODMAN_CONFIG).resolve())}
            return Runtime("podman", ("podman-compose",), root, config)
    wanted = preferred or "Docker (with compose) or podman (with podman-compose)"
    raise UserFacingError(
        f"no container runtime: {wanted} is needed; on Debian `scripts/system-packages.sh containers` "
        "installs podman, podman-compose, runc, netavark and mmdebstrap"
    )
