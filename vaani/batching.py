"""Ragged batching for the python-backend acoustic engines.

Triton's dynamic batcher hands the `wav2vec2` step requests of different lengths in one
`execute()` (``allow_ragged_batch``). They are padded to a common length with an
attention mask and run together; each request then gets back exactly its own frames.
Sorting by length and cutting where padding would exceed ``max_padding`` keeps a 2 s
clip from paying for a 15 s one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Group:
    """Requests run in one engine call, padded to ``samples``."""

    requests: tuple[int, ...]
    samples: int


def plan_groups(lengths: list[int], rows: list[int], max_padding: float) -> list[Group]:
    """Split requests (by index) into groups whose padded samples stay within ``max_padding``.

    ``max_padding`` is the fraction of the group's padded samples that may be padding;
    1.0 puts everything in one group.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    groups: list[Group] = []
    members: list[int] = []
    for index in order:
        candidate = [*members, index]
        longest = lengths[candidate[0]]
        real = sum(lengths[i] * rows[i] for i in candidate)
        padded = longest * sum(rows[i] for i in candidate)
        if members and 1 - real / padded > max_padding:
            groups.append(Group(tuple(members), lengths[members[0]]))
            candidate = [index]
        members = candidate
    if members:
        groups.append(Group(tuple(members), lengths[members[0]]))
    return groups


def run_ragged(
    values: list[np.ndarray],
    masks: list[np.ndarray],
    engine: Callable[[np.ndarray, np.ndarray], np.ndarray],
    frames: Callable[[int], int],
    max_padding: float = 1.0,
) -> list[np.ndarray]:
    """Run ``engine`` over requests of different lengths; return each request's logits.

    ``values[i]`` and ``masks[i]`` are ``[rows_i, samples_i]``; the result ``i`` is
    ``[rows_i, frames(samples_i), vocab]``, equal to running request ``i`` alone.
    """
    lengths = [v.shape[1] for v in values]
    rows = [v.shape[0] for v in values]
    results: list[np.ndarray | None] = [None] * len(values)
    for group in plan_groups(lengths, rows, max_padding):
        total = sum(rows[i] for i in group.requests)
        batch = np.zeros((total, group.samples), dtype=np.float32)
        mask = np.zeros((total, group.samples), dtype=np.int64)
        start = 0
        spans = []
        for i in group.requests:
            stop = start + rows[i]
            batch[start:stop, : lengths[i]] = values[i]
            mask[start:stop, : lengths[i]] = masks[i]
            spans.append((i, start, stop))
            start = stop
        logits = engine(batch, mask)
        for i, first, last in spans:
            results[i] = np.ascontiguousarray(logits[first:last, : frames(lengths[i])])
    return results  # type: ignore[return-value]
