"""Beam search with the bundled KenLM, hotwords, the decoder's own input checks and its bounded work."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from vaani.build import language_model
from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.client.api import TranscriptionClient
from vaani.errors import UserFacingError
from vaani.recipe.corpus import synth
from vaani.scoring import score
from vaani.serving.beam import BeamDecoder, hotword_unigrams, pieces, split_glued
from vaani.serving.contract import DECODER, LOGITS, NUM_SAMPLES, TRANSCRIPT, WINDOW_LAYOUT, version_dir
from vaani.serving.ctc import GreedyDecoder, Word
from vaani.serving.windowing import AFTER_CUT, Window, to_tensor
from vaani.supervision.process import Ports, TritonProcess, free_port
from vaani.supervision.stubs import stubs_of

from .conftest import BUNDLED_MODEL

TEST_UTTERANCES = 40  # the first of the committed held-out test plan
# Found by trying rare names at the end of a sentence: without the hotword the beam (with the LM)
# writes "प्रियअंका"; with it, "प्रियंका".
HOTWORD_SENTENCE = ("मेरी दादी प्रियंका", "hi", 160, 50)
HOTWORD = "प्रियंका"
# Found by trying voices, speeds and pitches: with the hotword the search glues "मौसम" to the word
# before it ("आजमौसम बहुत अच्छा है"), which `split_glued` takes apart; without it, "आजमौसम" as well.
GLUED_SENTENCE = ("आज मौसम बहुत अच्छा है", "hi+m2", 150, 30)
GLUED_HOTWORD = "मौसम"


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
        server.log_file = log
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


@pytest.mark.server
def test_greedy_server_refuses_hotwords(triton, test_speech):
    """`--decoder greedy` cannot use HOTWORDS: the request is refused by name, not decoded without them."""
    from vaani.client.api import TranscriptionError

    client = TranscriptionClient(triton.http_url)
    audio = test_speech[0][1]
    with pytest.raises(TranscriptionError) as error:
        client.transcribe(audio, hotwords=[HOTWORD])
    print(error.value)
    assert "HOTWORDS need beam search" in str(error.value) and "--decoder" in str(error.value)
    assert client.transcribe(audio) == client.transcribe(audio, hotwords=[])  # none sent: decoded as ever
    assert client.is_ready()


def test_split_glued_takes_a_hotword_apart_from_its_neighbours():
    hot = hotword_unigrams(["मौसम", "दिल्ली मेट्रो"])
    assert hot == ["दिल्ली", "मेट्रो", "मौसम"]  # longest first, in order among equals
    known = {"आज", "बहुत", "मौसमी", *hot}

    def split(word: str) -> list[str]:
        return [w.word for w in split_glued(Word(word, 10, 30), hot, known)]

    assert split("मौसमबहुत") == ["मौसम", "बहुत"]
    assert split("आजमौसम") == ["आज", "मौसम"]
    assert split("आजमौसमबहुत") == ["आज", "मौसम", "बहुत"]
    assert split("मौसमअच्छा") == ["मौसम", "अच्छा"]  # not a known word, but a word of its own
    for whole in ("मौसम", "मौसमी", "मौसमों", "मौसमे", "स्मौसम", "बहुत", "मौसमक"):  # vowel signs, half letters
        assert split(whole) == [whole]
    words = split_glued(Word("मौसमबहुत", 10, 30), hot, known)
    assert [(w.start_frame, w.end_frame) for w in words] == [(10, 20), (20, 30)]


def test_a_hotword_comes_back_as_its_own_word(beam, bundled_model):
    """The hotword fixes its word as a word: the space before it is kept, the other words are as spoken."""
    text, voice, speed, pitch = GLUED_SENTENCE
    audio = synth.synthesize(text, voice, speed, pitch)
    logits = bundled_model.logits(*bundled_model.features([audio]))[0]
    logits = logits[: bundled_model.spec().frames(len(audio))]
    plain, _ = beam.decode_one(logits)
    assert GLUED_HOTWORD not in plain.split(), plain
    (served,) = beam.decode(logits[None], np.array([[len(audio)]]), hotwords=[GLUED_HOTWORD])
    print(f"without hotword: {plain!r}; with {GLUED_HOTWORD!r}: {served.text!r}")
    assert served.text == text
    assert [w.word for w in served.words] == text.split()
    spans = [t for w in served.words for t in (w.start_frame, w.end_frame)]
    assert spans == sorted(spans)


def test_decoder_table_covers_every_set_without_a_server(tmp_path, capsys):
    """`make decoders`: `vaani wer … --also … --compare-decoders MODEL --decoders-only`, one block per set."""
    from vaani.cli import main

    plans = {
        "in-domain": synth.read_plan(BUNDLED_MODEL / "testset.jsonl")[:2],
        "oov": synth.read_plan(BUNDLED_MODEL.parents[1] / "benchmarks" / "oov-plan.jsonl")[:2],
    }
    manifests = []
    for name, plan in plans.items():
        spoken = synth.speak_all(plan, tmp_path / name, "wav")
        manifest = tmp_path / f"{name}.jsonl"
        lines = [synth.manifest_line(u, path, seconds) for u, path, seconds in spoken]
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifests.append(manifest)
    args = ["wer", str(manifests[0]), "--also", str(manifests[1]), "--compare-decoders", str(BUNDLED_MODEL)]
    assert main([*args, "--decoders-only", "--url", "localhost:1"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    print("\n".join(table))
    assert len(table) == 2 + 2 * 3
    assert str(manifests[0]) in table[2] and str(manifests[1]) in table[5]
    assert "alpha 0.4, beta 4" in table[4]


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


def _samples(frames: int) -> np.ndarray:
    """NUM_SAMPLES of one utterance of ``frames`` wav2vec2 frames."""
    return np.array([[(frames - 1) * 320 + 400]], np.int64)


@pytest.fixture(scope="module")
def beam(bundled_model) -> BeamDecoder:
    return BeamDecoder(bundled_model.spec(), BUNDLED_MODEL / language_model.LM_DIR)


@pytest.fixture(scope="module")
def speech_logits(bundled_model, test_speech) -> np.ndarray:
    """25 held-out sentences' logits end to end: ~3,000 frames of speech with no pause a plan cuts at."""
    return np.concatenate(
        [bundled_model.logits(*bundled_model.features([audio]))[0] for _, audio in test_speech[:25]]
    )


def _greedy_in_pieces(spec, logits: np.ndarray, piece_frames: int) -> str:
    """What greedy decoding of each piece `BeamDecoder.decode` cuts reads: its fallback's text."""
    best = logits.argmax(axis=1)
    delimiter = spec.tokens.index(spec.word_delimiter)
    starts = [first for first, _ in pieces(best, piece_frames, spec.blank_id, delimiter)]
    return GreedyDecoder(spec).decode_ids(best, starts)


def test_beam_pieces_are_cut_between_words(bundled_model):
    spec = bundled_model.spec()
    blank, delimiter, letter = spec.blank_id, spec.tokens.index(spec.word_delimiter), spec.tokens.index("क")
    best = np.full(250, letter)
    best[55:65] = blank  # a pause inside a word: longer, but no word ends there
    best[80:84] = [blank, blank, delimiter, blank]  # a gap between words
    cuts = pieces(best, 100, blank, delimiter)
    assert cuts[0] == (0, 82)
    assert all(0 < last - first <= 100 for first, last in cuts)
    assert [first for first, _ in cuts[1:]] == [last for _, last in cuts[:-1]] and cuts[-1][1] == 250


def test_speech_searched_in_pieces_reads_as_one_search(beam, speech_logits):
    assert len(speech_logits) > beam.piece_frames
    one, _ = beam.decode_one(speech_logits)
    (decoded,) = beam.decode(speech_logits[None], _samples(len(speech_logits)))
    assert decoded.greedy_frames == 0
    assert decoded.text == one
    assert " ".join(w.word for w in decoded.words) == decoded.text


def test_flat_logits_are_decoded_greedily_without_a_search(beam, bundled_model):
    """Random logits offer ~42 tokens a frame (speech 1.3): 3,000 frames cost the old search ~22 s."""
    spec = bundled_model.spec()
    logits = np.random.default_rng(0).standard_normal((3_000, spec.vocab_size)).astype(np.float32)
    (decoded,) = beam.decode(logits[None], _samples(3_000))
    assert decoded.greedy_frames == 3_000
    assert decoded.text == _greedy_in_pieces(spec, logits, beam.piece_frames)


def test_a_request_past_its_search_time_goes_on_greedily(bundled_model, speech_logits):
    spec = bundled_model.spec()
    beam = BeamDecoder(spec, BUNDLED_MODEL / language_model.LM_DIR)
    readings = iter([0.0])  # the deadline is set from the first reading; every later one is past it
    beam.clock = lambda: next(readings, 1e9)
    (decoded,) = beam.decode(speech_logits[None], _samples(len(speech_logits)))
    assert decoded.greedy_frames == len(speech_logits)
    assert decoded.text == _greedy_in_pieces(spec, speech_logits, beam.piece_frames)
    assert beam.search_seconds(180_000) == pytest.approx(72.0)  # an hour of frames: 2 % of it
    assert beam.search_seconds(10) == 2.0
    beam.longest_seconds = 300.0  # the server's longest recording: many utterances get no more
    assert beam.search_seconds(32 * 180_000) == pytest.approx(6.0)


def _direct(url: str, logits: np.ndarray, plan: np.ndarray | None = None) -> str:
    """`ctc_decoder` called as a client may call it: one utterance's logits, its length, a plan."""
    client = httpclient.InferenceServerClient(url, network_timeout=300, connection_timeout=300)
    arrays = [(LOGITS, logits[None], "FP32"), (NUM_SAMPLES, _samples(logits.shape[0]), "INT64")]
    if plan is not None:
        arrays.append((WINDOW_LAYOUT, plan, "INT64"))
    inputs = []
    for name, array, dtype in arrays:
        inputs.append(httpclient.InferInput(name, list(array.shape), dtype))
        inputs[-1].set_data_from_numpy(array)
    try:
        result = client.infer(DECODER, inputs, outputs=[httpclient.InferRequestedOutput(TRANSCRIPT)])
        return result.as_numpy(TRANSCRIPT)[0, 0].decode()
    finally:
        client.close()


def _decoder_pid(server: TritonProcess) -> int:
    return next(stub.pid for stub in stubs_of(server.process.pid) if stub.model == DECODER)


@pytest.mark.server
def test_garbage_window_plans_fail_alone_in_their_batch(lm_server, speech_logits):
    """Negative and 10^15 offsets: INVALID_ARG for those requests, the good ones of the batch decoded."""
    url, pid = lm_server.http_url, _decoder_pid(lm_server)
    logits = speech_logits[:400]
    samples = int(_samples(400)[0, 0])
    good = to_tensor([Window(0, samples, 0, 400, AFTER_CUT)], 1)
    alone = _direct(url, logits, good)
    bad = [
        to_tensor([Window(-samples, samples, 0, 400, AFTER_CUT)], 1),
        to_tensor([Window(0, 10**15, 0, 400, AFTER_CUT)], 1),
        to_tensor([Window(10**15, 10**15 + samples, -(10**15), 10**15, AFTER_CUT)], 1),
    ]

    def send(plan: np.ndarray) -> str | InferenceServerException:
        try:
            return _direct(url, logits, plan)
        except InferenceServerException as error:
            return error

    with ThreadPoolExecutor(7) as pool:
        results = list(pool.map(send, [good] * 4 + bad))
    assert results[:4] == [alone] * 4
    for refused in results[4:]:
        assert isinstance(refused, InferenceServerException), refused
        assert refused.status() == "400" and "WINDOW_LAYOUT" in refused.message(), refused
    assert httpclient.InferenceServerClient(url).is_model_ready(DECODER)
    assert _decoder_pid(lm_server) == pid


@pytest.mark.server
def test_flat_logits_cost_the_decoder_little_and_frames_are_capped(lm_server, bundled_model, test_settings):
    """The attack of issue 20 (random logits, ~400 s of frames: 221 s and 4 GB before), at the cap."""
    url, pid = lm_server.http_url, _decoder_pid(lm_server)
    spec = bundled_model.spec()
    cap = spec.frames(test_settings.max_samples)  # 300 s: 14,999 frames
    logits = np.random.default_rng(1).standard_normal((cap, spec.vocab_size)).astype(np.float32)
    start = time.monotonic()
    assert _direct(url, logits) == _greedy_in_pieces(spec, logits, 1_000)
    assert time.monotonic() - start < 60, "flat logits were beam-searched"
    deadline = time.monotonic() + 30
    while "decoded greedily" not in lm_server.log_file.read_text():  # the step's warning, in Triton's log
        assert time.monotonic() < deadline, "the fallback to greedy decoding was not logged"
        time.sleep(0.2)
    with pytest.raises(InferenceServerException, match=f"at most {cap} frames per utterance") as refused:
        _direct(url, np.zeros((cap + 1, spec.vocab_size), np.float32))
    assert refused.value.status() == "400"
    assert _decoder_pid(lm_server) == pid
