"""The accuracy gate with a pluggable runner: ONNX Runtime passes, a broken engine is refused."""

from __future__ import annotations

import numpy as np
import pytest

from vaani.build import accuracy_gate as engine_gate
from vaani.build import export
from vaani.build.hf_model import HfModel
from vaani.recipe.tiny_model import make_untrained
from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine


@pytest.fixture(scope="module")
def model_and_runner(tmp_path_factory):
    directory = make_untrained(tmp_path_factory.mktemp("tiny"), seed=3)
    hf = HfModel.load(directory)
    onnx_path = export.export_onnx(hf.model, hf.uses_attention_mask, directory / "model.onnx")
    return hf, OnnxRuntimeEngine(onnx_path, threads=1)


@pytest.fixture(scope="module")
def audio() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [0.3 * rng.standard_normal(n).astype(np.float32) for n in (9_600, 16_000, 20_800)]


def test_onnxruntime_runner_passes_the_gate(model_and_runner, audio, capsys):
    hf, runner = model_and_runner
    reference = [hf.transcribe([a])[0] for a in audio]
    assert any(reference), "the random model should emit some characters"
    candidate = engine_gate.transcribe(runner, audio, hf.spec(), bucket_samples=0)
    result = engine_gate.evaluate(reference, reference, candidate)
    engine_gate.require(result)
    assert result.passed and result.candidate_cer == pytest.approx(0.0, abs=0.002)
    assert "accepted" in capsys.readouterr().out


def test_broken_engine_is_refused_with_numbers(model_and_runner, audio, capsys):
    hf, runner = model_and_runner
    spec = hf.spec()

    def blank_runner(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        logits = runner(values, mask)
        out = np.zeros_like(logits)
        out[..., spec.blank_id] = 1.0  # every frame blank: empty transcripts
        return out

    reference = [hf.transcribe([a])[0] for a in audio]
    candidate = engine_gate.transcribe(blank_runner, audio, spec, bucket_samples=16_000)
    result = engine_gate.evaluate(reference, reference, candidate)
    with pytest.raises(engine_gate.GateRefused, match="percentage points"):
        engine_gate.require(result)
    printed = capsys.readouterr().out
    assert "REFUSED" in printed and "CER candidate engine:       1.0000" in printed


def test_threshold_is_two_tenths_of_a_point():
    assert engine_gate.DEFAULT_MAX_CER_INCREASE == 0.002
    at_limit = engine_gate.GateResult(10, 0.050, 0.052, 0.002, 1, 0.01)
    over = engine_gate.GateResult(10, 0.050, 0.0521, 0.002, 1, 0.01)
    assert at_limit.passed and not over.passed
    assert "+0.21 percentage points" in over.report()


def test_unlabeled_manifest_compares_with_the_reference():
    result = engine_gate.evaluate(["", ""], ["क ख", "ग"], ["क ख", "ग"])
    assert result.reference_cer == 0.0 and result.passed


def test_audio_bundle_round_trip(tmp_path, audio):
    engine_gate.save_audio_bundle(audio, tmp_path / "gate.npz")
    loaded = engine_gate.load_audio_bundle(tmp_path / "gate.npz")
    assert [a.shape for a in loaded] == [a.shape for a in audio]
    assert all(np.array_equal(a, b) for a, b in zip(audio, loaded, strict=True))
