"""The `onnxruntime` engine: the exported ONNX graph on ONNX Runtime's CPU provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxRuntimeEngine:
    def __init__(self, model: Path, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per physical core
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: under Triton they share the cores with
        # the other steps' processes, and a spinning thread steals the CPU they need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._takes_mask = any(i.name == "ATTENTION_MASK" for i in self._session.get_inputs())

    def __call__(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"INPUT_VALUES": values}
        if self._takes_mask:
            feeds["ATTENTION_MASK"] = mask
        return self._session.run(["LOGITS"], feeds)[0]
