"""The layers point one way, and the serving core stands apart from everything else."""

from __future__ import annotations

import ast
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
    ("vaani.errors", "vaani.audio", "vaani.manifest", "vaani.scoring", "vaani.__version__"),
    ("vaani.build",),
    ("vaani.client",),
    ("vaani.server",),
    ("vaani.recipe",),
    ("vaani.loadtest",),
    ("vaani.benchmarks",),
    ("vaani.cli",),
)


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
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
    INVALID_ARG = 3
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

class Request(dict):
    def requested_output_names(self):
        return ["TRANSCRIPT"]

utils.TritonError, utils.Tensor, utils.InferenceResponse = TritonError, Tensor, InferenceResponse
utils.get_input_tensor_by_name = lambda request, name: request.get(name)
sys.modules["triton_python_backend_utils"] = utils
"""


def test_serving_core_runs_every_step_without_tooling_or_heavy_imports(tmp_path):
    """Import the core and run each step's `execute` as Triton would: nothing of the tooling loads,
    and no heavy module beyond numpy and the chosen engine's runtime (ONNX Runtime)."""
    from vaani.build.pipeline import build
    from vaani.build.repository import RepositorySettings

    from .conftest import BUNDLED_MODEL

    repository = tmp_path / "repo"
    build(str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=4))
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

def initialize(model, step, parameters):
    model.initialize({{
        "model_config": json.dumps(
            {{"name": step, "parameters": {{k: {{"string_value": str(v)}} for k, v in parameters.items()}}}}
        ),
        "model_repository": str(repo / step), "model_version": "1",
    }})
    return model

pre = initialize(load("preprocess"), "preprocess", {{"min_samples": 400, "max_samples": 160000}})
acoustic = initialize(load("wav2vec2"), "wav2vec2", {{"engine": "onnxruntime", "threads": 1}})
decoder = initialize(load("ctc_decoder"), "ctc_decoder", {{}})
audio = (0.1 * np.random.default_rng(0).standard_normal((1, 16000))).astype(np.float32)
(out,) = pre.execute([Request(AUDIO=Tensor("AUDIO", audio))])
tensors = {{t.name: t for t in out.outputs}}
(logits,) = acoustic.execute([Request(tensors)])
assert logits.error is None, logits.error
(text,) = decoder.execute([Request(LOGITS=logits.outputs[0], NUM_SAMPLES=tensors["NUM_SAMPLES"])])
assert text.outputs[0].name == "TRANSCRIPT"
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
    from vaani.serving.contract import STEPS

    for step in STEPS:
        assert (ROOT / "model_repository" / step / "1" / "model.py").read_bytes() == source
