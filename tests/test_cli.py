"""The `vaani` command: lean imports for serving and clients, and `vaani serve`'s lifecycle."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from vaani.supervision.process import free_port

BLOCK_HEAVY = (  # the build and eval extras: the serving image installs neither
    "import sys\n"
    "for name in ('torch', 'transformers', 'onnx', 'jiwer', 'matplotlib'):\n"
    "    sys.modules[name] = None  # any import of them now fails\n"
)


def test_cli_and_serving_steps_import_without_torch_or_transformers():
    code = BLOCK_HEAVY + (
        "from vaani.cli import parser\n"
        "parser()\n"
        "import vaani.client.api, vaani.audio, vaani.serving.preprocessing, vaani.serving.batching\n"
        "import vaani.serving.ctc, vaani.serving.engines.onnxruntime, vaani.serving.step\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_serve_prints_endpoints_and_stops_cleanly_on_sigterm(triton):
    http, gateway = free_port(), free_port()
    command = [
        sys.executable, "-m", "vaani.cli", "serve", "--skip-build", "--repository", str(triton.repository),
        "--http-port", str(http), "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
        "--gateway-port", str(gateway),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops the server" in line:
                break
        banner = "".join(lines)
        assert f"http://127.0.0.1:{http}/v2/models/asr/infer" in banner, banner[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        assert f"gateway  http://127.0.0.1:{gateway}/" in banner, banner[-2000:]
        _wait_for(f"http://127.0.0.1:{gateway}/health")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    for url in (f"http://127.0.0.1:{http}/v2/health/ready", f"http://127.0.0.1:{gateway}/health"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=1)
            except OSError:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{url} still answers after vaani serve exited")


def _wait_for(url: str, seconds: float = 60) -> None:
    """Until ``url`` answers 200: the gateway starts after Triton is ready, so it may lag the banner."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def test_the_gateway_ends_with_a_killed_launcher(triton):
    gateway = free_port()
    command = [
        sys.executable, "-m", "vaani.cli", "serve", "--skip-build", "--repository", str(triton.repository),
        "--http-port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
        "--gateway-port", str(gateway),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(f"http://127.0.0.1:{gateway}/health", seconds=120)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{gateway}/health", timeout=1)
        except OSError:
            return
        time.sleep(0.5)
    raise AssertionError("the gateway outlived its killed launcher")
