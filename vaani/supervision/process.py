"""Running the `tritonserver` that the nvidia-pytriton wheel ships, on the CPU or a GPU.

The wheel holds the server, the python backend and one backend stub per Python version.
The stub that matches this interpreter is copied next to the backend, and the
interpreter's own ``libpython`` goes first on ``LD_LIBRARY_PATH`` (a pyenv Python beside
the system one otherwise breaks imports such as ``ssl`` inside the steps).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import py_compile
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vaani.build.pipeline import served_from
from vaani.errors import UserFacingError
from vaani.gpu import gpu_info
from vaani.serving.contract import ENSEMBLE
from vaani.supervision.admin import AdminClient, resolve_admin_key, restricted_flags
from vaani.supervision.stubs import mapped_regions, reap_group, remove_regions, stubs_of
from vaani.supervision.supervisor import SETTLED, Supervisor

PR_SET_PDEATHSIG = 1
CPU_ONLY_NOTE = (
    "no CUDA GPU here: tritonserver's lines about CUDA below ('Unable to allocate pinned system memory', "
    "'CudaDriverHelper has not been initialized', 'unable to create stream for asr') are expected on a "
    "CPU and harmless"
)


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


def compile_steps(repository: Path) -> None:
    """Write each step's `__pycache__` before the server loads it, so that its stub writes nothing.

    Triton reloads a step whose folder changed since it was loaded whenever the ensemble loads
    again, and a stub's first import writes `model.py`'s bytecode into that folder (the stub's
    interpreter ignores PYTHONDONTWRITEBYTECODE): the supervisor's first recovery of one step
    then restarted every step, and the old processes' exit was taken for more deaths. Compiled
    here, with this interpreter (the stub's version), the stub finds the bytecode current. A
    read-only repository is left as it is: the stub cannot write into it either.
    """
    for source in repository.glob("*/[0-9]*/model.py"):
        with contextlib.suppress(OSError, py_compile.PyCompileError):
            py_compile.compile(str(source), doraise=True)


def command(
    repository: Path,
    ports: Ports,
    admin_key: str,
    address: str = "127.0.0.1",
    exit_timeout: int = 30,
    log_verbose: int = 0,
    models: Sequence[str] | None = None,
) -> list[str]:
    """The server's flags: explicit model control (the supervisor reloads failed steps), ``models`` (by
    default those the build wrote) loaded by name (a stray folder in the repository cannot stop a
    start), strict readiness, and model control, shared memory, logging and trace behind ``admin_key``."""
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
        "--model-control-mode=explicit",
        *(f"--load-model={model}" for model in (models or served_from(repository))),
        "--strict-readiness=true",
        f"--exit-timeout-secs={exit_timeout}",
        *restricted_flags(admin_key),
        f"--log-verbose={log_verbose}",
    ]


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_free(ports: Ports, address: str) -> None:
    """Refuse before starting when a port is taken (an orphan server would answer our ready check)."""
    for name, port in (("http", ports.http), ("grpc", ports.grpc), ("metrics", ports.metrics)):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                raise UserFacingError(
                    f"port {port} ({name}) on {address} is in use, by another server perhaps "
                    f"(`ss -ltnp 'sport = :{port}'` shows which): stop it or pass --{name}-port"
                ) from None


def _end_with_parent() -> None:
    """In the child: SIGTERM when the launcher dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TritonProcess:
    """A running, supervised tritonserver; a context manager that always stops it.

    Stopping drains: the ensemble is unloaded first, so new requests are refused while the ones
    in flight finish (within ``exit_timeout``); then the server stops, any stub process that
    outlived it is ended, and any shared-memory region its stubs left is removed.
    """

    def __init__(
        self,
        repository: Path,
        ports: Ports,
        log_file: Path | None = None,
        address: str = "127.0.0.1",
        admin_key: str | None = None,
        exit_timeout: int = 30,
        supervise: bool = True,
        log: Callable[[str], None] = print,
        models: Sequence[str] | None = None,
    ) -> None:
        """``models``: what to load, for a repository assembled without `vaani build` (the GPU
        benchmark's); by default the models its build wrote."""
        require_free(ports, address)
        self.repository = repository
        self.ports = ports
        self.address = address
        self.exit_timeout = exit_timeout
        self.admin_key = admin_key or resolve_admin_key()[0]
        self.log = log
        self._log = open(log_file, "w") if log_file else None  # noqa: SIM115 - lives as long as the server
        if gpu_info() is None:
            log(CPU_ONLY_NOTE)
        compile_steps(repository)
        self.process = subprocess.Popen(
            command(repository, ports, self.admin_key, address, exit_timeout, models=models),
            env=server_environment(),
            stdout=self._log or None,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,
            preexec_fn=_end_with_parent,
        )
        self.admin = AdminClient(self.http_url, self.admin_key)
        self.supervisor = Supervisor(self.process.pid, self.admin, log=log) if supervise else None

    @property
    def local_host(self) -> str:
        """Where this machine reaches the server: its address, or localhost for a wildcard bind."""
        return "127.0.0.1" if self.address in ("0.0.0.0", "::", "") else self.address

    @property
    def http_url(self) -> str:
        return f"{self.local_host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.local_host}:{self.ports.grpc}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/models/{ENSEMBLE}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserFacingError(
                    f"tritonserver exited with code {self.process.returncode} before it was ready "
                    "(its log above says why)"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        if self.supervisor is not None and not self.supervisor.is_alive():
                            self.supervisor.start()
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise UserFacingError(f"tritonserver was not ready within {timeout:.0f} s")

    def drain(self) -> None:
        """Refuse new requests and let the ones in flight finish, within ``exit_timeout`` in all.

        The ensemble unloads first, so `asr` refuses new requests while its requests in flight go on
        through the steps; then every step unloads, so calls made to a step directly finish too and
        each step's processes exit. This is what tritonserver's own SIGTERM path does, except that
        Triton refuses the next step of an ensemble request once it is stopping: over gRPC such a
        request in flight fails (HTTP requests are spared: Triton first waits for their connections).
        """
        deadline = time.monotonic() + self.exit_timeout
        try:
            self.admin.unload(ENSEMBLE)
            self._settle(lambda states: states.get(ENSEMBLE, "") in SETTLED, deadline)
            for model, state in self.admin.states().items():
                if state not in SETTLED:
                    self.admin.unload(model)
            self._settle(lambda states: all(state in SETTLED for state in states.values()), deadline)
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the server is not answering: nothing left to drain

    def _settle(self, done: Callable[[dict[str, str]], bool], deadline: float) -> None:
        while time.monotonic() < deadline and not done(self.admin.states()):
            time.sleep(0.1)

    def stop(self) -> int:
        regions: set[str] = set()
        if self.supervisor is not None:
            self.supervisor.stop()
            regions |= self.supervisor.regions
        if self.process.poll() is None:
            regions |= {stub.region for stub in stubs_of(self.process.pid)}
            self.drain()
            self._end()
        orphans = reap_group(self.process.pid)
        if orphans:
            self.log(
                f"ended {len(orphans)} step process(es) that outlived tritonserver: "
                + ", ".join(f"{stub.model} (pid {stub.pid})" for stub in orphans)
            )
        left = remove_regions(regions | {stub.region for stub in orphans})
        if left:
            self.log(f"removed {len(left)} shared-memory region(s) the server left in /dev/shm")
        if self._log:
            self._log.close()
        return self.process.returncode

    def _end(self, grace: float = 2.0) -> None:
        """SIGTERM, and wait for the server to exit; end it once nothing of it is left to finish.

        After the drain every model is unloaded and no step process runs, and a server with nothing
        loaded exits at once, unless it waits out the whole exit timeout (then logs "failed to stop
        server"): for idle HTTP keep-alive connections, or for a model version whose step process
        died with a request in flight (the python backend never releases that request, so the
        version never unloads). Neither has anything left to finish: once no step process of the
        server has run for ``grace`` seconds, it is ended. While a step process still runs (a drain
        cut short by the exit timeout), Triton's own exit timeout applies.
        """
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.exit_timeout + 15
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                self.process.wait(timeout=0.2)
                return
            except subprocess.TimeoutExpired:
                pass
            if stubs_of(self.process.pid):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= grace:
                leaked = len(mapped_regions(self.process.pid))
                self.log(
                    f"tritonserver has nothing left to finish (every model unloaded, no step process) but "
                    f"waits out its exit timeout, for idle HTTP connections or {leaked} model version(s) "
                    "of steps that died with a request in flight: ending it"
                )
                break
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> TritonProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
