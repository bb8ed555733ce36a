"""`vaani build --quantize`: INT8 matrix products, the feature encoder FP32, gated on transcripts;
FP32 by default."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import soundfile

from vaani.build.accuracy_gate import GateRefused
from vaani.build.commands import add_settings_arguments, settings_from_args
from vaani.build.export import FEATURE_ENCODER_SCOPE
from vaani.build.pipeline import STAMP, build
from vaani.build.repository import RepositorySettings
from vaani.build.tensorrt.route import PlanOptions
from vaani.errors import UserFacingError
from vaani.recipe.corpus import synth
from vaani.scoring import score
from vaani.serving.contract import ACOUSTIC, version_dir
from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

from .conftest import BUNDLED_MODEL

UTTERANCES = 24
# Measured on the bundled model: INT8 moves 7 of 400 held-out greedy transcripts, CER 1.32 % both
# (benchmarks/results/int8-accuracy-cpu-2026-12-05).
MAX_CER_AGAINST_FP32 = 0.02


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """The first held-out sentences of the bundled model, synthesized, with their manifest."""
    folder = tmp_path_factory.mktemp("held_out")
    plan = synth.read_plan(BUNDLED_MODEL / "testset.jsonl")[:UTTERANCES]
    lines, audio = [], []
    for index, utterance in enumerate(plan):
        samples = synth.synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)
        soundfile.write(folder / f"{index}.wav", samples, 16_000)
        lines.append(json.dumps({"audio_filepath": f"{index}.wav", "text": utterance.text}))
        audio.append(samples)
    manifest = folder / "test.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest, audio


@pytest.fixture(scope="module")
def gates(tmp_path_factory) -> PlanOptions:
    """The held-out manifest's gate, its verdicts kept for this module: a build of the same INT8 graph
    on it (another repository or setting) reuses the verdict instead of transcribing again."""
    return PlanOptions(work_dir=tmp_path_factory.mktemp("work"))


def _settings(*options: str) -> RepositorySettings:
    """Settings as `vaani build` derives them from its options."""
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(["--max-batch-size", "4", "--threads", "2", *options]))


def _is_int8(repository) -> bool:
    return "MatMulInteger" in _ops(version_dir(repository, ACOUSTIC) / "model.onnx")


def _ops(path) -> dict[str, list[onnx.NodeProto]]:
    nodes: dict[str, list[onnx.NodeProto]] = {}
    for node in onnx.load(str(path)).graph.node:
        nodes.setdefault(node.op_type, []).append(node)
    return nodes


def test_quantized_build_keeps_the_transcripts_of_fp32(tmp_path, held_out, gates, bundled_model, capsys):
    manifest, audio = held_out
    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4, threads=2, quantize=True)
    build(str(BUNDLED_MODEL), repository, settings, plan=replace(gates, manifest=manifest))
    out = capsys.readouterr().out
    assert f"accuracy gate on {UTTERANCES} utterances: accepted" in out

    onnx_path = version_dir(repository, ACOUSTIC) / "model.onnx"
    assert sorted(p.name for p in onnx_path.parent.glob("*.onnx")) == ["model.onnx"]
    ops = _ops(onnx_path)
    weights = {t.name: t for t in onnx.load(str(onnx_path)).graph.initializer}
    # Every weight matrix product of the transformer is INT8; the convolutional feature encoder,
    # one FP32 matrix product per convolution in the CPU graph, and the positional conv stay FP32.
    assert len(ops["MatMulInteger"]) >= 6 * bundled_model.model.config.num_hidden_layers
    encoder = [n for n in ops["MatMul"] if n.name.startswith(FEATURE_ENCODER_SCOPE)]
    assert len(encoder) == len(bundled_model.model.config.conv_dim)
    assert not [n for n in ops["MatMulInteger"] if n.name.startswith(FEATURE_ENCODER_SCOPE)]
    assert all(weights[node.input[1]].data_type == onnx.TensorProto.FLOAT for node in encoder + ops["Conv"])
    assert len(ops["Conv"]) == 1  # the positional convolution

    engine = OnnxRuntimeEngine(onnx_path, threads=2)
    quantized = []
    for samples in audio:
        values, mask = bundled_model.features([samples])
        ids = engine(values, mask).argmax(-1)[0][: bundled_model.spec_frames(len(samples))]
        quantized.append(bundled_model.decode(ids))
    fp32 = [bundled_model.transcribe([samples])[0] for samples in audio]
    assert score(fp32, quantized).cer <= MAX_CER_AGAINST_FP32
    # It is the INT8 graph that ran: its logits are near FP32's, not equal to them.
    difference = np.abs(engine(values, mask) - bundled_model.logits(values, mask)).max()
    assert 1e-3 < difference < 1.0
    # A request's logits do not depend on the requests batched with it, though INT8 scales each
    # activation tensor by its own range: every row runs alone, over its own samples.
    longest = max(audio, key=len)
    for samples in audio[:4]:
        batch = np.zeros((2, len(longest)), np.float32)
        batch[0, : len(samples)], batch[1] = samples, longest
        together = engine.forward(batch, [len(samples), len(longest)])
        alone = engine.forward(batch[:1, : len(samples)], [len(samples)])
        np.testing.assert_array_equal(together[0, : alone.shape[1]], alone[0])
        assert not together[0, alone.shape[1] :].any()  # the frames past its samples: padding


def test_a_refused_quantization_leaves_no_repository_behind(tmp_path, held_out, gates, capsys):
    manifest, _ = held_out
    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4, quantize=True)
    refusing = replace(gates, manifest=manifest, max_cer_increase=-1)  # refuses whatever the candidate does
    with pytest.raises(GateRefused):
        build(str(BUNDLED_MODEL), repository, settings, plan=refusing)
    assert "REFUSED" in capsys.readouterr().out
    assert not (repository / STAMP).exists()
    assert not (version_dir(repository, ACOUSTIC) / "model.int8.onnx").exists()


def test_quantize_is_an_onnxruntime_option_and_needs_a_manifest(tmp_path):
    with pytest.raises(ValueError, match="onnxruntime"):
        RepositorySettings(engine="torch", quantize=True)
    with pytest.raises(UserFacingError, match="make testset"):
        build(
            str(BUNDLED_MODEL),
            tmp_path / "repo",
            RepositorySettings(quantize=True),
            plan=PlanOptions(manifest=tmp_path / "missing.jsonl"),
        )


def test_the_default_build_is_fp32_and_quantize_gives_int8(tmp_path, held_out, gates, capsys):
    plan = replace(gates, manifest=held_out[0])
    default = _settings()
    assert default.quantize is False and default == RepositorySettings(max_batch_size=4, threads=2)
    build(str(BUNDLED_MODEL), tmp_path / "default", default, plan=plan)
    assert not _is_int8(tmp_path / "default")
    assert "INT8" not in capsys.readouterr().out

    build(str(BUNDLED_MODEL), tmp_path / "int8", _settings("--quantize"), plan=plan)
    assert _is_int8(tmp_path / "int8")
    assert f"accuracy gate on {UTTERANCES} utterances: accepted" in capsys.readouterr().out

    # The same graph again, in another repository with another decoder: the gate's verdict is reused.
    build(str(BUNDLED_MODEL), tmp_path / "greedy", _settings("--quantize", "--decoder", "greedy"), plan=plan)
    assert _is_int8(tmp_path / "greedy")
    out = capsys.readouterr().out
    assert "accuracy gate of this INT8 graph" in out and "accepted" in out

    build(str(BUNDLED_MODEL), tmp_path / "fp32", _settings("--no-quantize"), plan=plan)
    assert not _is_int8(tmp_path / "fp32")


def test_a_build_gated_on_another_limit_is_not_taken_as_current(tmp_path, held_out, gates):
    repository = tmp_path / "repo"
    plan = replace(gates, manifest=held_out[0])
    build(str(BUNDLED_MODEL), repository, _settings("--quantize"), plan=plan)
    assert _is_int8(repository)
    refusing = replace(plan, max_cer_increase=-1)
    with pytest.raises(GateRefused):
        build(str(BUNDLED_MODEL), repository, _settings("--quantize"), plan=refusing)
    assert not (repository / STAMP).exists()
