"""Hugging Face `Wav2Vec2ForCTC` → ONNX with the step's tensor names.

Opset 17 keeps LayerNormalization one node (TensorRT and ONNX Runtime fuse it and keep
it in FP32); batch and time axes are dynamic. The graph takes ``ATTENTION_MASK`` only
when the model's feature extractor asks for one, as `Wav2Vec2FeatureExtractor` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS, SAMPLING_RATE

OPSET = 17


class _Logits:
    """Wraps the HF model so the exported graph has our names and returns bare logits."""

    @staticmethod
    def wrap(model, uses_mask: bool):
        import torch

        class WithMask(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_values, attention_mask):
                return self.model(input_values, attention_mask=attention_mask).logits

        class WithoutMask(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_values):
                return self.model(input_values).logits

        return WithMask() if uses_mask else WithoutMask()


def export_onnx(model, uses_mask: bool, path: Path) -> Path:
    """Trace ``model`` (eval mode, FP32) into ``path``."""
    import torch

    module = _Logits.wrap(model, uses_mask).eval()  # export restores the mode it found: keep it eval
    samples = SAMPLING_RATE
    values = torch.randn(2, samples)
    inputs: tuple = (values,)
    names = [INPUT_VALUES]
    axes = {INPUT_VALUES: {0: "batch", 1: "samples"}, LOGITS: {0: "batch", 1: "frames"}}
    if uses_mask:
        inputs = (values, torch.ones(2, samples, dtype=torch.int64))
        names.append(ATTENTION_MASK)
        axes[ATTENTION_MASK] = {0: "batch", 1: "samples"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=names,
            output_names=[LOGITS],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path
