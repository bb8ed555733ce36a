"""One strategy per engine: what `vaani build` installs for the `wav2vec2` step, what `vaani serve` runs.

The pipeline (`vaani.build.pipeline`) is the same for every engine: resolve the model, load the
FP32 reference, let the engine's strategy install its artifact (gated against the reference),
write the configs, stamp the cache. A new engine is a strategy here, a config function in
`vaani.build.repository` and, for python-backend engines, an `Engine` in `vaani.serving.engines`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from vaani.build import export
from vaani.build.hf_model import HfModel
from vaani.build.parity import compare, probe_audio, require
from vaani.build.repository import RepositorySettings
from vaani.build.tensorrt.route import PlanOptions, check_buildable, triton_tag
from vaani.build.tensorrt.route import build_and_install as build_plan
from vaani.errors import UserFacingError
from vaani.gpu import gpu_info
from vaani.serving.contract import ACOUSTIC, version_dir


class EngineBuild(ABC):
    name: ClassVar[str]

    def preflight(self, settings: RepositorySettings, plan: PlanOptions) -> None:  # noqa: B027 (optional)
        """Refuse, before any work, what this engine cannot build here (one line, next command)."""

    @abstractmethod
    def install(
        self, hf: HfModel, target: Path, settings: RepositorySettings, plan: PlanOptions
    ) -> list[Path]:
        """Put the engine's artifact into the step's version folder ``target``; return its files."""

    def check_servable(self, repository: Path) -> None:  # noqa: B027 (optional)
        """Refuse `vaani serve` (the pip tritonserver, this machine) when it cannot run this engine."""


class OnnxRuntimeBuild(EngineBuild):
    name = "onnxruntime"

    def install(
        self, hf: HfModel, target: Path, settings: RepositorySettings, plan: PlanOptions
    ) -> list[Path]:
        onnx_path = target / "model.onnx"
        print(f"exporting ONNX (opset {export.OPSET}) → {onnx_path}")
        export.export_onnx(hf.model, hf.uses_attention_mask, onnx_path, cpu_graph=True)
        from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

        require(compare(hf.logits, OnnxRuntimeEngine(onnx_path), hf.features, hf.spec(), probe_audio()))
        return [onnx_path]


class TorchBuild(EngineBuild):
    """The `torch` engine needs no export: it loads the model's own weights (`hf/`).

    The gate runs the engine's forward on the CPU in FP32 against the reference, which checks
    the engine's code and the saved files; its half precision is judged on a GPU
    (`vaani.benchmarks.gpu_benchmark`), since the build machine may have none.
    """

    name = "torch"

    def install(
        self, hf: HfModel, target: Path, settings: RepositorySettings, plan: PlanOptions
    ) -> list[Path]:
        from vaani.serving.engines.torch_engine import TorchEngine, TorchEngineOptions, save_model

        saved = save_model(hf.model, target)
        print(f"saved the model for the torch engine → {saved}")
        engine = TorchEngine.load(saved, "cpu", TorchEngineOptions(dtype="float32"))
        require(compare(hf.logits, engine, hf.features, hf.spec(), probe_audio()))
        return [saved / "model.safetensors"]

    def check_servable(self, repository: Path) -> None:
        if gpu_info() is None:
            raise UserFacingError(
                "the torch engine serves on a CUDA GPU and nvidia-smi finds none here: "
                "serve with --engine onnxruntime (ENGINE=onnxruntime make serve)"
            )


class TensorRTBuild(EngineBuild):
    name = "tensorrt"

    def preflight(self, settings: RepositorySettings, plan: PlanOptions) -> None:
        check_buildable(settings, plan, _tag())

    def install(
        self, hf: HfModel, target: Path, settings: RepositorySettings, plan: PlanOptions
    ) -> list[Path]:
        return build_plan(hf, target, settings, plan)

    def check_servable(self, repository: Path) -> None:
        plan = version_dir(repository, ACOUSTIC) / "model.plan"
        if not plan.is_file():
            raise UserFacingError(
                f"no TensorRT plan in {repository}: build it with `make engine`, then serve it with "
                "`docker compose up` (the tritonserver of `vaani serve` has no TensorRT backend)"
            )
        raise UserFacingError(
            f"the tritonserver of `vaani serve` has no TensorRT backend: serve {plan} with "
            f"`TRITON_TAG={_tag()} docker compose up`"
        )


def _tag() -> str:
    return triton_tag(dict(os.environ))


ENGINE_BUILDS: dict[str, EngineBuild] = {
    b.name: b for b in (OnnxRuntimeBuild(), TorchBuild(), TensorRTBuild())
}
