"""Dynamic-batching delays per step: the acoustic step's and the host steps' set apart.

`RepositorySettings.queue_delay_us` is `wav2vec2`'s (and `asr_stream`'s) batching delay and
``host_steps_queue_delay_us`` that of the host steps around it (-1, the default: the same). At low
load every request pays each step's wait; 0 at the host steps takes it off. What must hold without
the wait is the behaviour, checked on a real server: requests that reach a busy step still share its
executions. No timing is asserted (`python -m vaani.benchmarks.served_latency` measures the times).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings, all_configs
from vaani.client.api import TranscriptionClient
from vaani.recipe.corpus.recordings import long_recording
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import ACOUSTIC, DECODER, PREPROCESS, STREAM, WINDOWS_STEP
from vaani.supervision.process import Ports, TritonProcess, free_port

from .conftest import BUNDLED_MODEL

SPEC = AcousticSpec(32, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), True, 1, "|", tuple("x" * 32))


def _delays(settings: RepositorySettings) -> dict[str, int]:
    configs = all_configs(SPEC, settings)
    delays = {name: c.dynamic_batching.max_queue_delay_microseconds for name, c in configs.items()}
    delays[STREAM] = configs[STREAM].sequence_batching.oldest.max_queue_delay_microseconds
    return {name: delay for name, delay in delays.items() if name in (ACOUSTIC, PREPROCESS, DECODER, STREAM)}


def test_configs_carry_each_steps_delay():
    assert _delays(RepositorySettings()) == {
        ACOUSTIC: 2_000,
        PREPROCESS: 2_000,
        DECODER: 2_000,
        STREAM: 2_000,
    }
    settings = RepositorySettings(queue_delay_us=700, host_steps_queue_delay_us=0)
    assert _delays(settings) == {ACOUSTIC: 700, PREPROCESS: 0, DECODER: 0, STREAM: 700}
    assert _delays(RepositorySettings(queue_delay_us=700))[PREPROCESS] == 700  # -1: the same
    plan = all_configs(
        SPEC, RepositorySettings(engine="tensorrt", bucket_seconds=2.0, host_steps_queue_delay_us=300)
    )
    assert plan[ACOUSTIC].dynamic_batching.max_queue_delay_microseconds == 2_000
    assert plan[WINDOWS_STEP].dynamic_batching.max_queue_delay_microseconds == 300


@pytest.mark.parametrize("field, value", [("queue_delay_us", -1), ("host_steps_queue_delay_us", -2)])
def test_settings_refuse_a_negative_delay(field, value):
    with pytest.raises(ValueError, match=field):
        RepositorySettings(**{field: value})


@pytest.fixture(scope="module")
def no_host_delay(tmp_path_factory):
    """The bundled model served with no batching delay at the host steps (greedy, one instance each)."""
    repository = tmp_path_factory.mktemp("no_host_delay")
    settings = RepositorySettings(
        decoder="greedy", host_steps_queue_delay_us=0, max_batch_size=8, threads=1, quantize=False
    )
    build(str(BUNDLED_MODEL), repository, settings)
    log = Path(tmp_path_factory.mktemp("no_host_delay_log")) / "tritonserver.log"
    with TritonProcess(repository, Ports(free_port(), free_port(), free_port()), log_file=log) as server:
        server.wait_ready()
        yield server


def _counts(url: str) -> dict[str, tuple[int, int]]:
    """Each step's (requests, executions) so far, from Triton's statistics."""
    stats = httpclient.InferenceServerClient(url).get_inference_statistics()["model_stats"]
    return {s["name"]: (int(s["inference_count"]), int(s["execution_count"])) for s in stats}


@pytest.mark.server
def test_requests_share_executions_of_every_step_without_a_host_delay(no_host_delay):
    """8 clients in a closed loop: the host steps, which wait for no batch, still run requests together
    (those that came while their instance was busy), as the acoustic step does."""
    triton = no_host_delay
    audio, placed = long_recording(8)
    clips = [audio[sentence.clip[0] : sentence.clip[1]] for sentence in placed]
    alone = [TranscriptionClient(triton.http_url).transcribe(clip) for clip in clips]
    before = _counts(triton.http_url)
    barrier = threading.Barrier(len(clips))
    answers: dict[int, list[str]] = {}

    def client(index: int) -> None:
        transcriber = TranscriptionClient(triton.http_url)
        barrier.wait()
        answers[index] = [transcriber.transcribe(clips[index]) for _ in range(4)]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = _counts(triton.http_url)
    assert [answers[i] for i in range(len(clips))] == [[text] * 4 for text in alone]
    for step in (PREPROCESS, ACOUSTIC, DECODER):
        requests = after[step][0] - before[step][0]
        executions = after[step][1] - before[step][1]
        assert requests == 4 * len(clips), step
        assert executions < requests, f"{step}: {executions} executions of {requests} requests, none shared"
