"""The parity gate refuses an exported graph that disagrees with PyTorch, printing the numbers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from vaani.build.export import export_onnx
from vaani.build.parity import compare, probe_audio, require
from vaani.errors import UserFacingError
from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine


def _corrupt_projection(path, vocab_size: int) -> None:
    """Shuffle the vocabulary columns of the final projection: a wrong model that still runs."""
    model = onnx.load(str(path))
    for initializer in model.graph.initializer:
        weights = numpy_helper.to_array(initializer)
        if weights.ndim == 2 and vocab_size in weights.shape:
            axis = weights.shape.index(vocab_size)
            shuffled = np.roll(weights, 5, axis=axis)
            initializer.CopyFrom(numpy_helper.from_array(shuffled, initializer.name))
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def exported(bundled_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(bundled_model.model, bundled_model.uses_attention_mask, path)


def test_gate_accepts_the_faithful_export(bundled_model, exported):
    report = compare(
        bundled_model.logits,
        OnnxRuntimeEngine(exported),
        bundled_model.features,
        bundled_model.spec(),
        probe_audio(),
    )
    assert report.passed, report.describe()
    require(report)


def test_gate_rejects_a_model_that_disagrees(bundled_model, exported, tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(exported.read_bytes())
    _corrupt_projection(broken, bundled_model.spec().vocab_size)
    report = compare(
        bundled_model.logits,
        OnnxRuntimeEngine(broken),
        bundled_model.features,
        bundled_model.spec(),
        probe_audio(),
    )
    assert not report.passed
    assert report.max_abs_diff > report.tolerance
    with pytest.raises(UserFacingError, match="disagrees with PyTorch"):
        require(report)
    printed = capsys.readouterr().out
    assert "parity FAIL" in printed and "max |logit diff|" in printed
