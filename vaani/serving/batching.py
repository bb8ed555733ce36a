"""Ragged batching for the python-backend engines: which requests share one padded run.

Triton's dynamic batcher hands the `wav2vec2` step requests of different lengths in one
`execute()` (``allow_ragged_batch``). They are padded to a common length and run together;
each request then gets back exactly its own frames. Sorting by length and cutting where
padding would exceed ``max_padding`` keeps a 2 s clip from paying for a 15 s one.
"""

from __future__ import annotations

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


def prefix_lengths(mask: np.ndarray) -> list[int]:
    """Valid samples per row of an attention mask that is ones, then zeros.

    That is the mask the `preprocess` step writes (and the only thing the model reads from
    a mask is its sum), so a binary search for the first zero reads ~18 elements of a
    10 s row instead of summing all 160,000 of them.
    """
    lengths = []
    for row in mask:
        low, high = 0, row.shape[0]
        if high == 0 or row[high - 1] != 0:
            lengths.append(high)
            continue
        while low < high:  # first index whose value is 0
            middle = (low + high) // 2
            if row[middle] != 0:
                low = middle + 1
            else:
                high = middle
        lengths.append(low)
    return lengths


def turn_end(samples: list[int], start: int, budget: int) -> int:
    """One past the last window of a request's turn: from ``start``, windows of ``samples`` each
    (0 for one that is not run) while they hold at most ``budget`` samples, and one window at
    least. ``budget`` 0 takes every window: the whole request in one turn.

    A turn is what `wav2vec2` runs of one request per round (`vaani.serving.steps.turns`), so a
    long recording shares each engine run with the requests that arrived meanwhile.
    """
    end, spent = start, 0
    while end < len(samples) and (budget <= 0 or end == start or spent + samples[end] <= budget):
        spent += samples[end]
        end += 1
    return end
