"""Greedy CTC decoding of the `ctc_decoder` step."""

from __future__ import annotations

import numpy as np

from vaani.serving.acoustic import AcousticSpec


class GreedyDecoder:
    """Best path: argmax per frame, merge repeats, then drop blanks and special tokens.

    ``|`` becomes a space; words come out separated by single spaces. The order matters:
    ``क <pad> क`` is two letters. (transformers' ``decode(skip_special_tokens=True)`` drops
    ``<pad>`` before merging and returns one; its plain ``decode`` agrees with this.)
    """

    def __init__(self, spec: AcousticSpec) -> None:
        self._spec = spec
        dropped = set(spec.special_ids) | {spec.blank_id}
        self._text = [
            "" if index in dropped else (" " if token == spec.word_delimiter else token)
            for index, token in enumerate(spec.tokens)
        ]

    def decode_ids(self, ids: np.ndarray) -> str:
        """Decode one utterance's per-frame token ids."""
        if ids.size == 0:
            return ""
        keep = np.ones(ids.shape, dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        text = "".join(self._text[i] for i in ids[keep])
        return " ".join(text.split())

    def decode(
        self, logits: np.ndarray, num_samples: np.ndarray, breaks: list[int] | None = None
    ) -> list[str]:
        """Decode a batch ``[batch, frames, vocab]``; frames past each utterance's length are padding.

        ``breaks`` are frames where decoding starts afresh (the pauses a long recording was cut
        at): each part is decoded on its own, so a word never runs across a pause.
        """
        ids = logits.argmax(axis=-1)
        starts = breaks or [0]
        texts = []
        for row, samples in zip(ids, num_samples.reshape(-1)):
            frames = self._spec.frames(int(samples))
            parts = zip(starts, [*starts[1:], frames])
            texts.append(" ".join(text for a, b in parts if (text := self.decode_ids(row[a:b]))))
        return texts
