"""Hugging Face `Wav2Vec2ForCTC` → ONNX with the step's tensor names.

Opset 17 keeps LayerNormalization one node (TensorRT and ONNX Runtime fuse it and keep
it in FP32); batch and time axes are dynamic. The graph takes ``ATTENTION_MASK`` only
when the model's feature extractor asks for one, as `Wav2Vec2FeatureExtractor` does.

For ONNX Runtime on a CPU (``cpu_graph``) two parts of the model are traced in an equivalent
form that runs faster there (profile of one 10 s clip, base size, INT8 products, 1 thread:
convolutions 41 %, Transpose 15 %, Where 14 % of the run):

- the layer-norm feature encoder keeps time as rows: each convolution becomes one matrix
  product of its receptive fields (strided slices side by side), so its LayerNorm runs on the
  last axis as exported and the two Transposes around every LayerNorm disappear;
- attention is traced from the eager implementation, whose padding mask is one added bias,
  instead of SDPA's, which ONNX writes as a Where before and a Where after every softmax.

Both compute the same sums in another order; the build's parity gate compares the graph's
logits with PyTorch's, and transcripts are gated like every precision.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS, SAMPLING_RATE

OPSET = 17
# The one attention implementation whose padding mask ONNX writes as an added bias.
CPU_ATTENTION = "eager"
# Node names of the traced graph follow the module path under `_Logits` ("model").
FEATURE_ENCODER_SCOPE = "/model/wav2vec2/feature_extractor/"


def feature_encoder_nodes(graph) -> list[str]:
    """Names of the feature encoder's nodes in an exported ``graph`` (an `onnx.GraphProto`)."""
    return [node.name for node in graph.node if node.name.startswith(FEATURE_ENCODER_SCOPE)]


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


def _rows_conv_layer(layer):
    """A `Wav2Vec2LayerNormConvLayer` on (batch, time, channels): one matrix product per layer.

    Frame t of a convolution of kernel k and stride s reads input rows t·s … t·s+k-1. With
    k = q·s + r, the first q·s of them are q consecutive blocks of s rows, which a reshape of a
    slice of the input gives, and the last r are strided slices; side by side they are the
    frame's receptive field, and one product with the kernel laid out the same way is the
    convolution.
    """
    import torch

    conv = layer.conv
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    weight = conv.weight.detach()  # (out, in, kernel)
    full, rest = divmod(kernel, stride)
    blocks = [weight[:, :, j * stride : (j + 1) * stride] for j in range(full)]
    singles = [weight[:, :, full * stride + i : full * stride + i + 1] for i in range(rest)]
    # Rows of a block are (position, in-channel) pairs in the order the reshape lays them out.
    rows = torch.cat([w.permute(2, 1, 0).reshape(-1, weight.shape[0]) for w in blocks + singles])

    class RowsConvLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("kernel", rows.contiguous())
            self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone())
            self.layer_norm = layer.layer_norm
            self.activation = layer.activation

        def forward(self, x):
            batch, channels = x.shape[0], x.shape[2]
            frames = (x.shape[1] - kernel) // stride + 1
            span = stride * frames
            parts = [
                x[:, j * stride : j * stride + span].reshape(batch, frames, stride * channels)
                for j in range(full)
            ]
            first = full * stride  # the r last positions: one strided slice each
            parts += [x[:, first + i : first + i + span - stride + 1 : stride] for i in range(rest)]
            y = torch.matmul(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1), self.kernel)
            if self.bias is not None:
                y = y + self.bias
            return self.activation(self.layer_norm(y))

    return RowsConvLayer()


def _rows_feature_encoder(encoder):
    """The feature encoder with time as rows; it returns (batch, channels, frames) as HF's does.

    The transpose at its end meets the model's own transpose back, and ONNX Runtime drops the pair.
    """
    import torch

    layers = [_rows_conv_layer(layer) for layer in encoder.conv_layers]

    class RowsFeatureEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_layers = torch.nn.ModuleList(layers)

        def forward(self, input_values):
            hidden = input_values[:, :, None]
            for layer in self.conv_layers:
                hidden = layer(hidden)
            return hidden.transpose(1, 2)

    return RowsFeatureEncoder().eval()


@contextmanager
def cpu_form(model):
    """``model`` as the CPU graph traces it, restored on exit (it is also the build's reference).

    Only the layer-norm feature encoder (``feat_extract_norm="layer"``, indicwav2vec's and the
    bundled model's) is rewritten: the group-norm one normalizes over time and keeps its convolutions.
    The attention implementation is the config's, which every layer shares.
    """
    wav2vec2, attention = model.wav2vec2, model.config._attn_implementation
    encoder = wav2vec2.feature_extractor
    model.config._attn_implementation = CPU_ATTENTION
    if model.config.feat_extract_norm == "layer":
        wav2vec2.feature_extractor = _rows_feature_encoder(encoder)
    try:
        yield model
    finally:
        wav2vec2.feature_extractor = encoder
        model.config._attn_implementation = attention


def export_onnx(model, uses_mask: bool, path: Path, cpu_graph: bool = False) -> Path:
    """Trace ``model`` (eval mode, FP32) into ``path``; ``cpu_graph``: in `cpu_form`, for ONNX Runtime."""
    with cpu_form(model) if cpu_graph else nullcontext(model) as traced:
        return _export(traced, uses_mask, path)


def _export(model, uses_mask: bool, path: Path) -> Path:
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
