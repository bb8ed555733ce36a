"""`vaani build`: cached by content hash, and honest about an unreachable Hub."""

from __future__ import annotations

import pytest

from vaani.build import source
from vaani.build.pipeline import build
from vaani.build.repository import RepositorySettings
from vaani.errors import UserFacingError

from .conftest import BUNDLED_MODEL


def test_second_build_is_a_no_op(tmp_path, capsys):
    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4)
    build(str(BUNDLED_MODEL), repository, settings)
    onnx_file = repository / "wav2vec2" / "1" / "model.onnx"
    first = onnx_file.stat().st_mtime_ns
    assert "parity PASS" in capsys.readouterr().out
    assert all(
        (repository / step / "1" / "model.py").is_file() for step in ("preprocess", "wav2vec2", "ctc_decoder")
    )
    build(str(BUNDLED_MODEL), repository, settings)
    assert "nothing to do" in capsys.readouterr().out
    assert onnx_file.stat().st_mtime_ns == first
    build(str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=8))
    assert "max_batch_size: 8" in (repository / "asr" / "config.pbtxt").read_text()


def test_unreachable_hub_names_the_offline_model(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserFacingError, match="MODEL=models/tiny-hindi"):
        source.resolve("ai4bharat/indicwav2vec-hindi-not-cached")
