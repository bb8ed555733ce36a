"""Where a plan's metadata lives: the JSON file beside it.

The builder writes it (TensorRT version, GPU, precision, profile, source graph), the route
installs it with the plan, and the plan guard reads it to refuse a plan of another TensorRT.
Standard library only: the guard runs in the Triton image.
"""

from __future__ import annotations

from pathlib import Path


def metadata_path(plan: Path) -> Path:
    """Where the metadata of ``plan`` lives: ``model.plan`` → ``model.plan.json``."""
    return plan.with_name(plan.name + ".json")
