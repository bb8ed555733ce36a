"""`vaani build`: model in, served repository out — export, parity gate, configs, cache stamp."""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from vaani import __version__
from vaani.build import export, repository
from vaani.build.hf_model import HfModel
from vaani.build.parity import compare, probe_audio, require
from vaani.build.repository import RepositorySettings, write_configs
from vaani.build.source import fingerprint, resolve
from vaani.engines.onnxruntime import OnnxRuntimeEngine

STAMP = ".build.json"
STEP_SOURCES = Path(__file__).resolve().parents[1] / "model_repository"


def _key(model_dir: Path, settings: RepositorySettings) -> str:
    """Same model files, settings and generator code → same key → nothing to do."""
    code = "".join(inspect.getsource(module) for module in (export, repository))
    extra = json.dumps(asdict(settings), sort_keys=True) + __version__ + code
    return fingerprint(model_dir, extra.encode())


def is_current(repo: Path, key: str) -> bool:
    stamp = repo / STAMP
    if not stamp.exists():
        return False
    recorded = json.loads(stamp.read_text())
    return recorded.get("key") == key and all((repo / f).exists() for f in recorded.get("files", []))


def install_steps(repo: Path) -> None:
    """Put the tracked `model.py` of each python step into ``repo`` when it is another folder."""
    for source in STEP_SOURCES.glob("*/1/model.py"):
        target = repo / source.relative_to(STEP_SOURCES)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build(model: str, repo: Path, settings: RepositorySettings, force: bool = False) -> Path:
    """Build ``repo`` for ``model``; a second call with unchanged inputs does nothing."""
    install_steps(repo)
    model_dir = resolve(model)
    key = _key(model_dir, settings)
    if not force and is_current(repo, key):
        print(f"repository {repo} is up to date for {model} (engine {settings.engine}); nothing to do")
        return repo
    print(f"building {repo} for {model} (engine {settings.engine})")
    hf = HfModel.load(model_dir)
    spec = hf.spec()
    if settings.engine == "torch":
        artifact = _install_torch_model(hf, repo / "wav2vec2" / "1")
    else:
        artifact = onnx_path = repo / "wav2vec2" / "1" / "model.onnx"
        print(f"exporting ONNX (opset {export.OPSET}) → {onnx_path}")
        export.export_onnx(hf.model, hf.uses_attention_mask, onnx_path)
        report = compare(
            reference=hf.logits,
            candidate=OnnxRuntimeEngine(onnx_path),
            features=hf.features,
            spec=spec,
            audio=probe_audio(),
        )
        require(report)
    write_configs(repo, spec, settings, source_model=model)
    files = [str(p.relative_to(repo)) for p in repo.glob("*/config.pbtxt")] + [
        str(artifact.relative_to(repo))
    ]
    (repo / STAMP).write_text(
        json.dumps({"key": key, "model": model, "settings": asdict(settings), "files": files}, indent=1)
    )
    print(f"repository ready: {repo}")
    return repo


def _install_torch_model(hf: HfModel, version_dir: Path) -> Path:
    """The `torch` engine needs no export: it loads the model's own weights (`hf/`).

    The gate runs the engine's forward on the CPU in FP32 against the reference, which
    checks the engine's code and the saved files; its half precision is judged on a GPU
    (`vaani.gpu_benchmark`), since the build machine may have none.
    """
    from vaani.engines.torch_engine import TorchEngine, TorchEngineOptions, save_model

    target = save_model(hf.model, version_dir)
    print(f"saved the model for the torch engine → {target}")
    engine = TorchEngine.load(target, "cpu", TorchEngineOptions(dtype="float32"))
    require(compare(hf.logits, engine, hf.features, hf.spec(), probe_audio()))
    return target / "model.safetensors"


def clean(repo: Path) -> None:
    """Remove what `build` generated, keeping the tracked `model.py` files."""
    for path in repo.glob("*/1/*"):
        if path.name != "model.py":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in [*repo.glob("*/config.pbtxt"), repo / STAMP]:
        path.unlink(missing_ok=True)
