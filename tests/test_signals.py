"""Signals and dying servers: what a container runtime's SIGTERM does, and what a killed server leaves.

Against real processes: `vaani serve` subprocesses and `TritonProcess` servers, with requests in
flight while the signal lands (the acoustic step's process is seen using CPU first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from vaani.client.api import TranscriptionClient, TranscriptionError
from vaani.serving.contract import ACOUSTIC, SAMPLING_RATE
from vaani.supervision.process import Ports, TritonProcess, free_port
from vaani.supervision.stubs import SHM_DIR, stubs_of

from .conftest import ROOT
from .test_reliability import _group, _ready, _serve, _server_pid, _server_pid_or_none, _wait

pytestmark = pytest.mark.server

RNG = np.random.default_rng(11)


def _recording(seconds: int) -> np.ndarray:
    return (0.1 * RNG.standard_normal(seconds * SAMPLING_RATE)).astype(np.float32)


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _once_acoustic_runs(server_pid: int) -> int:
    """Return (its pid) once the acoustic step's process has used half a second of CPU: requests are in
    flight."""
    (acoustic,) = [stub.pid for stub in stubs_of(server_pid) if stub.model == ACOUSTIC]
    start = _cpu_ticks(acoustic)
    _wait(lambda: _cpu_ticks(acoustic) - start >= os.sysconf("SC_CLK_TCK") // 2, 120)
    return acoustic


def _once_idle(pid: int, seconds: float = 1.0) -> None:
    """Return once process ``pid`` has used no CPU for ``seconds``."""
    last, since = _cpu_ticks(pid), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.1)
        if _cpu_ticks(pid) != last:
            last, since = _cpu_ticks(pid), time.monotonic()


def _transcribe(url: str, protocol: str, audio: np.ndarray) -> tuple[bool, str]:
    client = TranscriptionClient(url, protocol=protocol)
    try:
        return True, client.transcribe(audio)
    except TranscriptionError as error:
        return False, str(error)
    finally:
        client.close()


def test_sigterm_to_vaani_serve_lets_grpc_requests_in_flight_finish(small_repository):
    """What the CPU image's runtime signals (`vaani serve`, PID 1) drains, over gRPC too (the gateway's
    protocol, where tritonserver's own stop fails requests in flight: the test below)."""
    process, ports = _serve(small_repository)
    try:
        server_pid = _server_pid(process.pid)
        regions = {stub.region for stub in stubs_of(server_pid)}
        audio = _recording(20)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(_transcribe, f"127.0.0.1:{ports.grpc}", "grpc", audio) for _ in range(4)]
            _once_acoustic_runs(server_pid)
            process.send_signal(signal.SIGTERM)
            results = [future.result(timeout=180) for future in futures]
        assert all(ok for ok, _ in results), results
        assert len({transcript for _, transcript in results}) == 1
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not _group(server_pid)
    assert not [region for region in regions if (SHM_DIR / region).exists()]


@pytest.mark.parametrize(("protocol", "drains"), [("http", True), ("grpc", False)])
def test_sigterm_to_tritonserver_itself(small_repository, tmp_path, protocol, drains):
    """Recorded, not endorsed: SIGTERM straight to tritonserver 2.51 (what a runtime signals when the
    server is PID 1, as in the GPU image) waits for HTTP connections, so HTTP requests in flight finish;
    over gRPC, a request already past the ensemble's first step fails ("Server is stopping"): Triton
    refuses its next step. That is why `vaani serve` must be the process the runtime signals."""
    ports = Ports(free_port(), free_port(), free_port())
    server = TritonProcess(small_repository, ports, log_file=tmp_path / "tritonserver.log", supervise=False)
    try:
        server.wait_ready()
        url = server.http_url if protocol == "http" else server.grpc_url
        audio = _recording(30)
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(_transcribe, url, protocol, audio) for _ in range(3)]
            _once_acoustic_runs(server.process.pid)
            os.kill(server.process.pid, signal.SIGTERM)
            results = [future.result(timeout=180) for future in futures]
    finally:
        server.stop()
    if drains:
        assert all(ok for ok, _ in results), results
    else:
        failures = [message for ok, message in results if not ok]
        assert failures, results
        assert all("stopping" in message for message in failures), failures


def test_no_step_process_outlives_a_killed_server(small_repository):
    """`kill -9` of tritonserver while the acoustic step answers a request: that process deadlocked on
    its way out (its health thread waits for the GIL, which its main thread holds while it waits for the
    dead server to take the answer) and lived on, a child of init, with hundreds of MB. The server is
    stopped (SIGSTOP) until the step has computed and waits on it, then killed: that moment, made
    certain. `vaani serve` ends what the server left, and its regions, before it starts the next one;
    and the next one leaves nothing on SIGTERM."""
    process, ports = _serve(small_repository)
    url = f"127.0.0.1:{ports.http}"
    try:
        old = _server_pid(process.pid)
        regions = {stub.region for stub in stubs_of(old)}
        audio = _recording(60)

        def doomed() -> None:  # its server is killed under it: whatever it raises is expected
            with contextlib.suppress(Exception):
                _transcribe(url, "http", audio)

        threading.Thread(target=doomed, daemon=True).start()
        acoustic = _once_acoustic_runs(old)
        os.kill(old, signal.SIGSTOP)
        _once_idle(acoustic)
        os.kill(old, signal.SIGKILL)
        _wait(lambda: not _group(old), 30)
        assert not [region for region in regions if (SHM_DIR / region).exists()]
        _wait(lambda: _server_pid_or_none(process.pid) not in (None, old) and _ready(url), 180)
        new = _server_pid(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not _group(new)


def test_the_cpu_image_signals_vaani_serve_and_waits_for_its_drain():
    """In the CPU stack the runtime's SIGTERM reaches `vaani serve` itself: the service runs it in
    exec form (PID 1, no shell in between, no entrypoint of the image), and the runtime waits longer
    than `vaani serve`'s drain (--exit-timeout, 30 s) before it kills."""
    compose = yaml.safe_load((ROOT / "docker-compose.cpu.yml").read_text())
    triton = compose["services"]["triton"]
    assert triton["command"][:2] == ["vaani", "serve"] and "entrypoint" not in triton
    assert triton["stop_signal"] == "SIGTERM"
    grace = triton["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 30
    dockerfile = (ROOT / "docker" / "cpu" / "vaani.Dockerfile").read_text().splitlines()
    assert not [line for line in dockerfile if line.startswith("ENTRYPOINT")]
    assert "STOPSIGNAL SIGTERM" in dockerfile
