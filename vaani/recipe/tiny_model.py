"""`models/tiny-hindi/`: a small wav2vec2 CTC model with indicwav2vec-hindi's alphabet.

Shapes follow the real model's family (layer-norm feature encoder, stable layer norm,
320-sample hop, an attention mask), scaled down so the whole pipeline runs offline in
seconds. `make_untrained` gives random weights; the training script replaces them.
"""

from __future__ import annotations

import json
from pathlib import Path

from vaani.recipe import hindi
from vaani.serving.contract import SAMPLING_RATE


def tiny_config(**overrides):
    from transformers import Wav2Vec2Config

    vocab = hindi.ctc_vocabulary()
    settings = dict(
        vocab_size=len(vocab),
        hidden_size=144,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=384,
        conv_dim=(64, 64, 64, 64, 64, 96, 96),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=8,
        pad_token_id=vocab[hindi.PAD],
        bos_token_id=vocab[hindi.BOS],
        eos_token_id=vocab[hindi.EOS],
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        mask_time_prob=0.05,
        layerdrop=0.0,
    )
    settings.update(overrides)
    return Wav2Vec2Config(**settings)


def save_processor(directory: Path) -> None:
    """Tokenizer and feature extractor files, as `Wav2Vec2Processor.save_pretrained` writes them."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.json"
    vocab_file.write_text(json.dumps(hindi.ctc_vocabulary(), ensure_ascii=False, indent=1), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file),
        unk_token=hindi.UNK,
        pad_token=hindi.PAD,
        bos_token=hindi.BOS,
        eos_token=hindi.EOS,
        word_delimiter_token=hindi.WORD_DELIMITER,
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(directory))
    extractor.save_pretrained(str(directory))  # preprocessor_config.json, read by every transformers version


def make_untrained(directory: Path, seed: int = 0) -> Path:
    """Write a randomly initialised tiny model in `save_pretrained` layout."""
    import torch
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(tiny_config())
    model.save_pretrained(str(directory), safe_serialization=True)
    save_processor(directory)
    return directory
