"""Beam search with the bundled KenLM, hotwords, and the decoder's own input checks, on a real server."""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.http as httpclient

from vaani.build import language_model
from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.errors import UserFacingError
from vaani.recipe.corpus import synth
from vaani.scoring import score
from vaani.server.process import Ports, TritonProcess, free_port
from vaani.serving.contract import DECODER, LOGITS, NUM_SAMPLES, TRANSCRIPT, version_dir

from .conftest import BUNDLED_MODEL

TEST_UTTERANCES = 40  # the first of the committed held-out test plan
# Found by trying rare names at the end of a sentence: without the hotword the beam (with the LM)
# writes "प्रियअंका"; with it, "प्रियंका".
HOTWORD_SENTENCE = ("मेरी दादी प्रियंका", "hi", 160, 50)
HOTWORD = "प्रियंका"


@pytest.fixture(scope="module")
def lm_server(tmp_path_factory, test_settings):
    """The bundled model with its defaults: `language_model/` is found, so the decoder is beam + LM."""
    repository = tmp_path_factory.mktemp("lm_repository")
    build(str(BUNDLED_MODEL), repository, replace(test_settings, decoder="auto"))
    log = tmp_path_factory.mktemp("lm_logs") / "tritonserver.log"
    with TritonProcess(repository, Ports(free_port(), free_port(), free_port()), log_file=log) as server:
        try:
            server.wait_ready()
        except Exception:
            print(log.read_text())
            raise
        server.repository = repository
        yield server


@pytest.fixture(scope="module")
def test_speech():
    plan = [
        synth.Utterance.from_json(line) for line in (BUNDLED_MODEL / "testset.jsonl").open(encoding="utf-8")
    ]
    return [(u.text, synth.synthesize(u.text, u.voice, u.speed, u.pitch)) for u in plan[:TEST_UTTERANCES]]


@pytest.mark.server
def test_bundled_lm_is_used_and_beats_greedy(triton, lm_server, test_speech):
    assert (version_dir(lm_server.repository, DECODER) / language_model.LM_DIR / "lm.bin").exists()
    assert 'string_value: "beam"' in (lm_server.repository / DECODER / "config.pbtxt").read_text()
    references = [text for text, _ in test_speech]
    greedy = TranscriptionClient(triton.http_url)
    beam = TranscriptionClient(lm_server.http_url)
    greedy_scores = score(references, [greedy.transcribe(audio) for _, audio in test_speech])
    lm_scores = score(references, [beam.transcribe(audio) for _, audio in test_speech])
    print(
        f"held-out test, first {TEST_UTTERANCES} utterances: greedy WER {100 * greedy_scores.wer:.2f}% "
        f"CER {100 * greedy_scores.cer:.2f}%; beam + LM WER {100 * lm_scores.wer:.2f}% "
        f"CER {100 * lm_scores.cer:.2f}%"
    )
    assert lm_scores.wer < greedy_scores.wer


@pytest.mark.server
def test_beam_word_times_agree_with_greedy(triton, lm_server, test_speech):
    greedy, beam = TranscriptionClient(triton.http_url), TranscriptionClient(lm_server.http_url)
    compared = 0
    for _, audio in test_speech[:10]:
        [(text, words)] = beam.transcribe_words(audio[None])
        [(_, reference)] = greedy.transcribe_words(audio[None])
        assert " ".join(w["word"] for w in words) == text
        times = [t for w in words for t in (w["start"], w["end"])]
        assert times == sorted(times)
        if [w["word"] for w in words] == [w["word"] for w in reference]:
            for ours, theirs in zip(words, reference):
                assert (
                    abs(ours["start"] - theirs["start"]) <= 0.041
                    and abs(ours["end"] - theirs["end"]) <= 0.041
                )
            compared += 1
    assert compared >= 5


def _with_hotwords(
    url: str, audio: np.ndarray, hotwords: list[str] | None, weight: float | None = None
) -> str:
    return TranscriptionClient(url).transcribe(audio, hotwords=hotwords, hotword_weight=weight)


@pytest.mark.server
def test_hotword_fixes_a_rare_word_and_leaves_other_requests_alone(lm_server, test_speech):
    text, voice, speed, pitch = HOTWORD_SENTENCE
    audio = synth.synthesize(text, voice, speed, pitch)
    url = lm_server.http_url
    plain = _with_hotwords(url, audio, None)
    assert HOTWORD not in plain.split(), plain
    other = test_speech[1][1]
    other_alone = _with_hotwords(url, other, None)
    results: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def send(key: str, clip: np.ndarray, hotwords: list[str] | None) -> None:
        barrier.wait()
        results[key] = _with_hotwords(url, clip, hotwords)

    threads = [
        threading.Thread(target=send, args=("hot", audio, [HOTWORD])),
        threading.Thread(target=send, args=("other", other, None)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"without hotword: {plain!r}; with {HOTWORD!r}: {results['hot']!r}")
    assert HOTWORD in results["hot"].split()
    assert results["other"] == other_alone
    assert _with_hotwords(url, audio, None) == plain


def _decoder_request(url: str, logits: np.ndarray, num_samples: np.ndarray, extra=()) -> str | None:
    client = httpclient.InferenceServerClient(url)
    inputs = [
        httpclient.InferInput(LOGITS, list(logits.shape), "FP32"),
        httpclient.InferInput(NUM_SAMPLES, list(num_samples.shape), "INT64"),
    ]
    inputs[0].set_data_from_numpy(logits)
    inputs[1].set_data_from_numpy(num_samples)
    for name, array, dtype in extra:
        tensor = httpclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        client.infer(DECODER, inputs, outputs=[httpclient.InferRequestedOutput(TRANSCRIPT)])
    except Exception as error:
        return str(error)
    return None


@pytest.mark.server
def test_decoder_refuses_bad_direct_calls(lm_server):
    url = lm_server.http_url
    vocab = 67
    good = np.zeros((1, 49, vocab), np.float32)
    assert _decoder_request(url, good, np.array([[16_000]], np.int64)) is None
    nan = good.copy()
    nan[0, 3, 2] = np.nan
    words = np.array([[b"x"] * 101], dtype=np.object_)
    cases = {
        "finite": (nan, np.array([[16_000]], np.int64), ()),
        "does not fit": (good, np.array([[10**9]], np.int64), ()),
        "NUM_SAMPLES": (good, np.array([[-5]], np.int64), ()),
        "at most": (good, np.array([[16_000]], np.int64), (("HOTWORDS", words, "BYTES"),)),
        "HOTWORD_WEIGHT": (
            good,
            np.array([[16_000]], np.int64),
            (("HOTWORD_WEIGHT", np.array([[np.inf]], np.float32), "FP32"),),
        ),
    }
    for expected, (logits, samples, extra) in cases.items():
        error = _decoder_request(url, logits, samples, extra)
        assert error is not None and expected in error, (expected, error)
    assert httpclient.InferenceServerClient(url).is_server_ready()
    assert _decoder_request(url, good, np.array([[16_000]], np.int64)) is None


def test_model_without_lm_decodes_greedy(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, model, ignore=shutil.ignore_patterns(language_model.LM_DIR))
    settings = RepositorySettings()
    assert language_model.find(model, settings) is None
    assert language_model.resolve_decoder(settings, None) == "greedy"
    assert language_model.resolve_decoder(settings, BUNDLED_MODEL / language_model.LM_DIR) == "beam"
    assert language_model.find(BUNDLED_MODEL, replace(settings, decoder="greedy")) is None


@pytest.mark.parametrize(
    "breakage", ["missing unigrams", "corrupt KenLM file", "bad --lm path", "not an LM file"]
)
def test_broken_language_model_fails_the_build(tmp_path, breakage):
    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, model)
    lm_dir = model / language_model.LM_DIR
    settings = RepositorySettings()
    if breakage == "missing unigrams":
        (lm_dir / "unigrams.txt").unlink()
    elif breakage == "corrupt KenLM file":
        (lm_dir / "lm.bin").write_bytes(b"not a language model")
    elif breakage == "bad --lm path":
        settings = replace(settings, lm=str(tmp_path / "nowhere.arpa"))
    else:
        (tmp_path / "lm.txt").write_text("hello")
        settings = replace(settings, lm=str(tmp_path / "lm.txt"))
    with pytest.raises(UserFacingError) as error:
        build(str(model), tmp_path / "repo", settings)
    message = str(error.value)
    print(message)
    assert "\n" not in message and ("language model" in message or "--lm" in message)
    assert not list((tmp_path / "repo").glob("wav2vec2/1/*.onnx")), "the build went on past the bad LM"


@pytest.mark.server
def test_transcribe_command_takes_hotwords(lm_server, tmp_path, capsys):
    import soundfile

    from vaani.cli import main

    text, voice, speed, pitch = HOTWORD_SENTENCE
    path = tmp_path / "name.wav"
    soundfile.write(path, synth.synthesize(text, voice, speed, pitch), 16_000)
    assert main(["transcribe", str(path), "--url", lm_server.http_url]) == 0
    assert main(["transcribe", str(path), "--url", lm_server.http_url, "--hotword", HOTWORD]) == 0
    plain, boosted = capsys.readouterr().out.splitlines()
    assert HOTWORD not in plain.split() and HOTWORD in boosted.split()
