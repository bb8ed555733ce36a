"""Running the `tritonserver` that the nvidia-pytriton wheel ships, on the CPU or a GPU.

The wheel holds the server, the python backend and one backend stub per Python version.
The stub that matches this interpreter is copied next to the backend, and the
interpreter's own ``libpython`` goes first on ``LD_LIBRARY_PATH`` (a pyenv Python beside
the system one otherwise breaks imports such as ``ssl`` inside the steps).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vaani.errors import UserFacingError


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError:
        raise UserFacingError(
            "tritonserver is not installed: install the serving extra (`make setup`, or "
            "`pip install 'vaani[serve]'`), which brings it with the nvidia-pytriton wheel"
        ) from None
    return Path(pytriton.__file__).parent


def backend_directory() -> Path:
    """The wheel's backends folder, with the stub for this interpreter in place."""
    root = _pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise UserFacingError(f"nvidia-pytriton has no python backend stub for Python {version}")
    target = root / "backends" / "python" / "triton_python_backend_stub"
    if not target.exists() or target.stat().st_size != stub.stat().st_size:
        shutil.copy2(stub, target)
    return root / "backends"


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(Path(sys.base_prefix) / "lib")]
    libs = _pytriton_root().parent / "nvidia_pytriton.libs"
    paths = [p for p in [*libdirs, str(libs), env.get("LD_LIBRARY_PATH", "")] if p]
    env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths))
    # The stub finds this environment's site-packages through the python on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def command(repository: Path, ports: Ports, address: str = "127.0.0.1", log_verbose: int = 0) -> list[str]:
    binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    return [
        str(binary),
        f"--model-repository={repository.resolve()}",
        f"--backend-directory={backend_directory()}",
        f"--http-address={address}",
        f"--http-port={ports.http}",
        f"--grpc-address={address}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={address}",
        f"--metrics-port={ports.metrics}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-timeout-secs=10",
        f"--log-verbose={log_verbose}",
    ]


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonProcess:
    """A running tritonserver; a context manager that always stops it."""

    def __init__(self, repository: Path, ports: Ports, log_file: Path | None = None) -> None:
        self.repository = repository
        self.ports = ports
        self._log = open(log_file, "w") if log_file else None  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            command(repository, ports),
            env=server_environment(),
            stdout=self._log or None,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,
        )

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserFacingError(
                    f"tritonserver exited with code {self.process.returncode} before it was ready "
                    "(its log above says why)"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise UserFacingError(f"tritonserver was not ready within {timeout:.0f} s")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> TritonProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
