"""Running Locust headless as a subprocess, with a progress bar, and reading back its records.

Locust monkey-patches the standard library with gevent when imported, which would break the
threads and subprocesses of the calling program (the bench drives servers and PyTorch), so it
always runs as ``python -m locust`` in its own process. Triton's gRPC address beside its HTTP
one is worked out here too, the one rule for the locustfile and the `vaani` commands alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vaani.loadtest.stats import RequestRecord, read_records

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"http": "TritonHttpUser", "grpc": "TritonGrpcUser", "fastapi": "FastApiUser"}
TRITON_HTTP_PORT = 8000


def grpc_address(http_address: str) -> str:
    """Triton's gRPC address beside its HTTP one: ``http://h:18000`` or ``h:18000`` → ``h:18001``.

    Triton pairs its ports that way by default (HTTP 8000, gRPC 8001), so an HTTP address alone
    says where gRPC is, and a load test never silently sends its gRPC users to another server's
    8001. An address without a port is taken to be Triton's default.
    """
    parts = urlsplit(http_address if "//" in http_address else f"//{http_address}")
    port = parts.port or TRITON_HTTP_PORT
    host = parts.netloc.removesuffix(f":{parts.port}") if parts.port else parts.netloc
    return f"{host}:{port + 1}"


@dataclass(frozen=True)
class LocustRun:
    """What one Locust run produced: its exit code, per-request records and where its files are."""

    returncode: int
    records: list[RequestRecord]
    prefix: Path

    @property
    def log(self) -> Path:
        return Path(f"{self.prefix}.log")

    def errors(self) -> list[str]:
        """What Locust and the locustfile logged as errors (why a run stopped): the messages only."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return [line.split(": ", 1)[-1] for line in lines if "/ERROR/" in line or "/CRITICAL/" in line]


def run_locust(
    host: str,
    targets: list[str],
    manifest: Path,
    prefix: Path,
    users: int = 1,
    seconds: float = 10,
    grpc_url: str | None = None,
    step_users: list[int] | None = None,
    step_seconds: float = 30,
    label: str = "locust",
    seed: int = 0,
) -> LocustRun:
    """Run Locust against ``host`` with one user class per target ("http", "grpc", "fastapi").

    gRPC users go to ``grpc_url``, else to `grpc_address` of ``host`` (never to a VAANI_GRPC_URL
    left in the environment). With ``step_users`` the step-ramp shape drives the run (one step per
    user count) instead of a fixed ``users`` for ``seconds``. Files are ``<prefix>_*.csv``,
    ``<prefix>.html`` and ``<prefix>.log``.
    """
    from tqdm import tqdm

    prefix.parent.mkdir(parents=True, exist_ok=True)
    host = host if "//" in host else f"http://{host}"
    env = {**os.environ, "VAANI_MANIFEST": str(manifest.resolve()), "VAANI_SEED": str(seed)}
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host]
    command += ["--grpc-host", grpc_url or grpc_address(host)]
    command += ["--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", "--loglevel", "WARNING"]
    # At the end of the run time users finish the request in flight: with long clips under load a
    # killed request would be work done but not counted, and short runs would record nothing.
    command += ["--stop-timeout", "600"]
    if step_users:
        env["VAANI_STEP_USERS"] = ",".join(map(str, step_users))
        env["VAANI_STEP_SECONDS"] = str(step_seconds)
        seconds = len(step_users) * step_seconds
    else:
        env.pop("VAANI_STEP_USERS", None)
        command += ["--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds:.0f}s"]
    command += [USER_CLASSES[t] for t in targets]
    stale = Path(f"{prefix}_requests.csv")
    stale.unlink(missing_ok=True)
    with open(f"{prefix}.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        began = time.monotonic()
        with tqdm(
            total=round(seconds), desc=label, bar_format="{desc}: {bar} {n}/{total} s", leave=False
        ) as bar:
            while process.poll() is None:
                time.sleep(0.5)
                bar.n = min(round(time.monotonic() - began), bar.total)
                bar.refresh()
    records = read_records(stale) if stale.exists() else []
    return LocustRun(process.returncode, records, prefix)
