"""The `torch` engine on CPU tensors: selection, config, and its forward and ragged batching vs FP32.

CI has no GPU; the engine's code path is the same with ``device="cpu"`` (CUDA graphs are
the one part that needs a GPU and is measured by `vaani.benchmarks.gpu_benchmark` instead).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from transformers import Wav2Vec2ForCTC
from tritonclient.grpc import model_config_pb2 as mc

from vaani.build.repository import RepositorySettings, acoustic_config, all_configs
from vaani.recipe.tiny_model import tiny_config
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.batching import prefix_lengths
from vaani.serving.contract import ACOUSTIC, ENSEMBLE, version_dir
from vaani.serving.engines.base import InvalidRequest
from vaani.serving.engines.registry import PYTHON_ENGINES, instance_device, load_engine
from vaani.serving.engines.torch_engine import (
    HF_SUBDIR,
    TorchEngine,
    TorchEngineOptions,
    copy_parts,
    save_model,
)
from vaani.serving.engines.torch_normalization import normalize_packed
from vaani.serving.engines.torch_packing import Packing
from vaani.serving.preprocessing import normalize

FP32 = TorchEngineOptions(dtype="float32")


def _model(seed: int = 0, **overrides) -> Wav2Vec2ForCTC:
    torch.manual_seed(seed)
    return Wav2Vec2ForCTC(tiny_config(**overrides)).eval()


def _clips(lengths: list[int], seed: int = 1) -> list[np.ndarray]:
    """Normalized clips, as the model takes them (the engine's own normalization leaves them be)."""
    rng = np.random.default_rng(seed)
    return [normalize(rng.standard_normal((1, n)).astype(np.float32))[0] for n in lengths]


def _lengths(values: list[np.ndarray]) -> list[np.ndarray]:
    """``NUM_SAMPLES`` of requests whose rows are audio in full."""
    return [np.full((v.shape[0], 1), v.shape[1], dtype=np.int64) for v in values]


def _reference(model: Wav2Vec2ForCTC, clip: np.ndarray) -> torch.Tensor:
    """FP32 Hugging Face logits of one clip alone (no padding, no mask needed)."""
    with torch.inference_mode():
        return model(torch.from_numpy(clip)[None]).logits[0]


@pytest.fixture(scope="module")
def model() -> Wav2Vec2ForCTC:
    return _model()


def test_engine_is_selectable_by_name_and_reads_its_parameters(tmp_path: Path, model) -> None:
    assert "torch" in PYTHON_ENGINES
    save_model(model, tmp_path)
    assert (tmp_path / HF_SUBDIR / "config.json").exists()
    parameters = {"engine": "torch", "dtype": "float32", "cuda_graphs": "false", "graph_max_seconds": "8"}
    engine = load_engine("torch", tmp_path, parameters, device="cpu")
    assert isinstance(engine, TorchEngine)
    assert engine.options == TorchEngineOptions(dtype="float32", cuda_graphs=False, graph_max_seconds=8.0)
    assert engine.device == torch.device("cpu")
    assert engine.graphs is None  # graphs are a CUDA feature


def test_instance_device_follows_triton_instance_kind() -> None:
    assert instance_device("GPU", 3) == "cuda:3"
    assert instance_device("KIND_GPU", 0) == "cuda:0"
    assert instance_device("CPU", 0) == "cpu"


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype"):
        TorchEngineOptions(dtype="int8")


def test_torch_config_runs_on_gpu_instances_with_ragged_inputs() -> None:
    spec = AcousticSpec(
        vocab_size=67,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        uses_attention_mask=True,
        blank_id=0,
        word_delimiter="|",
        tokens=tuple(str(i) for i in range(67)),
    )
    settings = RepositorySettings(engine="torch", acoustic_instances=2, max_batch_size=64)
    config = acoustic_config(spec, settings)
    assert config.backend == "python"
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    assert [t.name for t in config.input if t.allow_ragged_batch] == ["WINDOWS", "WINDOW_LAYOUT"]
    assert config.max_batch_size == 64
    assert config.parameters["engine"].string_value == "torch"
    # The engine's knobs are written from its own defaults, and read back unchanged.
    written = {key: value.string_value for key, value in config.parameters.items()}
    assert TorchEngineOptions.from_parameters(written) == TorchEngineOptions()
    # The rest of the ensemble is what every engine gets.
    others = all_configs(spec, RepositorySettings(engine="onnxruntime"))
    torch_configs = all_configs(spec, settings)
    assert torch_configs[ENSEMBLE].ensemble_scheduling == others[ENSEMBLE].ensemble_scheduling


@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_torch_config_places_one_instance_group_per_gpu(gpus: int) -> None:
    spec = AcousticSpec(
        vocab_size=5, conv_kernel=(10,), conv_stride=(5,), uses_attention_mask=True, blank_id=0,
        word_delimiter="|", tokens=tuple("abcde"),
    )  # fmt: skip
    config = acoustic_config(spec, RepositorySettings(engine="torch", acoustic_instances=2, gpus=gpus))
    groups = [(g.kind, g.count, list(g.gpus)) for g in config.instance_group]
    assert groups == [(mc.ModelInstanceGroup.KIND_GPU, 2, [gpu]) for gpu in range(gpus)]
    assert len({g.name for g in config.instance_group}) == gpus
    text = text_format.MessageToString(config)
    assert text.count("gpus: ") == gpus
    with pytest.raises(ValueError, match="gpus"):
        RepositorySettings(engine="torch", gpus=-1)


@pytest.mark.parametrize(
    ("overrides", "channels_last"),
    [
        ({}, True),
        ({}, False),
        ({"do_stable_layer_norm": False, "feat_extract_norm": "group"}, True),
        ({"do_stable_layer_norm": False, "feat_extract_norm": "layer"}, True),
    ],
)
def test_forward_in_fp32_equals_hugging_face_with_a_mask(overrides: dict, channels_last: bool) -> None:
    model = _model(**overrides)
    lengths = [24_000, 16_000, 9_000]
    values = torch.zeros(3, 24_000)
    mask = torch.zeros(3, 24_000, dtype=torch.long)
    for row, clip in enumerate(_clips(lengths)):
        values[row, : len(clip)] = torch.from_numpy(clip)
        mask[row, : len(clip)] = 1
    with torch.inference_mode():
        expected = model(values, attention_mask=mask).logits
    options = TorchEngineOptions(dtype="float32", channels_last=channels_last)
    engine = TorchEngine(copy.deepcopy(model), "cpu", options)
    got = engine.logits(values, torch.tensor(lengths))
    frames = model._get_feat_extract_output_lengths(torch.tensor(lengths)).tolist()
    for row, count in enumerate(frames):
        torch.testing.assert_close(got[row, :count], expected[row, :count], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded groups"])
def test_ragged_requests_equal_each_request_alone(model, packed: bool) -> None:
    """Mixed lengths and rows, packed or split into padded groups: each request gets its own logits."""
    engine = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="float32", packed=packed))
    lengths = [16_000, 5_200, 15_000, 30_000, 800]
    clips = _clips(lengths)
    values = [clip[None, :] for clip in clips]
    values[1] = np.stack([clips[1], clips[1][::-1].copy()])  # a request of two utterances
    spec_frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    results = engine.run_ragged(values, _lengths(values), spec_frames, max_padding=0.35)
    assert [r.shape for r in results] == [
        (v.shape[0], spec_frames(v.shape[1]), model.config.vocab_size) for v in values
    ]
    for request, result in zip(values, results):
        assert result.device.type == "cpu" and result.is_contiguous()
        for row, utterance in enumerate(request):
            torch.testing.assert_close(result[row], _reference(model, utterance), atol=1e-4, rtol=1e-4)


def _frame_boundary(model: Wav2Vec2ForCTC, frames: int) -> int:
    """The fewest samples that give ``frames`` frames: one sample less gives one frame less."""
    samples = frames
    for kernel, stride in zip(reversed(model.config.conv_kernel), reversed(model.config.conv_stride)):
        samples = (samples - 1) * stride + kernel
    return samples


PACKED_LAYOUTS = {
    "frame boundary ±1": lambda b: [b - 1, b, b + 1, 3 * b + 7],
    "single clip": lambda b: [b + 5],
    "lengths 50× apart": lambda b: [800, 40_000, 1_600],
}


@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
@pytest.mark.parametrize(
    "overrides",
    [{}, {"do_stable_layer_norm": False, "feat_extract_norm": "group"}],
    ids=["stable, layer norm", "group norm"],
)
def test_packed_forward_equals_each_utterance_alone(layout: str, overrides: dict) -> None:
    """No padding, variable-length attention, the positional conv kept inside each utterance."""
    model = _model(**overrides)
    boundary = _frame_boundary(model, 20)
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    assert frames(boundary) == 20 and frames(boundary - 1) == 19
    clips = _clips(PACKED_LAYOUTS[layout](boundary), seed=3)
    engine = TorchEngine(copy.deepcopy(model), "cpu", FP32)
    assert engine.packs(len(clips), max(c.size for c in clips))
    requests = [c[None] for c in clips]
    results = engine.run_ragged(requests, _lengths(requests), frames)
    for clip, result in zip(clips, results):
        expected = _reference(model, clip)
        assert result.shape == (1, *expected.shape)
        torch.testing.assert_close(result[0], expected, atol=1e-4, rtol=1e-4)
        assert torch.equal(result[0].argmax(-1), expected.argmax(-1))  # the transcript


def test_packed_and_padded_forwards_agree_on_a_padded_batch(model) -> None:
    """The padded interface (the parity and accuracy gates) runs packed too, and equals the masked batch."""
    values = np.zeros((3, 24_000), dtype=np.float32)
    mask = np.zeros((3, 24_000), dtype=np.int64)
    for row, clip in enumerate(_clips([24_000, 9_001, 480])):
        values[row, : clip.size] = clip
        mask[row, : clip.size] = 1
    packed = TorchEngine(copy.deepcopy(model), "cpu", FP32)(values, mask)
    padded = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="float32", packed=False))(
        values, mask
    )
    assert packed.shape == padded.shape
    for row, samples in enumerate(mask.sum(1)):
        count = int(model._get_feat_extract_output_lengths(int(samples)))
        np.testing.assert_allclose(packed[row, :count], padded[row, :count], atol=1e-4, rtol=1e-4)
        assert not packed[row, count:].any()  # padding frames are zeros, never another clip's


def test_packing_places_utterances_on_whole_frames_and_apart() -> None:
    kernels, strides = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
    packing = Packing((6_399, 320, 401, 16_000), kernels, strides)
    assert packing.sample_starts.tolist() == [0, 6_400, 6_720, 7_360]
    assert packing.total_samples == 7_360 + 16_000
    assert packing.frames.tolist() == [19, 0, 1, 49]
    assert packing.cu_seqlens.tolist() == [0, 19, 19, 20, 69]
    positions = packing.token_positions()
    assert positions[:19].tolist() == list(range(19)) and positions[19] == 21 and positions[20] == 23
    gapped = packing.gapped_positions(gap=4)
    assert gapped[:2].tolist() == [4, 5] and gapped[19] == 19 + 4 * 3  # a zero-frame clip keeps its gap
    assert np.all(np.diff(gapped) >= 1)


def test_bucket_padded_request_uses_only_its_valid_samples(model) -> None:
    """A request padded to a bucket: past ``NUM_SAMPLES`` is padding, not audio."""
    engine = TorchEngine(copy.deepcopy(model), "cpu", FP32)
    clip = _clips([12_345])[0]
    padded = np.zeros((1, 16_000), dtype=np.float32)
    padded[0, : clip.size] = clip
    padded[0, clip.size :] = 7.0  # whatever lies past the length must not count
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    (result,) = engine.run_ragged([padded], [np.array([[clip.size]])], frames)
    assert result.shape[1] == frames(16_000)
    valid = frames(clip.size)
    torch.testing.assert_close(result[0, :valid], _reference(model, clip), atol=1e-4, rtol=1e-4)


def test_numpy_interface_matches_the_parity_gate_contract(model) -> None:
    engine = TorchEngine(copy.deepcopy(model), "cpu", FP32)
    clips = _clips([8_000, 6_000])
    values = np.zeros((2, 8_000), dtype=np.float32)
    mask = np.zeros((2, 8_000), dtype=np.int64)
    for row, clip in enumerate(clips):
        values[row, : clip.size] = clip
        mask[row, : clip.size] = 1
    logits = engine(values, mask)
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
    count = int(model._get_feat_extract_output_lengths(6_000))
    np.testing.assert_allclose(logits[1, :count], _reference(model, clips[1]).numpy(), atol=1e-4, rtol=1e-4)


def test_half_precision_keeps_norms_and_projection_in_fp32(model) -> None:
    engine = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="bfloat16"))
    norms = [m for m in engine.ctc.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert engine.ctc.model.lm_head.weight.dtype == torch.float32
    assert engine.ctc.layers[0].qkv_weight.dtype == torch.bfloat16
    clip = _clips([16_000])[0]
    got = engine.logits(torch.from_numpy(clip)[None], None)
    assert got.dtype == torch.float32
    expected = _reference(model, clip)
    relative = float((got[0] - expected).norm() / expected.norm())
    assert relative < 5e-2  # BF16 matrix work: a few 1e-3, far from a broken forward (~1)


def test_gelu_in_the_products_epilogue_computes_the_feed_forward(model) -> None:
    """Half dtypes take the feed-forward's bias and GELU in its first product (FP32 keeps them apart, since
    a GPU's epilogue is GELU's tanh form): the logits follow the product-then-activation engine."""
    assert not TorchEngine(copy.deepcopy(model), "cpu", FP32).ctc.gelu_epilogue
    fused = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="bfloat16"))
    apart = TorchEngine(
        copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="bfloat16", gelu_epilogue=False)
    )
    assert fused.ctc.gelu_epilogue and not apart.ctc.gelu_epilogue
    clips = _clips([16_000, 7_300])
    values = [clip[None, :] for clip in clips]
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    for got, want in zip(
        fused.run_ragged(values, _lengths(values), frames), apart.run_ragged(values, _lengths(values), frames)
    ):
        assert float((got - want).norm() / want.norm()) < 1e-2


def test_a_request_with_nan_is_refused_and_the_others_of_its_packed_run_are_served(model) -> None:
    """A packed run checks its audio after the fact; one that held a NaN or Inf runs again without it."""
    engine = TorchEngine(copy.deepcopy(model), "cpu", FP32)
    clips = _clips([16_000, 7_300, 9_100])
    values = [clip[None, :].copy() for clip in clips]
    values[1][0, 50] = np.inf
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    results = engine.run_ragged(values, _lengths(values), frames)
    assert isinstance(results[1], InvalidRequest) and "NaN or Inf" in str(results[1])
    for index in (0, 2):
        torch.testing.assert_close(results[index][0], _reference(model, clips[index]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("count", [1, 3, 4, 16])
def test_copy_parts_split_the_audio_evenly_and_place_every_sample_once(count: int) -> None:
    """The threads that copy host audio get parts of about equal samples; a long row is split."""
    rows = [np.arange(n, dtype=np.float32) + 1000 * i for i, n in enumerate([5, 40, 3, 12])]
    starts = [0, 8, 60, 70]
    pieces = list(zip(starts, rows))
    parts = copy_parts(pieces, count)
    total = sum(len(r) for r in rows)
    assert len(parts) <= count
    sizes = [sum(len(p) for _, p in part) for part in parts]
    assert sum(sizes) == total and max(sizes) - min(sizes) <= -(-total // count)
    target = np.zeros(90, np.float32)
    written = np.zeros(90, int)
    for part in parts:
        for start, piece in part:
            target[start : start + len(piece)] = piece
            written[start : start + len(piece)] += 1
    expected = np.zeros(90, np.float32)
    for start, row in pieces:
        expected[start : start + len(row)] = row
    np.testing.assert_array_equal(target, expected)
    assert written.max() == 1


def test_norms_can_run_in_the_half_dtype_for_comparison(model) -> None:
    engine = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(fp32_norms=False))
    norms = [m for m in engine.ctc.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(m.weight.dtype == torch.bfloat16 for m in norms)
    clip = _clips([16_000])[0]
    got = engine.logits(torch.from_numpy(clip)[None], None)[0]
    expected = _reference(model, clip)
    assert float((got - expected).norm() / expected.norm()) < 5e-2


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1, 1, 1, 1]], [4]),
        ([[1, 1, 0, 0]], [2]),
        ([[1, 0, 0, 0]], [1]),
        ([[0, 0, 0, 0]], [0]),
        ([[1] * 999 + [0], [1] * 500 + [0] * 500], [999, 500]),
    ],
)
def test_prefix_lengths_counts_the_leading_ones(rows: list[list[int]], expected: list[int]) -> None:
    mask = np.array(rows, dtype=np.int64)
    assert prefix_lengths(mask) == expected
    assert prefix_lengths(mask) == mask.sum(axis=1).tolist()


def test_build_installs_the_model_for_the_torch_engine(tmp_path: Path) -> None:
    from vaani.build.pipeline import build

    root = Path(__file__).resolve().parents[1]
    repository = build(
        str(root / "models" / "tiny-hindi"), tmp_path / "repo", RepositorySettings(engine="torch")
    )
    version = version_dir(repository, ACOUSTIC)
    assert (version / HF_SUBDIR / "model.safetensors").exists()
    assert not (version / "model.onnx").exists()  # no export for this engine
    assert "KIND_GPU" in (repository / ACOUSTIC / "config.pbtxt").read_text()


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_engine_normalizes_raw_audio_as_preprocess_would(model, packed: bool) -> None:
    """Raw audio (offset, scaled, lengths apart) in: each row gets the logits of its normalized self."""
    engine = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="float32", packed=packed))
    assert engine.options.normalize
    rng = np.random.default_rng(5)
    raw = [(0.3 + 0.05 * rng.standard_normal((1, n))).astype(np.float32) for n in (16_000, 3_217, 9_000)]
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    results = engine.run_ragged(raw, _lengths(raw), frames, max_padding=1.0)
    for audio, result in zip(raw, results):
        expected = _reference(model, normalize(audio)[0])
        torch.testing.assert_close(result[0], expected, atol=1e-4, rtol=1e-4)
        assert torch.equal(result[0].argmax(-1), expected.argmax(-1))


def test_preprocess_leaves_normalization_to_the_torch_engine() -> None:
    spec = AcousticSpec(5, (10,), (5,), True, 0, "|", tuple("abcde"))
    for engine, normalizes in (("torch", True), ("onnxruntime", False)):
        configs = all_configs(spec, RepositorySettings(engine=engine))
        preprocess = configs["preprocess"].parameters["normalize"].string_value
        assert preprocess == str(not normalizes).lower()
        inputs = [tensor.name for tensor in configs[ACOUSTIC].input]
        assert inputs == ["WINDOWS", "WINDOW_LAYOUT", "NUM_SAMPLES"]  # one length per request, no mask


# ---- the engine's packed normalization (block sums) against numpy ---------------------------------

WAV2VEC2 = ((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))  # kernels, strides: 320-sample blocks


def _pack(clips: list[np.ndarray], kernels: tuple[int, ...], strides: tuple[int, ...]) -> tuple:
    """The packed audio `TorchEngine._packed_audio` makes: each clip at its start, zeros between."""
    packing = Packing(tuple(len(c) for c in clips), kernels, strides)
    audio = np.zeros(packing.total_samples, dtype=np.float32)
    for clip, start in zip(clips, packing.sample_starts):
        audio[start : start + len(clip)] = clip
    return packing, audio


def _assert_each_clip_normalized(out: np.ndarray, clips: list[np.ndarray], packing: Packing) -> None:
    """Each clip as `preprocessing.normalize` (float32 numpy) gives it, within FP32 rounding; gaps zero."""
    gap = np.ones(len(out), dtype=bool)
    for clip, start in zip(clips, packing.sample_starts):
        gap[start : start + len(clip)] = False
        if len(clip):
            np.testing.assert_allclose(
                out[start : start + len(clip)], normalize(clip[None])[0], rtol=1e-5, atol=2e-5
            )
    assert not out[gap].any()


@pytest.mark.parametrize(
    ("kernels", "strides"), [WAV2VEC2, ((10,), (5,))], ids=["wav2vec2-blocks", "tiny-model-blocks"]
)
def test_packed_normalization_equals_numpy_for_many_segments(kernels: tuple, strides: tuple) -> None:
    """Hundreds of clips of every awkward length, each with its own offset and gain (1e-4 to 1e3)."""
    rng = np.random.default_rng(11)
    stride = int(np.prod(strides))
    lengths = [0, 1, 2, stride - 1, stride, stride + 1, 2 * stride, *rng.integers(1, 48_000, 250).tolist()]
    clips = [
        (rng.uniform(-1, 1) * gain + gain * rng.standard_normal(n)).astype(np.float32)
        for n, gain in zip(lengths, 10.0 ** rng.uniform(-4, 3, len(lengths)))
    ]
    rng.shuffle(clips)
    packing, audio = _pack(clips, kernels, strides)
    out = normalize_packed(torch.from_numpy(audio.copy()), packing).numpy()
    assert out.shape == audio.shape and np.isfinite(out).all()
    _assert_each_clip_normalized(out, clips, packing)


def test_packed_normalization_keeps_a_quiet_clip_exact_after_long_loud_audio() -> None:
    """Five minutes at 1e4 then 0.5 s at 1e-4: no sum may carry the loud clip's magnitude into the quiet one.

    A float64 cumulative sum differenced at the boundaries fails here: its rounding near 5e14
    (the loud clip's sum of squares) dwarfs the quiet clip's 8e-5.
    """
    rng = np.random.default_rng(12)
    loud = (1e4 * rng.standard_normal(5 * 60 * 16_000)).astype(np.float32)
    quiet = (3e-4 + 1e-4 * rng.standard_normal(8_000)).astype(np.float32)
    clips = [loud, quiet, loud[:16_000].copy(), quiet[:321].copy()]
    packing, audio = _pack(clips, *WAV2VEC2)
    out = normalize_packed(torch.from_numpy(audio), packing).numpy()
    _assert_each_clip_normalized(out, clips, packing)


def test_packed_normalization_of_nothing_is_nothing() -> None:
    packing = Packing((), *WAV2VEC2)
    assert normalize_packed(torch.zeros(0), packing).numel() == 0


@pytest.mark.parametrize(
    "overrides",
    [{}, {"do_stable_layer_norm": False, "feat_extract_norm": "layer"}],
    ids=["stable", "post-norm"],
)
def test_the_earlier_choices_the_gpu_benchmark_times_give_the_engines_logits(overrides: dict) -> None:
    """The variants swapped back in by `vaani.benchmarks.engine_alternatives` compute the same function
    (else the GPU benchmark's before/after would compare different models), and a NaN is still refused."""
    from vaani.benchmarks.engine_alternatives import ALTERNATIVES
    from vaani.serving.engines.base import InvalidRequest

    model = _model(**overrides)
    engine = TorchEngine(copy.deepcopy(model), "cpu", FP32)
    clips = _clips([16_000, 7_300])
    values = [clip[None, :] for clip in clips]
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    expected = engine.run_ragged(values, _lengths(values), frames)
    padded = torch.zeros(2, 16_000)
    padded[0], padded[1, :7_300] = torch.from_numpy(clips[0]), torch.from_numpy(clips[1])
    lengths = torch.tensor([16_000, 7_300])
    expected_padded = engine.logits(padded, lengths)
    for label, swapped in ALTERNATIVES.items():
        with swapped(engine):
            got = engine.run_ragged(values, _lengths(values), frames)
            got_padded = engine.logits(padded, lengths)
            bad = values[0].copy()
            bad[0, 100] = np.nan
            refused = engine.run_ragged([bad], _lengths([bad]), frames)[0]
        for want, have in zip(expected, got):
            torch.testing.assert_close(have, want, atol=1e-5, rtol=1e-5, msg=label)
        torch.testing.assert_close(got_padded, expected_padded, atol=1e-5, rtol=1e-5, msg=label)
        assert isinstance(refused, InvalidRequest) and "NaN" in str(refused), label
    assert not {"_encoder", "_rows_positional"} & set(vars(engine.ctc))  # swapped back
    assert "run_finite" not in vars(engine)
    assert engine.options == FP32


def test_fp8_matrix_products_follow_fp32_within_fp8_rounding(model) -> None:
    """The FP8 path (PyTorch operations and `torch._scaled_mm` on a CPU; Triton kernels on a GPU) computes
    the model: logits within FP8's rounding of FP32's, padded and packed alike."""
    clips = _clips([16_000, 7_300])
    values = [clip[None, :] for clip in clips]
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    for packed in (True, False):
        options = TorchEngineOptions(dtype="float32", fp8=True, packed=packed)
        engine = TorchEngine(copy.deepcopy(model), "cpu", options)
        assert engine.ctc.fp8 is not None and engine.ctc.fp8_unavailable is None
        for clip, logits in zip(clips, engine.run_ragged(values, _lengths(values), frames)):
            expected = _reference(model, clip)
            error = float((logits[0] - expected).norm() / expected.norm())
            assert 1e-4 < error < 0.05, error  # FP8 rounding shows, and stays small


def test_fp8_is_declined_with_its_reason_for_post_norm_models() -> None:
    post_norm = _model(do_stable_layer_norm=False, feat_extract_norm="layer")
    engine = TorchEngine(post_norm, "cpu", TorchEngineOptions(dtype="float32", fp8=True))
    assert engine.ctc.fp8 is None and "stable" in engine.ctc.fp8_unavailable


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded groups"])
def test_best_tokens_are_the_argmax_of_the_logits_the_engine_would_give(model, packed: bool) -> None:
    """A greedy decoder's `wav2vec2` takes each frame's best token where the logits are (on a GPU only
    the tokens cross to the host): the same tokens as the logits' argmax, INT32, one per frame."""
    engine = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="float32", packed=packed))
    clips = _clips([16_000, 5_200, 30_000])
    values = [clip[None, :] for clip in clips]
    values[1] = np.stack([clips[1], clips[1][::-1].copy()])
    frames = lambda n: int(model._get_feat_extract_output_lengths(n))  # noqa: E731
    lengths = [[v.shape[1]] * v.shape[0] for v in values]
    logits = engine.run_groups([torch.from_numpy(v) for v in values], lengths, frames, 0.35)
    engine.best_tokens = True
    tokens = engine.run_groups([torch.from_numpy(v) for v in values], lengths, frames, 0.35)
    for want, got in zip(logits, tokens):
        assert got.dtype == torch.int32 and got.shape == want.shape[:2]
        assert torch.equal(got, want.argmax(-1).to(torch.int32))
