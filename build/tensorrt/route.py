"""Where the TensorRT plan of the `wav2vec2` step is built, and the host-side work around the build.

`vaani build --engine tensorrt` (`vaani engine`, `make engine`) runs these steps through the
build pipeline's `tensorrt` strategy: export FP32 ONNX → half-precision graph (checked on a CPU
runtime) → FP32 PyTorch reference transcripts of the evaluation manifest → plan build and
plan transcripts (the only part that needs TensorRT and a GPU: `builder`, run as a command
here or in the TensorRT image) → accuracy gate → plan and metadata installed into the
repository (the pipeline writes the configs).

Where the TensorRT part runs is decided by `choose_route`: here when `tensorrt` imports
and a GPU is visible, else in Docker, in ``nvcr.io/nvidia/tensorrt:<TRITON_TAG>-py3``;
that image ships the TensorRT of ``nvcr.io/nvidia/tritonserver:<TRITON_TAG>-py3`` which
docker compose serves with, and a plan only loads in the TensorRT that built it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from enum import Enum
from pathlib import Path

from vaani.audio import load_audio
from vaani.build import accuracy_gate, export
from vaani.build.hf_model import HfModel
from vaani.build.repository import RepositorySettings
from vaani.build.tensorrt.metadata import metadata_path
from vaani.build.tensorrt.shape_profile import ShapeProfile, shape_profile
from vaani.errors import UserFacingError
from vaani.gpu import gpu_info
from vaani.manifest import read_manifest
from vaani.serving.acoustic import AcousticSpec

# One variable picks both images; docker-compose.yml carries the same default (a test checks).
DEFAULT_TRITON_TAG = "25.01"
TRITON_TAG_VARIABLE = "TRITON_TAG"
ENGINE_IMAGE = "nvcr.io/nvidia/tensorrt:{tag}-py3"
SERVER_IMAGE = "nvcr.io/nvidia/tritonserver:{tag}-py3"
BUILDER_TAG = "vaani-engine:{tag}"
DEFAULT_MANIFEST = Path("data/tiny-hindi-test/test.jsonl")  # `make testset` writes it
DEFAULT_WORK_DIR = Path("results/engine")
CONTAINER_ROOT = "/workspace"
BUILDER = "vaani.build.tensorrt.builder"  # run as a program on either route, never imported


class Route(Enum):
    LOCAL = "local"
    DOCKER = "docker"


class NoRoute(UserFacingError):
    """Neither TensorRT with a GPU here nor Docker: the message explains both ways."""


def no_route_message(has_tensorrt: bool, has_gpu: bool, has_docker: bool, tag: str) -> str:
    """One line: what is missing here, and the two ways to build the plan."""

    def state(ok: bool, yes: str, no: str) -> str:
        return yes if ok else no

    return (
        "cannot build the TensorRT plan on this machine "
        f"(python module tensorrt: {state(has_tensorrt, 'imports', 'not importable')}; "
        f"NVIDIA GPU: {state(has_gpu, 'found', 'none found (nvidia-smi)')}; "
        f"Docker: {state(has_docker, 'available', 'not available (`docker info` failed)')}). "
        "Two ways, both need an NVIDIA GPU: 1. here: install TensorRT's Python package (10.x or 11) "
        f"of the version in {SERVER_IMAGE.format(tag=tag)} (not on PyPI: NVIDIA's downloads or pip "
        "index); 2. in Docker: install Docker and the NVIDIA Container Toolkit, and `make engine` builds "
        f"inside {ENGINE_IMAGE.format(tag=tag)}, whose TensorRT is the one of "
        f"{SERVER_IMAGE.format(tag=tag)} ({TRITON_TAG_VARIABLE}={tag} picks both). Then run `make engine`."
    )


def choose_route(has_tensorrt: bool, has_gpu: bool, has_docker: bool, tag: str = DEFAULT_TRITON_TAG) -> Route:
    """Local when TensorRT and a GPU are here; else Docker (which needs the GPU too); else stop."""
    if has_tensorrt and has_gpu:
        return Route.LOCAL
    if has_docker and has_gpu:
        return Route.DOCKER
    raise NoRoute(no_route_message(has_tensorrt, has_gpu, has_docker, tag))


def tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def triton_tag(environment: dict[str, str]) -> str:
    return environment.get(TRITON_TAG_VARIABLE) or DEFAULT_TRITON_TAG


def docker_commands(tag: str, root: Path, inner: list[str], uid: int, gid: int) -> list[list[str]]:
    """Build the engine image for ``tag``, then run the TensorRT step in it over the mounted checkout.

    The container runs as the calling user so the plan and caches it writes stay theirs.
    """
    image = BUILDER_TAG.format(tag=tag)
    return [
        [
            "docker",
            "build",
            "--file",
            str(root / "docker" / "engine.Dockerfile"),
            "--build-arg",
            f"{TRITON_TAG_VARIABLE}={tag}",
            "--tag",
            image,
            str(root),
        ],
        [
            "docker",
            "run",
            "--rm",
            "--gpus",
            "all",
            "--user",
            f"{uid}:{gid}",
            "--env",
            "HOME=/tmp",
            "--volume",
            f"{root.resolve()}:{CONTAINER_ROOT}",
            "--workdir",
            CONTAINER_ROOT,
            image,
            "python3",
            "-m",
            BUILDER,
            *inner,
        ],
    ]


def local_command(inner: list[str]) -> list[str]:
    """The TensorRT step here: the builder under this interpreter, which imports `tensorrt`."""
    return [sys.executable, "-m", BUILDER, *inner]


@dataclasses.dataclass(frozen=True)
class WorkFiles:
    """Everything one engine build writes before installing: under the work directory, per precision."""

    root: Path

    @property
    def fp32_onnx(self) -> Path:
        return self.root / "model.fp32.onnx"

    def onnx(self, precision: str) -> Path:
        return self.root / f"model.{precision}.onnx"

    @property
    def plan(self) -> Path:
        return self.root / "model.plan"

    @property
    def audio(self) -> Path:
        return self.root / "gate_audio.npz"

    @property
    def spec(self) -> Path:
        return self.root / "acoustic.json"

    @property
    def transcripts(self) -> Path:
        return self.root / "engine_transcripts.json"

    @property
    def timing_cache(self) -> Path:
        return self.root.parent / "timing.cache"


def inner_arguments(
    files: WorkFiles,
    precision: str,
    profile: ShapeProfile,
    bucket_samples: int,
    workspace_gib: float,
    base: Path,
) -> list[str]:
    """Arguments of `python -m vaani.build.tensorrt.builder`, with paths relative to ``base``."""

    def rel(path: Path) -> str:
        return str(path.resolve().relative_to(base.resolve()))

    return [
        "--onnx",
        rel(files.onnx(precision)),
        "--plan",
        rel(files.plan),
        "--precision",
        precision,
        "--profile",
        json.dumps(dataclasses.asdict(profile)),
        "--timing-cache",
        rel(files.timing_cache),
        "--workspace-gib",
        str(workspace_gib),
        "--gate-audio",
        rel(files.audio),
        "--spec",
        rel(files.spec),
        "--bucket-samples",
        str(bucket_samples),
        "--transcripts",
        rel(files.transcripts),
    ]


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """What only a TensorRT plan needs beyond `RepositorySettings`; each is a `vaani build` option."""

    precision: str = "fp16"
    manifest: Path = DEFAULT_MANIFEST
    max_cer_increase: float = accuracy_gate.DEFAULT_MAX_CER_INCREASE
    work_dir: Path = DEFAULT_WORK_DIR
    workspace_gib: float = 0.0


def check_buildable(
    settings: RepositorySettings, options: PlanOptions, tag: str
) -> tuple[ShapeProfile, Route]:
    """Refuse, in one line and before any work, what cannot become a plan here."""
    try:
        profile = shape_profile(settings)
    except ValueError as error:
        raise UserFacingError(str(error)) from None
    route = choose_route(tensorrt_importable(), gpu_info() is not None, docker_available(), tag)
    if not options.manifest.is_file():
        raise UserFacingError(
            f"evaluation manifest {options.manifest} not found: pass --manifest (NeMo JSONL with "
            "audio_filepath and text), e.g. the bundled test set of `make testset`"
        )
    return profile, route


def _prepare(
    hf: HfModel, options: PlanOptions, files: WorkFiles
) -> tuple[AcousticSpec, list[str], list[str]]:
    """Export, convert and check the graph; reference transcripts of the manifest. Host side (torch)."""
    from vaani.build.tensorrt import half_precision  # onnx: only for a plan

    entries = read_manifest(options.manifest)
    spec = hf.spec()
    files.root.mkdir(parents=True, exist_ok=True)
    print(f"exporting FP32 ONNX (opset {export.OPSET}) → {files.fp32_onnx}", flush=True)
    export.export_onnx(hf.model, hf.uses_attention_mask, files.fp32_onnx)
    precision = options.precision
    if precision == "fp32":
        shutil.copyfile(files.fp32_onnx, files.onnx("fp32"))
    else:
        summary = half_precision.convert_file(files.fp32_onnx, files.onnx(precision), precision)
        print(f"half-precision graph {files.onnx(precision)}: {summary}", flush=True)
        check = half_precision.check_runs(files.fp32_onnx, files.onnx(precision), precision)
        print(f"half-precision graph {check}", flush=True)
    spec.save(files.spec)
    audio = [load_audio(entry.audio_path) for entry in entries]
    accuracy_gate.save_audio_bundle(audio, files.audio)
    print(
        f"FP32 PyTorch reference transcripts of {len(audio)} utterances from {options.manifest}", flush=True
    )
    reference = [hf.transcribe([samples])[0] for samples in audio]
    return spec, [entry.text for entry in entries], reference


def build_and_install(
    hf: HfModel, version_dir: Path, settings: RepositorySettings, options: PlanOptions
) -> list[Path]:
    """Build the plan (here or in Docker), gate it on transcripts, copy it and its metadata in."""
    tag = triton_tag(dict(os.environ))
    profile, route = check_buildable(settings, options, tag)
    print(f"plan route: {route.value} (TRITON_TAG={tag}); profile {profile}", flush=True)
    root = Path.cwd()
    files = WorkFiles(options.work_dir / options.precision)
    _, texts, reference = _prepare(hf, options, files)
    inner = inner_arguments(
        files, options.precision, profile, settings.bucket_samples, options.workspace_gib, root
    )
    if route is Route.LOCAL:
        if subprocess.run(local_command(inner), check=False).returncode != 0:
            raise UserFacingError("the TensorRT build failed (see above)")
    else:
        for command in docker_commands(tag, root, inner, os.getuid(), os.getgid()):
            print("$ " + " ".join(command), flush=True)
            if subprocess.run(command, check=False).returncode != 0:
                raise UserFacingError(f"`{' '.join(command[:2])}` failed (see above)")
    candidate = json.loads(files.transcripts.read_text(encoding="utf-8"))
    accuracy_gate.require(accuracy_gate.evaluate(texts, reference, candidate, options.max_cer_increase))
    version_dir.mkdir(parents=True, exist_ok=True)
    target = version_dir / "model.plan"
    shutil.copyfile(files.plan, target)
    shutil.copyfile(metadata_path(files.plan), metadata_path(target))
    print(
        f"installed {target} and its metadata; serve it with: TRITON_TAG={tag} docker compose up", flush=True
    )
    return [target, metadata_path(target)]
