"""Small helpers shared by the `model.py` files of the python-backend steps."""

from __future__ import annotations

import json
from pathlib import Path

from vaani.acoustic import AcousticSpec


class StepContext:
    """What a step learns from Triton's ``initialize(args)``: its parameters and files."""

    def __init__(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.name: str = config["name"]
        self.parameters: dict[str, str] = {
            key: value["string_value"] for key, value in config.get("parameters", {}).items()
        }
        self.version_dir = Path(args["model_repository"]) / args["model_version"]
        self.instance_kind: str = args.get("model_instance_kind", "CPU")
        self.device_id = int(args.get("model_instance_device_id", "0"))

    def spec(self) -> AcousticSpec:
        return AcousticSpec.load(self.version_dir / "acoustic.json")

    def number(self, key: str, default: float) -> float:
        return float(self.parameters.get(key, default))
