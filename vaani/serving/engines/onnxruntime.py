"""The `onnxruntime` engine: the exported ONNX graph on ONNX Runtime's CPU provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS
from vaani.serving.engines.base import Engine

# Each row runs alone, over its valid samples only. Measured on this project's 2-core CPU (2026-12-05,
# shared, bundled model, 10 windows of 24 s, 2 threads, 3 interleaved rounds): one window per run
# 29-37x real time, all ten in one run 21-22x (without the memory arena every run maps and faults in
# its activations afresh). A small run's activations stay in cache, and on a CPU one row already fills
# the cores, so larger runs buy nothing. And a row alone gets logits that do not depend on the rows
# beside it: a dynamically quantized (INT8) graph scales each activation tensor by its own range, so
# in a padded batch one request's transcript moved with the requests batched with it.


class OnnxRuntimeEngine(Engine):
    def __init__(
        self,
        model: Path,
        threads: int = 0,
        memory_arena: bool = False,
        frames: Callable[[int], int] | None = None,
    ) -> None:
        """``frames``: the model's frames for a number of samples (its `AcousticSpec`), so that a batch's
        logits span its whole width; without it they span its longest valid row."""
        self._frames = frames
        options = ort.SessionOptions()
        # Without the arena, memory of a large batch goes back to the allocator after the run
        # instead of staying reserved for the life of the process.
        options.enable_cpu_mem_arena = memory_arena
        options.intra_op_num_threads = threads  # 0: one per physical core
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: under Triton they share the cores with
        # the other steps' processes, and a spinning thread steals the CPU they need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._takes_mask = any(i.name == ATTENTION_MASK for i in self._session.get_inputs())

    def take(self, tensor: Any) -> np.ndarray:
        return tensor if isinstance(tensor, np.ndarray) else tensor.as_numpy()

    def zeros(self, rows: int, samples: int) -> np.ndarray:
        return np.zeros((rows, samples), dtype=np.float32)

    def forward(self, batch: np.ndarray, lengths: list[int]) -> np.ndarray:
        rows = [self._run(batch[i : i + 1, :n], [n]) for i, n in enumerate(lengths)]
        frames = self._frames(batch.shape[1]) if self._frames else max(r.shape[1] for r in rows)
        out = np.zeros((len(rows), frames, rows[0].shape[2]), dtype=rows[0].dtype)
        for i, logits in enumerate(rows):  # the frames past a row's valid samples stay zero: padding
            out[i, : logits.shape[1]] = logits[0, :frames]
        return out

    def _run(self, batch: np.ndarray, lengths: list[int]) -> np.ndarray:
        feeds = {INPUT_VALUES: batch}
        if self._takes_mask:
            feeds[ATTENTION_MASK] = (
                np.arange(batch.shape[1])[None, :] < np.asarray(lengths)[:, None]
            ).astype(np.int64)
        return self._session.run([LOGITS], feeds)[0]
