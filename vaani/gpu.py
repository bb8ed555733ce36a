"""Whether this machine has an NVIDIA GPU, and which: the first one `nvidia-smi` lists.

Not TensorRT's: `vaani serve` asks it to start tritonserver as a CPU-only server, the torch
engine's build strategy asks it before that engine is served, the TensorRT route before it
picks where to build, and the builder records it in a plan's metadata. Standard library
only, because that builder runs in the TensorRT image, where vaani is installed without its
dependencies.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str


def gpu_info() -> GpuInfo | None:
    """First GPU as `nvidia-smi` reports it; None when there is no NVIDIA GPU or driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        return None
    name, _, capability = lines[0].rpartition(",")
    return GpuInfo(name.strip(), capability.strip())
