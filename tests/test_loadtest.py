"""Locust against the session's tritonserver, and the FastAPI baseline of `vaani bench`.

The Locust run uses the step ramp (2 then 4 users, 5 s each): one 10-second run covers the HTTP
and gRPC users, the audio accounting and the opt-in shape. Against a port where nothing listens,
Locust and `vaani loadtest` must stop after a few failures and say why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vaani import cli
from vaani.benchmarks.bench import _wait_http
from vaani.errors import ServerUnreachable
from vaani.loadtest.clips import ClipPlan, load_clips, make_clips
from vaani.loadtest.runner import LOCUSTFILE, grpc_address, run_locust
from vaani.loadtest.stats import read_records
from vaani.serving.contract import SAMPLING_RATE
from vaani.supervision.process import free_port

from .conftest import BUNDLED_MODEL


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("clips"), ClipPlan(count=6, min_seconds=2, max_seconds=15))


def test_clips_mix_lengths_and_are_reused(manifest):
    clips = load_clips(manifest)
    lengths = sorted(c.seconds for c in clips)
    assert len(clips) == 6
    assert lengths[0] >= 2 and lengths[-1] <= 15
    assert lengths[-1] - lengths[0] > 8, "clips must mix short and long audio"
    stamp = manifest.stat().st_mtime_ns
    make_clips(manifest.parent, ClipPlan(count=6, min_seconds=2, max_seconds=15))
    assert manifest.stat().st_mtime_ns == stamp, "same plan: the clips are reused, not rewritten"


def _silent_port() -> int:
    """A port that nothing listens on, nor on the port above it, where the gRPC users look."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port


def test_grpc_address_is_the_port_above_http():
    assert grpc_address("http://127.0.0.1:18000") == "127.0.0.1:18001"
    assert grpc_address("localhost:8000") == "localhost:8001"
    assert grpc_address("http://[::1]:9000") == "[::1]:9001"
    assert grpc_address("http://triton") == "triton:8001", "no port: Triton's default"


def test_locust_without_a_server_stops_after_a_few_failures_and_says_why(manifest, tmp_path):
    """The command a user types, server forgotten: a handful of failures (not tens of thousands), the
    reason on the console, a failing exit status; the gRPC users look beside --host, not at 8001."""
    port = _silent_port()
    env = {k: v for k, v in os.environ.items() if k != "VAANI_GRPC_URL"} | {"VAANI_MANIFEST": str(manifest)}
    command = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless"]
    command += ["-u", "2", "-r", "2", "-t", "5s", "--host", f"http://127.0.0.1:{port}"]
    done = subprocess.run(
        [*command, "--csv", str(tmp_path / "locust")], env=env, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == ServerUnreachable.exit_status, output[-3000:]
    assert "no server answered the last 10 requests" in output
    records = read_records(tmp_path / "locust_requests.csv")
    assert 0 < len(records) < 50 and not any(r.ok for r in records), len(records)
    assert {r.request_type for r in records} == {"triton-http", "triton-grpc"}
    assert f"127.0.0.1:{port + 1}" in output and ":8001" not in output, "gRPC follows --host"


def test_vaani_loadtest_without_a_server_exits_3_with_the_reason(manifest, tmp_path, capsys):
    port = _silent_port()
    arguments = ["loadtest", "--http-url", f"127.0.0.1:{port}", "--users", "2", "--seconds", "5"]
    code = cli.main([*arguments, "--manifest", str(manifest), "--output", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == ServerUnreachable.exit_status, error[-3000:]
    assert "no server answered" in error and f"127.0.0.1:{port + 1}" in error


@pytest.mark.server
def test_locust_http_and_grpc_users_step_ramp(triton, manifest, tmp_path):
    run = run_locust(
        f"http://{triton.http_url}",
        ["http", "grpc"],
        manifest,
        tmp_path / "locust",
        grpc_url=triton.grpc_url,
        step_users=[2, 4],
        step_seconds=5,
    )
    assert run.returncode == 0, run.log.read_text()[-3000:]
    assert run.records and all(r.ok for r in run.records), "errors or empty transcripts"
    assert {r.request_type for r in run.records} == {"triton-http", "triton-grpc"}
    assert {2, 4} <= {r.users for r in run.records}, "the ramp holds each step's user count"
    for suffix in ("_stats.csv", "_requests.csv", "_audio.csv"):
        assert (tmp_path / f"locust{suffix}").stat().st_size > 0
    assert (tmp_path / "locust.html").exists()
    audio = (tmp_path / "locust_audio.csv").read_text().splitlines()
    assert audio[0].startswith("request_type,users,requests,failures")
    assert all(float(line.split(",")[7]) > 0 for line in audio[1:]), "audio-seconds/s is reported"


@pytest.mark.server
def test_locust_counts_server_errors_as_failures(triton, tmp_path):
    """Audio past the server's limit is refused: Locust must report failures and exit non-zero, but
    a refusal is an answer, so the run is not stopped as if no server were there."""
    import soundfile

    long_audio = np.zeros(SAMPLING_RATE * 40, dtype=np.float32)
    soundfile.write(tmp_path / "long.wav", long_audio, SAMPLING_RATE, subtype="FLOAT")
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"audio_filepath": "long.wav", "text": ""}) + "\n")
    run = run_locust(
        triton.http_url, ["http"], tmp_path / "manifest.jsonl", tmp_path / "locust", users=1, seconds=2
    )
    assert run.returncode not in (0, ServerUnreachable.exit_status), run.log.read_text()[-3000:]
    assert run.records and not any(r.ok for r in run.records)


def test_fastapi_baseline_transcribes_and_refuses_bad_bodies(manifest, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "vaani.benchmarks.fastapi_baseline", "--model", str(BUNDLED_MODEL)]
    with open(tmp_path / "fastapi.log", "w") as log:
        process = subprocess.Popen([*command, "--port", str(port), "--threads", "1"], stdout=log, stderr=log)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", process, timeout=120)
        url = f"http://127.0.0.1:{port}/transcribe"
        clip = load_clips(manifest)[0]
        request = urllib.request.Request(url, data=clip.audio.tobytes())
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["text"].strip()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"abc"), timeout=60)
        assert refused.value.code == 400
    finally:
        process.terminate()
        process.wait(timeout=30)
