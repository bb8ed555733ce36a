"""The buckets of the packed transformer's CUDA graphs, and the premise that makes them exact.

Capture and replay need a GPU (the GPU benchmark checks the graphs' logits and transcripts against
FP32, and each graph is checked against its first run when captured). What CI can check is what
the graphs rest on: the buckets bound the padding, and the transformer treats its rows apart, so
rows past a run's tokens, whatever they hold, change none of the run's logits.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2ForCTC

from vaani.recipe.tiny_model import tiny_config
from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions
from vaani.serving.engines.torch_graphs import TOKEN_STEP, UTTERANCES, EncoderGraphs, token_bucket
from vaani.serving.engines.torch_packing import DevicePacking, Packing

WAV2VEC2 = ((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))


def test_token_buckets_hold_a_run_with_under_an_eighth_of_padding() -> None:
    buckets = [token_bucket(tokens) for tokens in range(1, 20_000)]
    for tokens, bucket in enumerate(buckets, start=1):
        assert bucket >= tokens and bucket % TOKEN_STEP == 0
        assert bucket - tokens < max(TOKEN_STEP, tokens / 8)
    assert buckets == sorted(buckets)
    assert len(set(buckets[:6_000])) <= 40  # 120 s of audio: few graphs to capture


def _index(seconds: list[float]) -> DevicePacking:
    packing = Packing(tuple(round(s * 16_000) for s in seconds), *WAV2VEC2)
    return DevicePacking.of(packing, torch.device("cpu"), gap=64)


def test_runs_of_up_to_32_utterances_within_120_s_replay_a_graph() -> None:
    graphs = EncoderGraphs(lambda x, index: x, torch.device("cpu"), max_tokens=5_999, pool=None)
    assert graphs.fits(_index([3.0] * 32)) and not graphs.fits(_index([1.0] * 33))
    assert graphs.fits(_index([20.0] * 4)) and not graphs.fits(_index([30.0] * 4))  # bucket 6,144
    buckets = graphs.buckets()
    assert buckets == sorted(set(token_bucket(n) for n in range(1, buckets[-1] + 1)))
    assert buckets[-1] <= 5_999 < token_bucket(buckets[-1] + 1)
    assert len(buckets) <= 40  # what `TorchEngine.warm` captures before the model is ready


def test_warm_up_runs_fill_each_bucket_exactly_with_utterances_no_longer_than_asked() -> None:
    """`TorchEngine.warm` captures a bucket with a run whose tokens are the bucket's (so the capture
    is the graph later runs replay), in utterances a served row could be."""
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(tiny_config()).eval()
    engine = TorchEngine(model, "cpu", TorchEngineOptions(dtype="float32"))
    assert engine.ctc.receptive_field == 400 and engine.ctc.stride == 320  # wav2vec2's, as Hugging Face's
    assert int(model._get_feat_extract_output_lengths(400)) == 1
    for tokens in (64, 448, 1_152, 5_632):
        index = engine._synthetic_index(tokens, 512)
        assert index.packing.tokens == tokens == token_bucket(tokens)
        assert index.max_frames <= 512 and len(index.packing.samples) <= 32
    engine.warm()  # no graphs on a CPU: nothing to capture
    assert engine.encoder_graphs is None


@pytest.mark.parametrize(
    "overrides",
    [{}, {"do_stable_layer_norm": False, "feat_extract_norm": "layer"}],
    ids=["stable", "post-norm"],
)
def test_rows_past_a_runs_tokens_change_none_of_its_logits(overrides: dict) -> None:
    """What a graph's bucket adds: rows of stale values past the run's tokens, and utterances
    without frames at the end of its boundaries."""
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(tiny_config(**overrides)).eval()
    engine = TorchEngine(copy.deepcopy(model), "cpu", TorchEngineOptions(dtype="float32"))
    ctc = engine.ctc
    rng = np.random.default_rng(2)
    lengths = (16_000, 7_300, 11_111)
    packing = Packing(lengths, ctc.kernels, ctc.strides)
    index = DevicePacking.of(packing, torch.device("cpu"), gap=ctc.pos_conv.conv.padding[0])
    audio = torch.from_numpy(rng.standard_normal(packing.total_samples).astype(np.float32))
    tokens: list[torch.Tensor] = []

    def keep(x: torch.Tensor, index: DevicePacking) -> torch.Tensor:
        tokens.append(x)
        return ctc.packed_encoder(x, index)

    with torch.inference_mode():
        expected = ctc.packed(audio, packing, index, keep)
        x = tokens[0]
        stale = torch.from_numpy(rng.standard_normal((token_bucket(len(x)) - len(x), x.shape[1])) * 50)
        bucket = torch.cat([x, stale.to(x.dtype)])
        empty = UTTERANCES + 1 - len(index.cu_seqlens)
        boundaries = torch.cat([index.cu_seqlens, torch.full((empty,), len(x), dtype=torch.int32)])
        got = ctc.packed_encoder(bucket, dataclasses.replace(index, cu_seqlens=boundaries))
    assert len(bucket) > len(x)
    torch.testing.assert_close(got[: len(x)], expected, atol=1e-5, rtol=1e-5)
