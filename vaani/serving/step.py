"""What a python-backend step learns from Triton's ``initialize(args)``: its parameters and files.

Numpy only, so it imports anywhere; what a step reads from and answers to each request is
`vaani.serving.steps.boundary`, which needs Triton's stub.
"""

from __future__ import annotations

import json
from pathlib import Path

from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import SPEC_FILE
from vaani.serving.windowing import Windowing


class StepContext:
    def __init__(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.name: str = config["name"]
        self.max_batch_size: int = int(config.get("max_batch_size", 0))  # what one execution holds
        self.parameters: dict[str, str] = {
            key: value["string_value"] for key, value in config.get("parameters", {}).items()
        }
        self.version_dir = Path(args["model_repository"]) / args["model_version"]
        self.instance_kind: str = args.get("model_instance_kind", "CPU")
        self.device_id = int(args.get("model_instance_device_id", "0"))

    def spec(self) -> AcousticSpec:
        return AcousticSpec.load(self.version_dir / SPEC_FILE)

    def number(self, key: str, default: float) -> float:
        return float(self.parameters.get(key, default))

    def windowing(self) -> Windowing:
        """The plan `vaani build` wrote as parameters (chunk, context and pause, in samples)."""
        chunk, context, pause = (int(self.parameters[f"{k}_samples"]) for k in ("chunk", "context", "pause"))
        return Windowing(chunk, context, pause, self.spec())

    def max_samples(self) -> int:
        """The longest recording the repository takes (``--max-audio-seconds``), in samples.

        Written by `vaani build` beside the window layout for every step, so no step keeps a default
        of its own that could disagree with the build's.
        """
        return int(self.parameters["max_samples"])
