"""The layers point one way, and the serving core stands apart from everything else."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Where each import name lives on disk (the `package-dir` of pyproject.toml).
SOURCES = {
    "vaani": ROOT / "vaani",
    "vaani.build": ROOT / "build",
    "vaani.client": ROOT / "client",
    "vaani.loadtest": ROOT / "loadtest",
    "vaani.benchmarks": ROOT / "benchmarks",
}

# Lowest first: a module may import its own layer or a lower one, never a higher one.
LAYERS = (
    ("vaani.serving",),
    (
        "vaani.errors",
        "vaani.audio",
        "vaani.manifest",
        "vaani.scoring",
        "vaani.subtitles",
        "vaani.__version__",
    ),
    ("vaani.build",),
    ("vaani.client",),
    ("vaani.gateway",),
    ("vaani.server",),
    ("vaani.recipe",),
    ("vaani.loadtest",),
    ("vaani.benchmarks",),
    ("vaani.stack",),
    ("vaani.cli",),
)


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _build_output(folder: Path, relative: Path) -> bool:
    """setuptools builds a wheel in-tree, under ``build/lib`` and ``build/bdist.*`` (git-ignored; the
    non-editable install test makes them): copies of the project, not modules of `vaani.build`."""
    top = relative.parts[0]
    return folder == SOURCES["vaani.build"] and (top == "lib" or top.startswith("bdist."))


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            if _build_output(folder, relative):
                continue
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            modules[name or package] = path
    return modules


def imported(path: Path) -> set[str]:
    """Every `vaani` module ``path`` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names |= {f"{base}.{a.name}" if base in ("vaani", "vaani.build") else base for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n == "vaani" or n.startswith("vaani.")}


def test_no_import_climbs_to_a_higher_layer():
    modules = project_modules()
    assert "vaani.serving.contract" in modules and "vaani.build.pipeline" in modules
    climbs = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, path in modules.items()
        if name != "vaani"
        for target in imported(path)
        if layer_of(target) > layer_of(name)
    ]
    assert not climbs, "\n".join(climbs)


STAND_IN = """
import sys, types, json
import numpy as np

# Stand-in for the module Triton's stub provides; only what the steps call.
utils = types.ModuleType("triton_python_backend_utils")

class TritonError(Exception):
    INVALID_ARG, CANCELLED = 3, 10
    def __init__(self, message, code=0):
        super().__init__(message)

class Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array
    def as_numpy(self):
        return self.array

class InferenceResponse:
    def __init__(self, output_tensors=(), error=None):
        self.outputs, self.error = list(output_tensors), error

    def has_error(self):
        return self.error is not None


class InferenceRequest:
    # BLS: the request goes to the named model's `execute`, as Triton would route it.

    models = {}

    def __init__(self, model_name, requested_output_names, inputs):
        self.model_name, self.inputs = model_name, inputs

    async def async_exec(self):
        (response,) = self.models[self.model_name].execute([Request({t.name: t for t in self.inputs})])
        return response

class Request(dict):
    def is_cancelled(self):
        return False

    def requested_output_names(self):
        return ["TRANSCRIPT"]

utils.TritonError, utils.Tensor, utils.InferenceResponse = TritonError, Tensor, InferenceResponse
utils.InferenceRequest = InferenceRequest
utils.get_input_tensor_by_name = lambda request, name: request.get(name)
utils.get_output_tensor_by_name = lambda response, name: next(t for t in response.outputs if t.name == name)
sys.modules["triton_python_backend_utils"] = utils
"""


def test_serving_core_runs_every_step_without_tooling_or_heavy_imports(tmp_path):
    """Import the core and run each step's `execute` as Triton would: nothing of the tooling loads,
    and no heavy module beyond numpy and the chosen engine's runtime (ONNX Runtime)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from vaani.build.pipeline import build
    from vaani.build.repository import RepositorySettings

    from .conftest import BUNDLED_MODEL

    repository = tmp_path / "repo"
    build(str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=4, threads=1))
    parameters = {}
    for step in ("preprocess", "wav2vec2", "ctc_decoder"):
        config = text_format.Parse((repository / step / "config.pbtxt").read_text(), mc.ModelConfig())
        parameters[step] = {key: value.string_value for key, value in config.parameters.items()}
    # `windows` serves only a TensorRT plan; it runs here against a stand-in with the plan's tensors.
    windows_keys = ("chunk_samples", "context_samples", "pause_samples", "max_samples", "decoder_input")
    parameters["windows"] = {key: parameters["wav2vec2"][key] for key in windows_keys}
    parameters["windows"]["acoustic_inputs"] = "INPUT_VALUES,ATTENTION_MASK"
    code = (
        STAND_IN
        + f"""
from pathlib import Path
repo = Path({str(repository)!r})

import importlib.util
def load(step):
    spec = importlib.util.spec_from_file_location("model", repo / step / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()

def initialize(model, step, parameters, folder=None):
    model.initialize({{
        "model_config": json.dumps(
            {{"name": step, "parameters": {{k: {{"string_value": str(v)}} for k, v in parameters.items()}}}}
        ),
        "model_repository": str(repo / (folder or step)), "model_version": "1",
    }})
    return model

class PlanStandIn:
    # What Triton runs for a TensorRT plan: INPUT_VALUES and ATTENTION_MASK in, LOGITS out.
    def __init__(self, engine):
        self.engine = engine

    def execute(self, requests):
        arrays = [(r["INPUT_VALUES"].array, r["ATTENTION_MASK"].array) for r in requests]
        return [InferenceResponse([Tensor("LOGITS", self.engine(*pair))]) for pair in arrays]

parameters = json.loads({json.dumps(parameters)!r})
pre = initialize(load("preprocess"), "preprocess", parameters["preprocess"])
acoustic = initialize(load("wav2vec2"), "wav2vec2", parameters["wav2vec2"])
decoder = initialize(load("ctc_decoder"), "ctc_decoder", parameters["ctc_decoder"])
audio = (0.1 * np.random.default_rng(0).standard_normal((1, 16000))).astype(np.float32)
(out,) = pre.execute([Request(AUDIO=Tensor("AUDIO", audio))])
tensors = {{t.name: t for t in out.outputs}}
(tokens,) = acoustic.execute([Request(tensors)])
assert tokens.error is None, tokens.error
inputs = {{k: tensors[k] for k in ("NUM_SAMPLES", "WINDOW_PLAN")}}
(text,) = decoder.execute([Request(**{{tokens.outputs[0].name: tokens.outputs[0]}}, **inputs)])
assert text.outputs[0].name == "TRANSCRIPT"

from vaani.serving.steps.windows import TritonPythonModel as Windows
windows = initialize(Windows(), "windows", parameters["windows"], folder="wav2vec2")
InferenceRequest.models["wav2vec2"] = PlanStandIn(acoustic.engine)
import asyncio
(through_plan,) = asyncio.run(windows.execute([Request(tensors)]))
assert through_plan.error is None, through_plan.error
assert np.array_equal(through_plan.outputs[0].array, tokens.outputs[0].array)
(bad,) = pre.execute([Request(AUDIO=Tensor("AUDIO", audio[:, :10]))])
assert bad.error is not None

tooling = ("vaani.build", "vaani.client", "vaani.loadtest", "vaani.recipe", "vaani.benchmarks")
tooling += ("vaani.server", "vaani.cli")
loaded = sorted(m for m in sys.modules if m.startswith(tooling))
assert not loaded, loaded
heavy = ("torch", "transformers", "onnx", "jiwer", "tritonclient", "scipy")
heavy = sorted(m for m in heavy if m in sys.modules)
assert not heavy, heavy
print("ok")
"""
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_tracked_step_files_are_the_installed_ones():
    """`vaani build` installs `vaani/serving/steps/model.py` into every step; the tracked copies equal it."""
    source = (ROOT / "vaani" / "serving" / "steps" / "model.py").read_bytes()
    from vaani.serving.contract import ENSEMBLE_STEPS

    for step in ENSEMBLE_STEPS:  # `windows` is written only for a TensorRT plan
        assert (ROOT / "model_repository" / step / "1" / "model.py").read_bytes() == source
