"""The user's journey on one checkout, in order, with real processes driven as a person drives them.

`make serve` → the README's commands (HTTP, gRPC, SRT, the gateway with curl and the `openai` SDK)
→ `make wer` against the README's table → a plain `locust -f loadtest/locustfile.py --host …` →
Ctrl-C → `make serve` again (with a stray folder in the repository) → another decoder on the same
repository → back → Ctrl-C. Every start must come up, every stop must leave no process and no
shared-memory region behind. The repository is the checkout's own `model_repository/`: what a
second start sees is what this test sees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from csv import DictReader
from pathlib import Path

import pytest

from tests.journey.readme import Ports, block, substitute

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "model_repository"
SHM = Path("/dev/shm")
START_TIMEOUT_S = 600  # a first start exports the model; the 2-core CI machine is shared
pytestmark = [pytest.mark.server, pytest.mark.timeout(2400)]


def _consecutive_free_ports(count: int, start: int = 18100) -> int:
    """A base port with ``count`` free ports after it (Triton's convention: gRPC = HTTP + 1)."""
    for base in range(start, 30000, 10):
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:  # as `vaani serve` checks: TIME_WAIT is no listener
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


@pytest.fixture(scope="module")
def ports() -> Ports:
    base = _consecutive_free_ports(4)
    return Ports(http=base, grpc=base + 1, metrics=base + 2, gateway=base + 3)


def _make_serve(ports: Ports, *extra: str) -> list[str]:
    return [
        "make",
        "serve",
        "MODEL=models/tiny-hindi",
        f"HTTP_PORT={ports.http}",
        f"GRPC_PORT={ports.grpc}",
        f"METRICS_PORT={ports.metrics}",
        f"GATEWAY_PORT={ports.gateway}",
        *extra,
    ]


def _ours() -> list[str]:
    """Processes that serve the checkout's repository (tritonserver and its step stubs)."""
    result = subprocess.run(["pgrep", "-af", str(REPOSITORY)], capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]


def _regions(processes: list[str]) -> set[str]:
    """The shared-memory regions these step processes were given (their command lines name them)."""
    return set(re.findall(r"triton_python_backend_shm_region_[\w-]+", "\n".join(processes)))


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def serving(ports: Ports, log: Path, *extra: str) -> Iterator[subprocess.Popen]:
    """`make serve` in its own process group until the ensemble and the gateway answer; on leaving,
    Ctrl-C as a terminal sends it (SIGINT to the group), then no process or region may be left."""
    assert not _ours(), f"a server of the checkout's repository is already running: {_ours()}"
    regions: set[str] = set()
    with log.open("w") as out:
        process = subprocess.Popen(
            _make_serve(ports, *extra), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (
            _ready(f"http://127.0.0.1:{ports.http}/v2/models/asr/ready")
            and _ready(f"http://127.0.0.1:{ports.gateway}/health")
        ):
            assert process.poll() is None, f"make serve exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"make serve not ready in {START_TIMEOUT_S} s:\n{log.read_text()}"
            )
            time.sleep(1)
        yield process
    finally:
        regions = _regions(_ours())
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=120)
    output = log.read_text()
    # make passes Ctrl-C on to `vaani serve`, waits for it, then ends itself by the same signal
    assert code in (0, -signal.SIGINT), f"make serve ended with {code} after Ctrl-C:\n{output[-3000:]}"
    assert "stopping: the ensemble refuses new requests" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not _ours(), f"left running after Ctrl-C: {_ours()}"
    assert _consecutive_free_ports(4, start=ports.http) == ports.http, "a port is still held after Ctrl-C"
    assert regions, "no step process of this server was seen"
    left = {name for name in regions if (SHM / name).exists()}
    assert not left, f"left in /dev/shm: {left}"


def _run(command: str, cwd: Path, timeout: int = 600) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,  # as in CI: nothing to answer a prompt with
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def shell(tmp_path_factory) -> Path:
    """The user's second shell: a folder of their own, the checkout's `.venv` reachable as the README says."""
    folder = tmp_path_factory.mktemp("shell")
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def _readme_table(text: str, row: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
    return [cell.strip() for cell in line.strip("|").split("|")[1:]]


def test_the_journey(ports: Ports, shell: Path, tmp_path: Path) -> None:
    # 1. First start: the README's quick start, ports substituted.
    with serving(ports, tmp_path / "serve-1.log") as server:
        banner = (tmp_path / "serve-1.log").read_text()
        assert f"transcribe some.wav --url 127.0.0.1:{ports.http}" in banner  # the hint names the real port
        _second_shell(ports, shell)
        _gateway(ports, shell)
        _wer(ports, tmp_path)
        _locust(ports, tmp_path)
        assert server.poll() is None

    # 2. Second start on the unchanged checkout, with a stray model folder beside the served ones.
    stray = REPOSITORY / "stray" / "1"
    stray.mkdir(parents=True, exist_ok=True)
    (stray / "model.py").write_text("raise SystemExit('a stray folder was loaded')\n")
    try:
        with serving(ports, tmp_path / "serve-2.log"):
            assert "nothing to do" in (tmp_path / "serve-2.log").read_text()
            _transcribes(ports, shell)
    finally:
        shutil.rmtree(stray.parent)

    # 3. Another decoder on the same repository, then back to the default.
    with serving(ports, tmp_path / "serve-3.log", "SERVE_ARGS=--decoder greedy"):
        _transcribes(ports, shell)
    assert "decoder" in json.loads((REPOSITORY / ".build.json").read_text())["settings"]
    with serving(ports, tmp_path / "serve-4.log"):
        _transcribes(ports, shell)


def _python(code: str, shell: Path) -> None:
    """A README Python example run by this environment's interpreter; it must print something."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=shell, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def _transcribes(ports: Ports, shell: Path) -> None:
    text = _run(substitute(".venv/bin/vaani transcribe hello.wav", ports), shell)
    assert text.strip(), "an empty transcript"


def _second_shell(ports: Ports, shell: Path) -> None:
    """The README's 'second shell' block as written (ports substituted), then SRT and Python."""
    output = _run(substitute(block("espeak-ng -v hi").code, ports), shell)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) >= 3, output
    assert json.loads(lines[1])  # --json
    assert json.loads(lines[-1])["text"]  # the gateway's answer
    srt = _run(substitute(".venv/bin/vaani transcribe hello.wav --format srt", ports), shell)
    assert re.search(r"^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", srt, re.MULTILINE), srt
    python = substitute(block("from vaani.client.api import transcribe", "python").code, ports)
    _python(python, shell)


def _gateway(ports: Ports, shell: Path) -> None:
    """The gateway section: curl as written, its printed answer equal to the README's, the SDK example."""
    code = block("-F response_format=srt").code
    output = _run(substitute(code, ports), shell)
    shown = next(line for line in code.splitlines() if line.startswith("# {"))[2:]
    assert output.startswith(shown), "the README shows another answer than the gateway gives"
    python = substitute(block("from openai import OpenAI", "python").code, ports)
    _python(python, shell)
    bomb = block("ffmpeg -f lavfi -i anullsrc").code
    refusal = _run(substitute(bomb, ports), shell)
    shown = next(line for line in bomb.splitlines() if line.startswith('# {"error"'))
    assert refusal.startswith(shown[2:].split("…")[0].rstrip(", ")), refusal  # the refusal as documented


def _wer(ports: Ports, tmp_path: Path) -> None:
    """`make wer` against this server prints what the README's accuracy table says."""
    _run(f"make wer HTTP_URL=localhost:{ports.http} OUTPUT={tmp_path}", ROOT, timeout=1500)
    summary = json.loads((tmp_path / "wer" / "summary.json").read_text())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    served_wer, reference_wer = _readme_table(readme, "WER")
    served_cer, reference_cer = _readme_table(readme, "CER")
    identical = _readme_table(readme, "identical transcripts")[0]
    assert served_wer == f"{100 * summary['wer']:.2f} %"
    assert served_cer == f"{100 * summary['cer']:.2f} %"
    reference = summary["reference"]
    assert reference_wer == f"{100 * reference['wer']:.2f} %"
    assert reference_cer == f"{100 * reference['cer']:.2f} %"
    assert identical == f"{reference['identical_transcripts']} of {reference['utterances']}"


def _locust(ports: Ports, tmp_path: Path) -> None:
    """The README's plain Locust command on non-default ports: the gRPC users follow --host."""
    csv = tmp_path / "locust"
    _run(
        f"{ROOT}/.venv/bin/locust -f loadtest/locustfile.py --headless -u 2 -r 2 -t 15s "
        f"--host http://127.0.0.1:{ports.http} --csv {csv} --only-summary",
        ROOT,
    )
    with (csv.parent / "locust_stats.csv").open() as stats:
        rows = list(DictReader(stats))
    total = rows[-1]
    assert total["Name"] == "Aggregated" and int(total["Request Count"]) > 0, rows
    assert int(total["Failure Count"]) == 0, rows
    grpc = [row for row in rows if row["Type"] == "triton-grpc"]
    assert grpc and all(int(row["Failure Count"]) == 0 for row in grpc), rows
