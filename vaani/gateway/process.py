"""The gateway as a child process: how `vaani serve` runs it beside Triton, and how the tests run it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO

from vaani.errors import UserFacingError


class GatewayProcess:
    """`vaani gateway` in a child process, forwarding to Triton's gRPC ``triton_url``."""

    def __init__(
        self,
        triton_url: str,
        port: int,
        host: str = "127.0.0.1",
        extra_args: tuple[str, ...] = (),
        preexec_fn: Callable[[], None] | None = None,
        log: IO[bytes] | None = None,
    ) -> None:
        """``preexec_fn`` runs in the child before it starts: `vaani serve` passes the one that ends
        the child with its launcher, however the launcher dies. ``log`` takes the child's output
        (default: this process's), so that a test can see what an attack writes there."""
        reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard bind answers on localhost
        self.url = f"http://{reach}:{port}"
        command = [sys.executable, "-m", "vaani.cli", "gateway", "--triton-url", triton_url]
        command += ["--host", host, "--port", str(port), *extra_args]
        stderr = None if log is None else subprocess.STDOUT
        self.process = subprocess.Popen(command, preexec_fn=preexec_fn, stdout=log, stderr=stderr)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until `/health` answers 200 (the gateway is up and Triton is ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserFacingError(f"the gateway exited with status {self.process.returncode} at start")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise UserFacingError(f"the gateway at {self.url} was not ready after {timeout:.0f} s")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
