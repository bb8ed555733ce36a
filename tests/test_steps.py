"""The steps' logic without a server: normalization, ragged batching, greedy CTC, configs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vaani.build.repository import RepositorySettings, all_configs
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.batching import plan_groups
from vaani.serving.contract import (
    ACOUSTIC,
    AUDIO,
    DECODER,
    ENSEMBLE,
    ENSEMBLE_STEPS,
    FRAME_TOKENS,
    HOTWORD_WEIGHT,
    HOTWORDS,
    NUM_SAMPLES,
    SAMPLING_RATE,
    TRANSCRIPT,
    WINDOW_LAYOUT,
    WINDOWS,
    WINDOWS_STEP,
    WORDS,
)
from vaani.serving.ctc import GreedyDecoder, words_json
from vaani.serving.engines.base import Engine, InvalidRequest
from vaani.serving.preprocessing import AudioError, AudioLimits, normalize, pad_to_bucket, sample_mask


def test_normalize_matches_feature_extractor(bundled_model):
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal((2, 12_345)) + 0.01).astype(np.float32)
    expected = bundled_model.extractor(list(audio), sampling_rate=SAMPLING_RATE, return_tensors="np")[
        "input_values"
    ]
    np.testing.assert_array_equal(normalize(audio), expected)
    assert normalize(audio).dtype == np.float32 and normalize(audio).flags.c_contiguous


def test_limits_name_the_problem():
    limits = AudioLimits(min_samples=400, max_samples=16_000)
    limits.check(np.zeros((2, 400), np.float32))
    cases = {
        "empty": np.zeros((1, 0), np.float32),
        "too short": np.zeros((1, 399), np.float32),
        "too long": np.zeros((1, 16_001), np.float32),
        "NaN": np.full((1, 500), np.nan, np.float32),
        "FP32": np.zeros((1, 500), np.float64),
        "batch, samples": np.zeros((500,), np.float32),
    }
    for message, audio in cases.items():
        with pytest.raises(AudioError, match=message):
            limits.check(audio)


def test_bucket_padding_keeps_samples_and_marks_them():
    values = pad_to_bucket(np.ones((2, 1000), np.float32), 800)
    mask = sample_mask(2, values.shape[1], 1000)
    assert values.shape == mask.shape == (2, 1600)
    assert mask[:, :1000].all() and not mask[:, 1000:].any() and not values[:, 1000:].any()
    assert pad_to_bucket(np.ones((1, 1000), np.float32), 0).shape == (1, 1000)


def test_plan_groups_bounds_padding():
    lengths, rows = [100, 1000, 950, 120, 900], [1, 1, 2, 1, 1]
    groups = plan_groups(lengths, rows, max_padding=0.3)
    assert sorted(i for g in groups for i in g.requests) == list(range(5))
    for group in groups:
        real = sum(lengths[i] * rows[i] for i in group.requests)
        padded = group.samples * sum(rows[i] for i in group.requests)
        assert 1 - real / padded <= 0.3
    assert len(plan_groups(lengths, rows, max_padding=1.0)) == 1


class SumEngine(Engine):
    """frames = samples // 10; each frame is the sum of its valid samples. Records each batch it runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def take(self, tensor):
        return np.asarray(tensor)

    def zeros(self, rows, samples):
        return np.zeros((rows, samples), dtype=np.float32)

    def forward(self, batch, lengths):
        self.calls.append(batch.shape)
        mask = np.arange(batch.shape[1])[None, :] < np.asarray(lengths)[:, None]
        masked = batch * mask
        return masked[:, : batch.shape[1] // 10 * 10].reshape(batch.shape[0], -1, 10).sum(-1, keepdims=True)


def test_run_ragged_equals_running_alone():
    engine = SumEngine()
    rng = np.random.default_rng(1)
    requests = [rng.standard_normal((rows, n)).astype(np.float32) for rows, n in [(1, 50), (2, 80), (1, 30)]]
    lengths = [np.full((r.shape[0], 1), r.shape[1], dtype=np.int64) for r in requests]
    out = engine.run_ragged(requests, lengths, lambda n: n // 10, max_padding=1.0)
    assert len(engine.calls) == 1 and engine.calls[0] == (4, 80)
    for got, values in zip(out, requests):
        np.testing.assert_allclose(got, engine(values, np.ones_like(values, dtype=np.int64)), rtol=1e-6)


def test_run_ragged_refuses_lengths_that_do_not_fit():
    engine = SumEngine()
    values = np.ones((2, 100), np.float32)
    cases = {
        "NUM_SAMPLES \\[batch, 1\\]": np.array([100, 100]),
        "integers": np.array([[100.0], [100.0]]),
        "from 1": np.array([[100], [101]]),
    }
    for message, lengths in cases.items():
        (out,) = engine.run_ragged([values], [lengths], lambda n: n // 10)
        assert isinstance(out, InvalidRequest) and re.search(message, str(out)), (message, out)


def test_greedy_decoder_matches_the_tokenizer(bundled_model):
    spec = bundled_model.spec()
    decoder = GreedyDecoder(spec)
    rng = np.random.default_rng(2)
    delimiter = bundled_model.tokenizer.convert_tokens_to_ids("|")
    for _ in range(200):
        ids = rng.integers(0, spec.vocab_size, size=rng.integers(0, 40))
        ids[rng.random(ids.shape) < 0.4] = spec.blank_id
        ids[rng.random(ids.shape) < 0.15] = delimiter
        assert decoder.decode_ids(ids) == bundled_model.decode(ids)


def test_frames_match_transformers(bundled_model):
    spec = bundled_model.spec()
    for samples in (400, 401, 719, 720, 16_000, 123_457):
        assert spec.frames(samples) == int(bundled_model.model._get_feat_extract_output_lengths(samples))
    assert spec.receptive_field == 400


def test_ensemble_contract_and_configs_parse():
    spec = AcousticSpec(32, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), True, 1, "|", tuple("x" * 32))
    configs = all_configs(spec, RepositorySettings(max_batch_size=8))
    asr = configs[ENSEMBLE]
    assert asr.platform == "ensemble" and asr.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in asr.input] == [
        (AUDIO, mc.TYPE_FP32, [-1], False),
        (HOTWORDS, mc.TYPE_STRING, [-1], True),
        (HOTWORD_WEIGHT, mc.TYPE_FP32, [1], True),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in asr.output] == [
        (TRANSCRIPT, mc.TYPE_STRING, [1]),
        (WORDS, mc.TYPE_STRING, [1]),
    ]
    assert [s.model_name for s in asr.ensemble_scheduling.step] == list(ENSEMBLE_STEPS)
    acoustic = {i.name: i.allow_ragged_batch for i in configs[ACOUSTIC].input}
    assert acoustic == {WINDOWS: True, WINDOW_LAYOUT: True, NUM_SAMPLES: False}  # a length per request
    assert [o.name for o in configs[ACOUSTIC].output] == [FRAME_TOKENS]  # greedy reads best tokens
    assert WINDOWS_STEP not in configs  # only a TensorRT plan needs the BLS step
    for config in configs.values():
        assert text_format.Parse(text_format.MessageToString(config), mc.ModelConfig()) == config


def test_settings_reject_unknown_engine():
    with pytest.raises(ValueError, match="engine"):
        RepositorySettings(engine="tflite")


def test_greedy_words_join_to_the_transcript(bundled_model):
    spec = bundled_model.spec()
    decoder = GreedyDecoder(spec)
    rng = np.random.default_rng(3)
    delimiter = bundled_model.tokenizer.convert_tokens_to_ids("|")
    for _ in range(200):
        ids = rng.integers(0, spec.vocab_size, size=rng.integers(0, 60))
        ids[rng.random(ids.shape) < 0.4] = spec.blank_id
        ids[rng.random(ids.shape) < 0.15] = delimiter
        words = decoder.words_ids(ids)
        assert " ".join(w.word for w in words) == decoder.decode_ids(ids)
        bounds = [frame for w in words for frame in (w.start_frame, w.end_frame)]
        assert bounds == sorted(bounds) and all(w.start_frame < w.end_frame for w in words)


def test_greedy_word_frames():
    tokens = ("<pad>", "|", "क", "ख")
    decoder = GreedyDecoder(AcousticSpec(4, (400,), (320,), True, 0, "|", tokens))
    # frames: क क _ ख | | _ ख ख _
    words = decoder.words_ids(np.array([2, 2, 0, 3, 1, 1, 0, 3, 3, 0]))
    assert [(w.word, w.start_frame, w.end_frame) for w in words] == [("कख", 0, 4), ("ख", 7, 9)]
    assert words_json(words, 0.02) == (
        '[{"word": "कख", "start": 0.0, "end": 0.08}, {"word": "ख", "start": 0.14, "end": 0.18}]'
    )
    assert AcousticSpec(4, (10, 3), (5, 64), True, 0, "|", tokens).frame_seconds == 0.02


def test_greedy_words_start_afresh_at_each_break():
    """A long recording's breaks (pauses): a repeat across one is two letters, no word runs across one."""
    tokens = ("<pad>", "|", "क", "ख")
    decoder = GreedyDecoder(AcousticSpec(4, (400,), (320,), True, 0, "|", tokens))
    # frames: क क क ख ख ख _ ख, breaks at 2 (inside a run of क), 5 (inside ख) and 9 (past the end)
    words = decoder.words_ids(np.array([2, 2, 2, 3, 3, 3, 0, 3]), [0, 2, 5, 9])
    assert [(w.word, w.start_frame, w.end_frame) for w in words] == [("क", 0, 2), ("कख", 2, 5), ("खख", 5, 8)]
    assert decoder.words_ids(np.array([], dtype=np.int32), [0, 3]) == []


def test_decoder_input_checks_name_the_problem():
    from vaani.serving.ctc import DecoderInputError, check_decoder_inputs

    spec = AcousticSpec(4, (400,), (320,), True, 0, "|", ("<pad>", "|", "क", "ख"))
    logits, samples = np.zeros((1, 10, 4), np.float32), np.array([[3_000]], np.int64)
    longest = 3_280  # 10 frames: the most this "server" takes
    assert check_decoder_inputs(spec, logits, samples, longest) == (None, 10.0)
    assert check_decoder_inputs(spec, np.zeros((1, 10), np.int32), samples, longest) == (None, 10.0)
    words = np.array([["राम".encode(), b"  a   b "]], dtype=np.object_)
    assert check_decoder_inputs(spec, logits, samples, longest, words, np.array([[2.5]], np.float32)) == (
        ["राम", "a b"],
        2.5,
    )
    cases = {
        "LOGITS must be": (np.zeros((10, 4), np.float32), samples, None, None),
        "finite": (np.full((1, 10, 4), np.inf, np.float32), samples, None, None),
        "at most 10 frames per utterance": (np.zeros((1, 11, 4), np.float32), samples, None, None),
        "NUM_SAMPLES must be": (logits, np.array([[3_000], [3_000]]), None, None),
        "does not fit": (logits, np.array([[399]]), None, None),
        "at most 100 HOTWORDS": (logits, samples, np.array([[b"x"] * 101], dtype=np.object_), None),
        "characters": (logits, samples, np.array([[b"x" * 101]], dtype=np.object_), None),
        "UTF-8": (logits, samples, np.array([[b"\xff"]], dtype=np.object_), None),
        "HOTWORD_WEIGHT": (logits, samples, None, np.array([[1e6]], np.float32)),
        "FRAME_TOKENS must be \\[batch, frames\\] INT32": (np.zeros((1, 10), np.int64), samples, None, None),
        "token ids from 0 to 3": (np.full((1, 10), 4, np.int32), samples, None, None),
        "fit the frames": (np.zeros((1, 5), np.int32), samples, None, None),
    }
    for message, (lg, n, hot, weight) in cases.items():
        with pytest.raises(DecoderInputError, match=message):
            check_decoder_inputs(spec, lg, n, longest, hot, weight)


def test_a_frame_cap_is_read_before_the_values():
    """Over the cap, a request is refused from its shape: no check reads (or copies) its values."""
    from vaani.serving.ctc import DecoderInputError, check_decoder_inputs

    spec = AcousticSpec(4, (400,), (320,), True, 0, "|", ("<pad>", "|", "क", "ख"))
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1, 10**12, 4), (0, 0, 0))
    with pytest.raises(DecoderInputError, match="frames per utterance"):
        check_decoder_inputs(spec, huge, np.array([[3_000]]), 3_280)


def _plan(*windows: tuple[int, int, int, int, int]) -> np.ndarray:
    return np.array([[field for window in windows for field in window]], np.int64)


def test_window_plans_are_checked_before_any_offset_is_trusted():
    """What `ctc_decoder` (and `wav2vec2`) refuse from a direct caller: every garbage plan, by name."""
    from vaani.serving.windowing import Windowing, layout_problem

    spec = AcousticSpec(32, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), True, 1, "|", tuple("x" * 32))
    windows = Windowing.from_seconds(20, 2, 0.3, spec, SAMPLING_RATE)
    samples = np.array([[16_000]], np.int64)
    one = _plan((0, 16_000, 0, 49, 0))  # 1 s: one window, all 49 frames kept
    two = np.repeat(one, 2, axis=0)
    assert layout_problem(one, samples, windows, 480_000) is None
    assert layout_problem(two, samples[[0, 0]], windows, 480_000) is None
    cases = {
        "negative offsets": (_plan((-3_200, 16_000, 0, 49, 0)), samples),
        "offsets of 10^15": (_plan((0, 10**15, 0, 49, 0)), samples),
        "kept frames past the window": (_plan((0, 16_000, 0, 10**15, 0)), samples),
        "unknown kind": (_plan((0, 16_000, 0, 49, 7)), samples),
        "frames left out": (_plan((0, 16_000, 0, 40, 0)), samples),
        "gap between windows": (_plan((0, 8_000, 0, 20, 0), (9_600, 16_000, 0, 19, 1)), samples),
        "a field short": (one[:, :4], samples),
        "more windows than frames": (np.zeros((1, 5 * 50), np.int64), samples),
        "rows that differ": (two * [[1], [2]], samples[[0, 0]]),
        "lengths that differ": (two, np.array([[16_000], [8_000]])),
        "a batch of its own": (two, samples),
        "over the longest audio": (one, np.array([[10**15]])),
    }
    for name, (plan, lengths) in cases.items():
        assert layout_problem(plan, lengths, windows, 480_000), f"{name} passed"


def test_decoder_settings_reach_the_config():
    spec = AcousticSpec(32, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), True, 1, "|", tuple("x" * 32))
    config = all_configs(spec, RepositorySettings(decoder_instances=3, beam_width=16), decoder="beam")[
        DECODER
    ]
    assert config.instance_group[0].count == 3
    assert config.parameters["decoder"].string_value == "beam"
    assert config.parameters["beam_width"].string_value == "16"
    # It checks a direct caller's WINDOW_LAYOUT and caps frames at the longest audio, as `wav2vec2` does.
    acoustic = all_configs(spec, RepositorySettings(), decoder="beam")[ACOUSTIC]
    for key in ("chunk_samples", "context_samples", "pause_samples", "max_samples"):
        assert config.parameters[key] == acoustic.parameters[key], key
    with pytest.raises(ValueError, match="decoder"):
        RepositorySettings(decoder="viterbi")
