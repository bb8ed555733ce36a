"""Live recognition (`asr_stream`), real server: held-out sentences with pauses, streamed in 200 ms chunks."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpc
from tritonclient.utils import InferenceServerException

from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.client.streaming import new_sequence_id, stream_audio
from vaani.recipe.corpus.recordings import long_recording
from vaani.scoring import score
from vaani.serving.contract import AUDIO, ENSEMBLE, PARTIAL, SAMPLING_RATE, STREAM, TRANSCRIPT
from vaani.serving.streaming import ONSET_MARGIN
from vaani.supervision.process import Ports, TritonProcess, free_port

from .conftest import BUNDLED_MODEL, ROOT

pytestmark = pytest.mark.server

IDLE_S = 3.0  # short, so that the test of dropping an idle stream waits seconds, not the default half minute
MAX_STREAMS = 6  # over two instances of the step: three on each
MAX_CHUNK_S = 1.0
PARTIAL_S = 1.0  # the sparse server's partial interval: five 200 ms chunks


def _serve(tmp_path_factory, **settings):
    """A server of its own for this module's tests: greedy decoding, two step instances."""
    repository = tmp_path_factory.mktemp("stream_repository")
    build(
        str(BUNDLED_MODEL),
        repository,
        RepositorySettings(max_batch_size=8, threads=2, decoder="greedy", stream_instances=2, **settings),
    )
    ports = Ports(free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("stream_logs") / "tritonserver.log"
    with TritonProcess(repository, ports, log_file=log) as process:
        try:
            process.wait_ready()
        except Exception:
            print(log.read_text())
            raise
        yield process


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A short idle timeout, a small cap on live streams and on chunks; a partial at every chunk."""
    yield from _serve(
        tmp_path_factory,
        stream_idle_seconds=IDLE_S,
        max_streams=MAX_STREAMS,
        stream_max_chunk_seconds=MAX_CHUNK_S,
        stream_partial_seconds=0.0,
    )


@pytest.fixture(scope="module")
def sparse_server(tmp_path_factory):
    """The partial recomputed once a second of new audio came at most (--stream-partial-seconds 1)."""
    yield from _serve(tmp_path_factory, stream_partial_seconds=PARTIAL_S)


@pytest.fixture(scope="module")
def recordings() -> list[tuple[np.ndarray, str]]:
    """Four recordings of three or four held-out sentences each, with pauses of 0.3-0.8 s between them."""
    made = [long_recording(3 + n % 2, seed=2030 + n) for n in range(4)]
    return [(audio, " ".join(p.text for p in placed)) for audio, placed in made]


def _grpc_url(server) -> str:
    return f"localhost:{server.ports.grpc}"


def _wer(truth: str, text: str) -> float:
    return 100 * score([truth], [text]).wer


def _asr(server, audio: np.ndarray) -> str:
    client = TranscriptionClient(_grpc_url(server), "grpc")
    try:
        return client.transcribe(audio)
    finally:
        client.close()


def _chunk(client, audio: np.ndarray, sequence_id: int, start: bool, end: bool = False, dtype: str = "FP32"):
    """One chunk as a plain (non-streaming) gRPC request of a sequence."""
    tensor = grpc.InferInput(AUDIO, [1, audio.size], dtype)
    tensor.set_data_from_numpy(audio[None, :])
    result = client.infer(STREAM, [tensor], sequence_id=sequence_id, sequence_start=start, sequence_end=end)
    return result.as_numpy(TRANSCRIPT).reshape(-1)[0].decode("utf-8")


def test_a_stream_shows_text_while_speech_arrives_and_ends_as_asr_reads_it(server, recordings):
    audio, truth = recordings[0]
    answers = stream_audio(audio, _grpc_url(server), chunk_seconds=0.2, pace=0)
    assert len(answers) == -(-audio.size // (SAMPLING_RATE // 5))  # every 200 ms chunk answered
    assert not [a.error for a in answers if a.error]
    halfway = answers[len(answers) // 2]
    assert halfway.transcript, "no text halfway through the recording"
    assert len({a.transcript for a in answers}) > 5  # the text changed as the audio arrived
    for before, after in itertools.pairwise(answers):  # finished text is never taken back
        assert after.finished.startswith(before.finished), (before, after)
    final = answers[-1]
    assert final.partial == "" and final.transcript == final.finished
    assert _wer(truth, final.transcript) <= _wer(truth, _asr(server, audio)) + 1.0, (truth, final.transcript)


def test_four_streams_at_real_time_pace_are_all_answered_each_with_its_own_text(server, recordings):
    results: dict[int, list] = {}

    def one(n: int) -> None:
        results[n] = stream_audio(recordings[n][0], _grpc_url(server), chunk_seconds=0.2, pace=1.0)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 1, 2, 3]
    for n, answers in results.items():
        audio, truth = recordings[n]
        assert len(answers) == -(-audio.size // (SAMPLING_RATE // 5))
        assert not [a.error for a in answers if a.error]
        final = answers[-1].transcript
        assert _wer(truth, final) <= _wer(truth, _asr(server, audio)) + 1.0, (n, truth, final)


def _fill(client, audio: np.ndarray) -> list[int]:
    """Streams started (and then left idle) until the server refuses one: the ids it took."""
    taken = []
    for _ in range(2 * MAX_STREAMS):
        sequence_id = new_sequence_id()
        try:
            _chunk(client, audio, sequence_id, start=True)
        except InferenceServerException as error:
            assert "too many live streams" in str(error), error
            return taken
        taken.append(sequence_id)
    raise AssertionError(f"{len(taken)} streams live at once; the cap is {MAX_STREAMS}")


def test_a_stream_that_never_ends_is_dropped_after_the_idle_timeout(server, recordings):
    """Streams that never end fill the server until it refuses one more; after the timeout every one is
    forgotten (Triton releases the sequence, the step its state): their ids are not live any more, and
    as many new streams fit again."""
    audio = recordings[1][0][: SAMPLING_RATE // 5]
    client = grpc.InferenceServerClient(_grpc_url(server))
    idle = _fill(client, audio)
    assert 0 < len(idle) <= MAX_STREAMS + 1  # the cap, shared by the step's two instances
    time.sleep(IDLE_S + 2.0)
    with pytest.raises(InferenceServerException, match="START"):
        _chunk(client, audio, idle[0], start=False)
    fresh = [new_sequence_id() for _ in idle]
    for sequence_id in fresh:
        _chunk(client, audio, sequence_id, start=True)
    for sequence_id in fresh:
        _chunk(client, audio[:800], sequence_id, start=False, end=True)
    client.close()


def test_a_chunk_that_breaks_a_rule_is_refused_while_another_stream_carries_on(server, recordings):
    audio, truth = recordings[2]
    carried: list = []
    good = threading.Thread(
        target=lambda: carried.extend(stream_audio(audio, _grpc_url(server), chunk_seconds=0.2, pace=1.0))
    )
    good.start()
    client = grpc.InferenceServerClient(_grpc_url(server))
    chunk = audio[: SAMPLING_RATE // 5]
    too_long = np.zeros(round((MAX_CHUNK_S + 0.5) * SAMPLING_RATE), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="chunk too long"):
        _chunk(client, too_long, new_sequence_id(), start=True)
    with pytest.raises(InferenceServerException, match=r"FP64.*expects 'FP32'"):
        _chunk(client, chunk.astype(np.float64), new_sequence_id(), start=True, dtype="FP64")
    with pytest.raises(InferenceServerException, match="START"):
        _chunk(client, chunk, new_sequence_id(), start=False)
    with pytest.raises(InferenceServerException, match="chunk too short"):
        _chunk(client, chunk[:160], new_sequence_id(), start=True)
    live = new_sequence_id()  # a stream whose chunk is refused is still live: its next chunk is served
    _chunk(client, chunk, live, start=True)
    with pytest.raises(InferenceServerException, match="chunk too long"):
        _chunk(client, too_long, live, start=False)
    assert isinstance(_chunk(client, chunk, live, start=False, end=True), str)
    client.close()
    good.join(timeout=120)
    assert carried and not [a.error for a in carried if a.error]
    assert _wer(truth, carried[-1].transcript) <= _wer(truth, _asr(server, audio)) + 1.0


def test_the_readme_live_example_prints_partials_then_the_final_text(server, recordings, tmp_path: Path):
    """The README's `vaani transcribe --stream` as written (ports substituted), on a recording with pauses."""
    import soundfile

    from tests.journey.readme import Ports as DocumentedPorts
    from tests.journey.readme import block, substitute

    audio, _ = recordings[3]
    soundfile.write(tmp_path / "hello.wav", audio, SAMPLING_RATE)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    ports = DocumentedPorts(server.ports.http, server.ports.grpc, server.ports.metrics, 0)
    code = substitute(block("vaani transcribe --stream").code, ports)
    done = subprocess.run(["bash", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # not a terminal: one line per change, the final text last
    assert len(lines) > 3 and any(line.endswith("]") for line in lines[:-1])  # partials set apart
    final = stream_audio(audio, _grpc_url(server), chunk_seconds=0.2, pace=0)[-1].transcript
    assert lines[-1] == final


def _cut_all(bundled_model, audio: np.ndarray, chunk: int, max_segment_s: float):
    """``audio`` through a `Segmenter` as the step runs it: every finished segment, the largest open one."""
    from vaani.serving.streaming import Segmenter, Stream

    settings = RepositorySettings(stream_segment_seconds=max_segment_s)
    segmenter = Segmenter(settings.windowing(bundled_model.spec()), round(max_segment_s * SAMPLING_RATE))
    stream, finished, largest = Stream(), [], 0
    for start in range(0, audio.size, chunk):
        cut = segmenter.cut(stream, audio[start : start + chunk], end=start + chunk >= audio.size)
        stream.commit(cut, [], [], "")
        finished += cut.finished
        largest = max(largest, cut.rest.audio.size)
    return finished, largest


def test_segments_finish_at_pauses_and_start_where_speech_does(bundled_model):
    rng = np.random.default_rng(1)
    speech = [(0.3, 1.0), (1.8, 1.2), (3.5, 0.7)]  # (onset, length) in seconds; silence around each
    audio = np.zeros(5 * SAMPLING_RATE, dtype=np.float32)
    for onset, length in speech:
        first = round(onset * SAMPLING_RATE)
        audio[first : first + round(length * SAMPLING_RATE)] = 0.1 * rng.standard_normal(
            round(length * SAMPLING_RATE)
        )
    finished, _ = _cut_all(bundled_model, audio, SAMPLING_RATE // 5, 8.0)
    margin = ONSET_MARGIN * 0.02  # seconds of silence kept before the speech
    assert [round(s.start / SAMPLING_RATE, 2) for s in finished] == [
        round(onset - margin, 2) for onset, _ in speech
    ]
    for segment, (_, length) in zip(finished, speech, strict=True):  # the speech and 0.3 s of its pause
        assert length + margin <= segment.audio.size / SAMPLING_RATE <= length + margin + 0.3 + 0.02


def test_speech_without_pauses_is_cut_at_the_cap_and_a_stream_holds_one_segment_at_most(bundled_model):
    audio = (0.1 * np.random.default_rng(2).standard_normal(20 * SAMPLING_RATE)).astype(np.float32)
    chunk = SAMPLING_RATE // 5
    finished, largest = _cut_all(bundled_model, audio, chunk, 3.0)
    assert len(finished) >= 6  # 20 s of speech, at most 3 s a segment
    assert all(s.audio.size <= 3 * SAMPLING_RATE for s in finished)
    assert largest <= 3 * SAMPLING_RATE + chunk
    assert sum(s.audio.size for s in finished) == audio.size  # nothing lost, nothing twice


def test_words_come_when_asked_for_with_times_from_the_stream_start(server, recordings):
    audio, _ = recordings[1]
    answers = stream_audio(audio, _grpc_url(server), chunk_seconds=0.2, pace=0, words=True)
    final = answers[-1]
    words = json.loads(final.words)
    assert [w["word"] for w in words] == final.transcript.split()
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(w["start"] < w["end"] for w in words)
    assert starts[0] > 0.25 and words[-1]["end"] <= audio.size / SAMPLING_RATE  # the first pause is 0.3 s+
    assert not stream_audio(audio[: SAMPLING_RATE // 2], _grpc_url(server), pace=0)[-1].words  # not asked


def test_a_stream_over_plain_http_requests(server, recordings):
    """Triton's HTTP sequence parameters, no gRPC stream: each chunk one request, the same answers."""
    import tritonclient.http as http

    audio = recordings[0][0]
    client = http.InferenceServerClient(f"localhost:{server.ports.http}")
    sequence_id, size = new_sequence_id(), SAMPLING_RATE // 2
    pieces = [audio[i : i + size] for i in range(0, audio.size, size)]
    texts = []
    for index, piece in enumerate(pieces):
        tensor = http.InferInput(AUDIO, [1, piece.size], "FP32")
        tensor.set_data_from_numpy(piece[None, :])
        result = client.infer(
            STREAM,
            [tensor],
            sequence_id=sequence_id,
            sequence_start=index == 0,
            sequence_end=index == len(pieces) - 1,
            outputs=[http.InferRequestedOutput(TRANSCRIPT), http.InferRequestedOutput(PARTIAL)],
        )
        texts.append(result.as_numpy(TRANSCRIPT).reshape(-1)[0].decode("utf-8"))
    client.close()
    assert texts[-1] and result.as_numpy(PARTIAL).reshape(-1)[0] == b""
    assert texts[-1] == stream_audio(audio, _grpc_url(server), chunk_seconds=0.5, pace=0)[-1].transcript


def _asr_requests(server) -> int:
    """Requests `asr` has served so far: one per segment or partial `asr_stream` asked it to decode."""
    client = grpc.InferenceServerClient(_grpc_url(server))
    stats = client.get_inference_statistics(ENSEMBLE, as_json=True)["model_stats"][0]
    client.close()
    return int(stats.get("inference_count", 0))


def _streamed(server, audio: np.ndarray) -> tuple[list, int]:
    """``audio`` in 200 ms chunks, each sent once the previous is answered; the `asr` requests it cost."""
    before = _asr_requests(server)
    answers = stream_audio(audio, _grpc_url(server), chunk_seconds=0.2, pace=0)
    return answers, _asr_requests(server) - before


def _refreshes(answers: list) -> list[int]:
    """The chunks whose answer shows a new partial: recomputed there (a standing partial only stays or,
    once its speech is finished text, empties)."""
    return [
        n for n, (before, after) in enumerate(itertools.pairwise(answers), 1)
        if after.partial and after.partial != before.partial
    ]  # fmt: skip


def test_a_sparse_partial_still_grows_while_audio_arrives_and_the_final_text_is_the_same(
    server, sparse_server, recordings
):
    """--stream-partial-seconds 1 in 200 ms chunks: every chunk is answered, a new partial shows at most
    every fifth chunk (those between get the standing one, at no `asr` request), and it still changes
    while the audio arrives; the finished text, and so the final text, are what every-chunk partials give."""
    audio, _ = recordings[0]
    dense, dense_cost = _streamed(server, audio)
    sparse, sparse_cost = _streamed(sparse_server, audio)
    assert len(sparse) == len(dense) == -(-audio.size // (SAMPLING_RATE // 5))
    assert not [a.error for a in sparse if a.error]
    assert sparse[-1].transcript == dense[-1].transcript and sparse[-1].partial == ""
    every = round(PARTIAL_S / 0.2)
    assert min(b - a for a, b in itertools.pairwise(_refreshes(dense))) < every  # the test can tell
    refreshes = _refreshes(sparse)
    assert len(refreshes) >= 3, refreshes  # the partial changed while the audio arrived
    assert all(b - a >= every for a, b in itertools.pairwise(refreshes)), refreshes
    assert sparse_cost < dense_cost / 2, (sparse_cost, dense_cost)


def test_a_chunk_without_speech_costs_no_decode(server):
    """Two seconds of silence in 200 ms chunks: every chunk answered, no text, no `asr` request."""
    quiet = np.zeros(2 * SAMPLING_RATE, dtype=np.float32)
    answers, cost = _streamed(server, quiet)
    assert len(answers) == 10 and not [a.error for a in answers if a.error]
    assert all(a.transcript == "" for a in answers) and cost == 0


def test_the_streaming_benchmark_keeps_what_it_measured_when_the_server_dies(tmp_path_factory, tmp_path):
    """A server killed mid-scenario (SIGKILL, as a crash would end it): the benchmark ends with status 1,
    writes its table with a row of what the clients saw and a line naming the failure, and raises nothing."""
    from vaani.benchmarks import streaming as bench

    serving = _serve(tmp_path_factory)
    server = next(serving)
    url = _grpc_url(server)

    def kill_while_streaming() -> None:
        client = grpc.InferenceServerClient(url)
        try:
            while server.process.poll() is None:
                stats = client.get_inference_statistics(STREAM, as_json=True)["model_stats"][0]
                if int(stats.get("inference_count", 0)) >= 10:  # the warm-up's 5 chunks, then the scenario's
                    server.process.kill()
                    return
                time.sleep(0.1)
        except InferenceServerException:
            return

    threading.Thread(target=kill_while_streaming, daemon=True).start()
    try:
        status = bench.main(
            ["--url", url, "--concurrency", "2", "--chunk-lengths", "", "--repeats", "2", "--manifest", "",
             "--sentences", "1", "--output", str(tmp_path)]
        )  # fmt: skip
    finally:
        serving.close()
    assert status == 1
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == 1  # the second repeat did not run against a dead server
    assert "stopped answering" in rows[0]["server_lost"] and rows[0]["errors"] >= 1
    assert "Stopped at 2 streams" in (tmp_path / "table.md").read_text()
