"""Shared fixtures: one real tritonserver for the whole session, serving `models/tiny-hindi`."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaani.build.hf_model import HfModel
from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.supervision.process import Ports, TritonProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = ROOT / "models" / "tiny-hindi"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the session server is a `server` test, so `-m "not server"` starts none.

    Tests that start a server of their own carry the marker themselves.
    """
    for item in items:
        if "triton" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def bundled_model() -> HfModel:
    return HfModel.load(BUNDLED_MODEL)


@pytest.fixture(scope="session")
def test_settings() -> RepositorySettings:
    # A long batching window so that concurrent requests reliably meet in one execution. Greedy
    # decoding and FP32 (said, whatever the default): these tests compare with the FP32 reference's
    # greedy transcripts (the bundled LM's beam search has its own server in test_decoding.py; INT8
    # has test_quantization.py). 300 s: long recordings are tested, and refusing the first sample
    # over stays cheap.
    return RepositorySettings(
        queue_delay_us=100_000,
        max_batch_size=16,
        threads=2,
        max_audio_seconds=300,
        decoder="greedy",
        quantize=False,
    )


@pytest.fixture(scope="session")
def small_repository(tmp_path_factory) -> Path:
    """The bundled model built small (batch 4, one thread) for the tests that start, crash and stop
    servers of their own (`test_reliability.py`, `test_signals.py`); they never change it."""
    repository = tmp_path_factory.mktemp("small_repository")
    build(
        str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=4, threads=1, queue_delay_us=1000)
    )
    return repository


@pytest.fixture(scope="session")
def triton(tmp_path_factory, test_settings):
    """The project's tritonserver on free ports; stopped at the end of the session, also on failure."""
    repository = tmp_path_factory.mktemp("model_repository")  # `build` installs the steps' model.py
    build(str(BUNDLED_MODEL), repository, test_settings)
    ports = Ports(free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    with TritonProcess(repository, ports, log_file=log) as server:
        try:
            server.wait_ready()
        except Exception:
            print(log.read_text())
            raise
        yield server
