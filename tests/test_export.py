"""The CPU graph of `vaani.build.export`: the same model, traced in the form ONNX Runtime runs faster."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from transformers import Wav2Vec2Config
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2LayerNormConvLayer

from vaani.build.export import FEATURE_ENCODER_SCOPE, _rows_feature_encoder, cpu_form, export_onnx
from vaani.build.parity import compare, probe_audio
from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine


@pytest.fixture(scope="module")
def cpu_graph(bundled_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(bundled_model.model, bundled_model.uses_attention_mask, path, cpu_graph=True)


def _padded_batch(bundled_model):
    """Two utterances of unequal length: the shorter row is padded, so the mask matters."""
    audio = probe_audio()
    return bundled_model.features([audio[0], audio[1][: len(audio[1]) // 2]])


@pytest.mark.parametrize(
    ("kernels", "strides", "bias"),
    [((10, 3, 3, 2), (5, 2, 2, 2), False), ((7, 4, 2, 5), (3, 2, 3, 5), True)],
)
def test_a_convolution_as_one_matrix_product_computes_the_layer(kernels, strides, bias):
    """Kernels longer, shorter than and equal to the stride, odd and even input lengths."""
    config = Wav2Vec2Config(
        conv_dim=(16,) * len(kernels), conv_kernel=kernels, conv_stride=strides, conv_bias=bias
    )
    torch.manual_seed(0)
    layers = [Wav2Vec2LayerNormConvLayer(config, layer_id=i).eval() for i in range(len(kernels))]
    rows = _rows_feature_encoder(SimpleNamespace(conv_layers=layers))
    for samples in (997, 1000, 1601):
        audio = torch.randn(2, samples)
        expected = audio[:, None]
        for layer in layers:
            expected = layer(expected)
        with torch.no_grad():
            got = rows(audio)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_the_cpu_form_computes_the_model_and_restores_it(bundled_model):
    values, mask = _padded_batch(bundled_model)
    model = bundled_model.model
    encoder, attention = model.wav2vec2.feature_extractor, model.config._attn_implementation
    before = bundled_model.logits(values, mask)
    with cpu_form(model):
        assert model.config._attn_implementation == "eager"
        assert model.wav2vec2.feature_extractor is not encoder
        during = bundled_model.logits(values, mask)
    assert model.wav2vec2.feature_extractor is encoder
    assert model.config._attn_implementation == attention
    np.testing.assert_allclose(during, before, atol=1e-4)
    np.testing.assert_array_equal(bundled_model.logits(values, mask), before)


def test_the_cpu_graph_has_no_encoder_convolution_nor_masking_where(bundled_model, cpu_graph, tmp_path):
    nodes = onnx.load(str(cpu_graph)).graph.node
    encoder = [n for n in nodes if n.name.startswith(FEATURE_ENCODER_SCOPE)]
    convolutions = len(bundled_model.model.config.conv_dim)
    assert [n.op_type for n in encoder].count("MatMul") == convolutions
    assert [n.op_type for n in encoder].count("Conv") == 0
    assert [n.op_type for n in encoder].count("Transpose") <= 1  # the last, back to HF's layout
    assert [n.op_type for n in nodes].count("Conv") == 1  # the positional convolution
    assert not [n for n in nodes if n.op_type == "Where" and "/attention/" in n.name]
    default = export_onnx(bundled_model.model, bundled_model.uses_attention_mask, tmp_path / "default.onnx")
    default_nodes = onnx.load(str(default)).graph.node
    assert [n.op_type for n in default_nodes].count("Conv") == convolutions + 1
    assert [n for n in default_nodes if n.op_type == "Where" and "/attention/" in n.name]


def test_the_cpu_graph_passes_the_parity_gate_with_padding(bundled_model, cpu_graph):
    engine = OnnxRuntimeEngine(cpu_graph, threads=2)
    report = compare(
        bundled_model.logits, engine, bundled_model.features, bundled_model.spec(), probe_audio()
    )
    assert report.passed, report.describe()
    values, mask = _padded_batch(bundled_model)
    frames = bundled_model.spec_frames(int(mask[1].sum()))
    got, expected = engine(values, mask), bundled_model.logits(values, mask)
    np.testing.assert_allclose(got[1, :frames], expected[1, :frames], atol=1e-3)
