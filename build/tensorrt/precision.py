"""The precisions a plan can be built in.

A plan's precision lives in its ONNX graph (`half_precision`; TensorRT 11 builds strongly
typed networks only), so this is just the list of names: its own module because `vaani
build`'s options read it without loading onnx.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16")
