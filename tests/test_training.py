"""`vaani train` end to end on a tiny corpus: it learns something and writes a servable model."""

from __future__ import annotations

import json

from vaani.build.hf_model import HfModel
from vaani.cli import main


def test_train_writes_a_save_pretrained_model_with_card(tmp_path):
    corpus = tmp_path / "corpus"
    sizes = ["--train-size", "24", "--validation-size", "4", "--test-size", "4"]
    assert main(["corpus", "--output", str(corpus), *sizes, "--workers", "2"]) == 0
    output = tmp_path / "model"
    args = ["train", "--corpus", str(corpus), "--output", str(output), "--device", "cpu", "--epochs", "2"]
    small = ["--hidden-size", "64", "--layers", "2", "--heads", "2", "--intermediate-size", "128"]
    assert main([*args, *small, "--conv-channels", "32", "--batch-seconds", "20", "--eval-every", "4"]) == 0

    for name in ("config.json", "model.safetensors", "vocab.json", "preprocessor_config.json", "README.md"):
        assert (output / name).is_file(), name
    plan = [json.loads(line) for line in (output / "testset.jsonl").read_text("utf-8").splitlines()]
    assert len(plan) == 4 and all({"text", "voice", "speed", "pitch"} <= set(p) for p in plan)
    model = HfModel.load(output)
    config = model.model.config
    assert config.feat_extract_norm == "layer" and config.do_stable_layer_norm
    assert model.uses_attention_mask
    report = json.loads((output / "training.json").read_text("utf-8"))
    assert report["steps"] > 0
    assert "CER" in (output / "README.md").read_text("utf-8")
