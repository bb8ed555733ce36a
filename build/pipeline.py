"""`vaani build`: model in, served repository out, the same pipeline for every engine.

resolve the model → FP32 reference → the engine's strategy installs its artifact, gated on
the reference (`vaani.build.engine_builds`) → every `config.pbtxt` → cache stamp. Unchanged
inputs make it a no-op.
"""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from vaani import __version__
from vaani.build import export, language_model, quantization, repository
from vaani.build.engine_builds import ENGINE_BUILDS
from vaani.build.hf_model import HfModel
from vaani.build.repository import RepositorySettings, served_models, write_configs
from vaani.build.source import fingerprint, resolve
from vaani.build.tensorrt.route import PlanOptions
from vaani.errors import UserFacingError
from vaani.serving.contract import ACOUSTIC, DECODER, STEPS, VERSION, version_dir

STAMP = ".build.json"


def _key(model_dir: Path, settings: RepositorySettings, plan: PlanOptions, lm: Path | None = None) -> str:
    """Same model files, LM, settings and generator code → same key → nothing to do."""
    code = "".join(inspect.getsource(module) for module in (export, repository, language_model, quantization))
    if lm is not None:  # LMs run to gigabytes: their names, sizes and times, not their bytes
        files = sorted(lm.rglob("*")) if lm.is_dir() else [lm]
        code += "".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns};" for p in files)
    options = {
        "settings": asdict(settings),
        "plan": asdict(plan) if settings.engine == "tensorrt" else None,
        "int8_gate": quantization.gate_inputs(settings, plan.manifest, plan.max_cer_increase),
    }
    extra = json.dumps(options, sort_keys=True, default=str) + __version__ + code
    return fingerprint(model_dir, extra.encode())


def is_current(repo: Path, key: str) -> bool:
    stamp = repo / STAMP
    if not stamp.exists():
        return False
    recorded = json.loads(stamp.read_text())
    return recorded.get("key") == key and all((repo / f).exists() for f in recorded.get("files", []))


def install_steps(repo: Path, engine: str) -> None:
    """Give ``repo`` exactly the steps ``engine`` serves: their `model.py` where it is missing, and no
    folder of a step it does not serve.

    A step's `model.py` is one line naming its class, `vaani.serving.steps.<step>.TritonPythonModel`,
    so a reader of the repository sees what runs; it is written from the step's name, so a
    non-editable install builds a working repository. Runs on every build, the up-to-date one too:
    a step left over from another engine (`windows` after `make engine`) would otherwise stay in
    the folder a server or a `docker compose up` reads.
    """
    served = served_models(engine)
    for step in STEPS:
        if step not in served:
            shutil.rmtree(repo / step, ignore_errors=True)
    for step in (s for s in STEPS if s in served):
        target = version_dir(repo, step) / "model.py"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"from vaani.serving.steps.{step} import TritonPythonModel  # noqa: F401\n")


def served_from(repo: Path) -> tuple[str, ...]:
    """The models the last complete build of ``repo`` wrote, for the server to load by name."""
    stamp = repo / STAMP
    if not stamp.exists():
        raise UserFacingError(
            f"{repo} holds no complete build (no {STAMP}): build it with `vaani build` or serve "
            "without --skip-build"
        )
    return served_models(json.loads(stamp.read_text())["settings"]["engine"])


def build(
    model: str,
    repo: Path,
    settings: RepositorySettings,
    force: bool = False,
    plan: PlanOptions | None = None,
) -> Path:
    """Build ``repo`` for ``model``; a second call with unchanged inputs does nothing."""
    plan = plan or PlanOptions()
    strategy = ENGINE_BUILDS[settings.engine]
    strategy.preflight(settings, plan)
    install_steps(repo, settings.engine)
    model_dir = resolve(model)
    lm = language_model.find(model_dir, settings)
    key = _key(model_dir, settings, plan, lm)
    if not force and is_current(repo, key):
        print(f"repository {repo} is up to date for {model} (engine {settings.engine}); nothing to do")
        return repo
    print(f"building {repo} for {model} (engine {settings.engine})")
    (repo / STAMP).unlink(missing_ok=True)  # a build cut short must not pass for the last complete one
    hf = HfModel.load(model_dir)
    decoder = language_model.resolve_decoder(settings, lm)
    if lm is not None and decoder == "beam":  # before the export: a bad LM fails the build at once
        language_model.install(lm, version_dir(repo, DECODER), hf.spec(), settings)
    else:
        shutil.rmtree(version_dir(repo, DECODER) / language_model.LM_DIR, ignore_errors=True)
    artifacts = strategy.install(hf, version_dir(repo, ACOUSTIC), settings, plan)
    if settings.quantize:  # the gated FP32 graph in, its INT8 form out if that passes the accuracy gate
        onnx_path = version_dir(repo, ACOUSTIC) / "model.onnx"
        quantization.quantize_installed(
            hf,
            onnx_path,
            plan.manifest,
            plan.max_cer_increase,
            settings.bucket_samples,
            verdicts=plan.work_dir / "int8-gates",
        )
    write_configs(repo, hf.spec(), settings, source_model=model, decoder=decoder)
    files = [str(p.relative_to(repo)) for p in [*repo.glob("*/config.pbtxt"), *artifacts]]
    (repo / STAMP).write_text(
        json.dumps({"key": key, "model": model, "settings": asdict(settings), "files": files}, indent=1)
    )
    print(f"repository ready: {repo}")
    return repo


def clean(repo: Path) -> None:
    """Remove what `build` generated, keeping the tracked `model.py` files."""
    for path in repo.glob(f"*/{VERSION}/*"):
        if path.name != "model.py":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in [*repo.glob("*/config.pbtxt"), repo / STAMP]:
        path.unlink(missing_ok=True)
