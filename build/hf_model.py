"""Loading a `Wav2Vec2ForCTC` with its processor, and the reference greedy transcripts.

The reference is the FP32 PyTorch model decoded by the model's own tokenizer: every
engine and precision is compared with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import SAMPLING_RATE


@dataclass
class HfModel:
    model: object
    tokenizer: object
    extractor: object

    @classmethod
    def load(cls, directory: Path) -> HfModel:
        from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

        model = Wav2Vec2ForCTC.from_pretrained(str(directory)).eval()  # from_pretrained may leave train mode
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(str(directory))
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
        return cls(model, tokenizer, extractor)

    @property
    def uses_attention_mask(self) -> bool:
        return bool(self.extractor.return_attention_mask)

    def spec(self) -> AcousticSpec:
        config = self.model.config
        by_id = {index: token for token, index in self.tokenizer.get_vocab().items()}
        tokens = tuple(by_id.get(i, "") for i in range(config.vocab_size))
        blank = self.tokenizer.pad_token_id
        delimiter = self.tokenizer.word_delimiter_token
        kept = {blank, self.tokenizer.convert_tokens_to_ids(delimiter)}
        return AcousticSpec(
            vocab_size=config.vocab_size,
            conv_kernel=tuple(config.conv_kernel),
            conv_stride=tuple(config.conv_stride),
            uses_attention_mask=self.uses_attention_mask,
            blank_id=blank,
            word_delimiter=delimiter,
            tokens=tokens,
            special_ids=tuple(sorted(set(self.tokenizer.all_special_ids) - kept)),
        )

    def features(self, audio: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Normalized, zero-padded batch and attention mask, by the model's own feature extractor."""
        batch = self.extractor(
            audio, sampling_rate=SAMPLING_RATE, padding=True, return_attention_mask=True, return_tensors="np"
        )
        return batch["input_values"].astype(np.float32), batch["attention_mask"].astype(np.int64)

    def logits(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            kwargs = {"attention_mask": torch.from_numpy(mask)} if self.uses_attention_mask else {}
            return self.model(torch.from_numpy(values), **kwargs).logits.numpy()

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        """Reference transcripts: FP32 PyTorch, argmax, the tokenizer's own CTC decode."""
        values, mask = self.features(audio)
        ids = self.logits(values, mask).argmax(-1)
        lengths = [self.spec_frames(len(a)) for a in audio]
        return [self.decode(row[:n]) for row, n in zip(ids, lengths)]

    def decode(self, ids: np.ndarray) -> str:
        """The tokenizer's plain `decode` (it merges repeats correctly), special tokens then removed.

        Not ``skip_special_tokens=True``: that drops ``<pad>`` before merging repeats.
        """
        text = self.tokenizer.decode(ids)
        for token in self.tokenizer.all_special_tokens:
            if token != self.tokenizer.word_delimiter_token:
                text = text.replace(token, "")
        return " ".join(text.split())

    def spec_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(samples))
