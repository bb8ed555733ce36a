"""The layers point one way, no imports run in a ring, and the serving core stands apart from the rest."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Collection
from functools import cache
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

# Lowest first: a module may import its own layer or a lower one, never a higher one. The root
# package `vaani` itself holds only `__version__`: every layer may import it.
LAYERS = (
    ("vaani.serving",),
    (
        "vaani.errors",
        "vaani.audio",
        "vaani.gpu",
        "vaani.manifest",
        "vaani.scoring",
        "vaani.subtitles",
    ),
    ("vaani.build",),
    ("vaani.client",),
    ("vaani.gateway",),
    ("vaani.supervision",),
    ("vaani.recipe",),
    ("vaani.loadtest",),
    ("vaani.benchmarks",),
    ("vaani.stack",),
    ("vaani.cli",),
)
ROOT_PACKAGE = "vaani"


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _source_files() -> set[Path]:
    """The project's Python files as git sees them (tracked, or new and not ignored): generated
    repositories under `benchmarks/results/*/work/` hold copies of step files, not modules."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {ROOT / name for name in listed}


def project_modules() -> dict[str, Path]:
    """Every module of the project by import name; a package stands for its ``__init__``."""
    modules = {}
    sources = _source_files()
    for package, folder in SOURCES.items():
        for path in sorted(p for p in sources if p.is_relative_to(folder)):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def imported(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """Every `vaani` module that importing ``name`` (at ``path``) can run: the imports at module
    level, inside functions and under ``TYPE_CHECKING`` alike, relative ones resolved.

    ``from package import x`` imports the module ``package.x`` when there is one, else the package;
    importing ``a.b.c`` runs the ``__init__`` of ``a`` and of ``a.b`` first, so those count too.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: package.count(".") + 2 - node.level]
                base = ".".join([*parent, base] if base else parent)
            targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    run = set()
    for target in targets:
        parts = target.split(".")
        run |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    return {t for t in run if (t == ROOT_PACKAGE or t.startswith(ROOT_PACKAGE + ".")) and t != name}


@cache
def import_graph() -> dict[str, set[str]]:
    """Module → the modules it imports (read once: the tests only look)."""
    modules = project_modules()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The sets of modules that import one another in a ring (strongly connected components of more
    than one module, Tarjan's algorithm), each sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in graph.get(module, ()):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            ring = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(ring) > 1:
                found.append(sorted(ring))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return found


def test_no_import_climbs_to_a_higher_layer():
    graph = import_graph()
    assert "vaani.serving.contract" in graph and "vaani.build.pipeline" in graph
    climbs = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in graph.items()
        if name != ROOT_PACKAGE
        for target in targets
        if target != ROOT_PACKAGE and layer_of(target) > layer_of(name)
    ]
    assert not climbs, "\n".join(climbs)


def test_no_import_climbs_inside_a_layer_either():
    """No ring of imports, within a package or across packages of one layer: every module can be read
    (and imported) after all it imports. A lazy import inside a function, or one under
    ``TYPE_CHECKING``, hides a ring from Python but not from a reader, so they count."""
    graph = import_graph()
    assert {"vaani.serving.engines.base", "vaani.client.wer", "vaani.build.repository"} <= graph.keys()
    rings = [
        " · ".join(f"{a} → {b}" for a in ring for b in sorted(graph[a] & set(ring))) for ring in loops(graph)
    ]
    assert not rings, "\n".join(rings)


def test_nothing_imports_the_in_image_tensorrt_builder():
    """The builder is a program: the route runs it as a command, here or in the TensorRT image, whose
    Python has only numpy and vaani without dependencies. Imported, it would be a library that the
    host side leans on and that image would have to carry."""
    graph = import_graph()
    assert "vaani.build.tensorrt.builder" in graph
    assert not sorted(name for name, targets in graph.items() if "vaani.build.tensorrt.builder" in targets)


def test_the_loop_finder_finds_a_lazy_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert loops(graph) == [["a", "b", "c"]]
    assert loops({"a": {"b"}, "b": set()}) == []


STAND_IN = """
import sys, types, json, threading
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

class Sender:
    # A request's response sender: a step that answers later (`vaani.serving.steps.turns`) sends here.
    def __init__(self):
        self.responses, self.final = [], threading.Event()

    def send(self, response=None, flags=0):
        if response is not None:
            self.responses.append(response)
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.final.set()

class Request(dict):
    def is_cancelled(self):
        return False

    def requested_output_names(self):
        return ["TRANSCRIPT"]

    def get_response_sender(self):
        self.__dict__.setdefault("sender", Sender())
        return self.sender

def answers(model, requests):
    # What Triton hands back: `execute`'s responses, or (None returned) each request's sent response.
    returned = model.execute(requests)
    if returned is not None:
        return returned
    for request in requests:
        assert request.get_response_sender().final.wait(60)
    return [request.get_response_sender().responses[0] for request in requests]

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL = TRITONSERVER_RESPONSE_COMPLETE_FINAL

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
            {{"name": step, "max_batch_size": 4,
              "parameters": {{k: {{"string_value": str(v)}} for k, v in parameters.items()}}}}
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
(tokens,) = answers(acoustic, [Request(tensors)])
assert tokens.error is None, tokens.error
inputs = {{k: tensors[k] for k in ("NUM_SAMPLES", "WINDOW_LAYOUT")}}
(text,) = answers(decoder, [Request(**{{tokens.outputs[0].name: tokens.outputs[0]}}, **inputs)])
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
tooling += ("vaani.supervision", "vaani.cli")
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


def test_the_architecture_document_lists_every_module():
    """`docs/architecture.md` maps every file: a new module is listed there, with what it holds."""
    document = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = [path.relative_to(ROOT) for path in project_modules().values() if path.name != "__init__.py"]
    missing = sorted(str(path) for path in modules if f"`{path}`" not in document)
    assert not missing, "not in docs/architecture.md's 'Every file': " + ", ".join(missing)
