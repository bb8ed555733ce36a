"""`vaani engine`: the TensorRT plan of the `wav2vec2` step, gated on accuracy, into the repository.

Steps: export FP32 ONNX → half-precision graph (checked on a CPU runtime) → FP32 PyTorch
reference transcripts of the evaluation manifest → plan build and plan transcripts (the
only part that needs TensorRT and a GPU: run here, or in the TensorRT image) → accuracy
gate → plan, metadata and `config.pbtxt` files installed into the repository.

Where the TensorRT part runs is decided by `choose_route`: here when `tensorrt` imports
and a GPU is visible, else in Docker, in ``nvcr.io/nvidia/tensorrt:<TRITON_TAG>-py3``;
that image ships the TensorRT of ``nvcr.io/nvidia/tritonserver:<TRITON_TAG>-py3`` which
docker compose serves with, and a plan only loads in the TensorRT that built it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
from enum import Enum
from pathlib import Path

from vaani.build import engine_gate
from vaani.build.commands import add_model_arguments, add_settings_arguments, settings_from_args
from vaani.build.tensorrt_engine import PRECISIONS, ShapeProfile, gpu_info, metadata_path, shape_profile
from vaani.errors import UserFacingError

# One variable picks both images; docker-compose.yml carries the same default (a test checks).
DEFAULT_TRITON_TAG = "25.01"
TRITON_TAG_VARIABLE = "TRITON_TAG"
ENGINE_IMAGE = "nvcr.io/nvidia/tensorrt:{tag}-py3"
SERVER_IMAGE = "nvcr.io/nvidia/tritonserver:{tag}-py3"
BUILDER_TAG = "vaani-engine:{tag}"
DEFAULT_MANIFEST = Path("data/tiny-hindi-test/test.jsonl")  # `make testset` writes it
DEFAULT_WORK_DIR = Path("results/engine")
DEFAULT_BUCKET_SECONDS = 1.0
CONTAINER_ROOT = "/workspace"


class Route(Enum):
    LOCAL = "local"
    DOCKER = "docker"


class NoRoute(UserFacingError):
    """Neither TensorRT with a GPU here nor Docker: the message explains both ways."""


def no_route_message(has_tensorrt: bool, has_gpu: bool, has_docker: bool, tag: str) -> str:
    def state(ok: bool, yes: str, no: str) -> str:
        return yes if ok else no

    return (
        "cannot build the TensorRT engine on this machine:\n"
        f"  python module tensorrt: {state(has_tensorrt, 'imports', 'not importable')}\n"
        f"  NVIDIA GPU: {state(has_gpu, 'found', 'none found (nvidia-smi)')}\n"
        f"  Docker: {state(has_docker, 'available', 'not available (`docker info` failed)')}\n"
        "Two ways to build it:\n"
        "  1. here: on a machine with an NVIDIA GPU, install TensorRT's Python package (10.x or 11) of the "
        f"same version as the server's image {SERVER_IMAGE.format(tag=tag)}; the builder is not on PyPI, "
        "take it from NVIDIA's TensorRT downloads or pip index.\n"
        "  2. in Docker: on a machine with an NVIDIA GPU, install Docker and the NVIDIA Container Toolkit; "
        f"`make engine` then builds inside {ENGINE_IMAGE.format(tag=tag)}, whose TensorRT is the one of "
        f"{SERVER_IMAGE.format(tag=tag)} ({TRITON_TAG_VARIABLE}={tag} picks both)."
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
            "vaani.build.tensorrt_engine",
            *inner,
        ],
    ]


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
    """Arguments of `python -m vaani.build.tensorrt_engine`, with paths relative to ``base``."""

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


def _prepare(args: argparse.Namespace, files: WorkFiles) -> tuple[object, list[str], list[str]]:
    """Export, convert and check the graph; reference transcripts of the manifest. Host side (torch)."""
    from vaani.audio import load_audio
    from vaani.build import export, half_precision
    from vaani.build.hf_model import HfModel
    from vaani.build.source import resolve
    from vaani.client.wer import read_manifest

    entries = read_manifest(args.manifest)
    hf = HfModel.load(resolve(args.model))
    spec = hf.spec()
    files.root.mkdir(parents=True, exist_ok=True)
    print(f"exporting FP32 ONNX (opset {export.OPSET}) → {files.fp32_onnx}", flush=True)
    export.export_onnx(hf.model, hf.uses_attention_mask, files.fp32_onnx)
    if args.precision == "fp32":
        shutil.copyfile(files.fp32_onnx, files.onnx("fp32"))
    else:
        summary = half_precision.convert_file(files.fp32_onnx, files.onnx(args.precision), args.precision)
        print(f"half-precision graph {files.onnx(args.precision)}: {summary}", flush=True)
        check = half_precision.check_runs(files.fp32_onnx, files.onnx(args.precision), args.precision)
        print(f"half-precision graph {check}", flush=True)
    spec.save(files.spec)
    audio = [load_audio(entry.audio_path) for entry in entries]
    engine_gate.save_audio_bundle(audio, files.audio)
    print(f"FP32 PyTorch reference transcripts of {len(audio)} utterances from {args.manifest}", flush=True)
    reference = [hf.transcribe([samples])[0] for samples in audio]
    return spec, [entry.text for entry in entries], reference


def install(files: WorkFiles, repository: Path, spec, settings) -> Path:
    """Copy plan and metadata into the `wav2vec2` step and regenerate every config for `tensorrt`."""
    from vaani.build.pipeline import STAMP
    from vaani.build.repository import write_configs

    version_dir = repository / "wav2vec2" / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    target = version_dir / "model.plan"
    shutil.copyfile(files.plan, target)
    shutil.copyfile(metadata_path(files.plan), metadata_path(target))
    write_configs(repository, spec, settings)
    (repository / STAMP).unlink(missing_ok=True)  # the repository no longer is what `vaani build` cached
    return target


def run(args: argparse.Namespace) -> int:
    tag = triton_tag(dict(os.environ))
    settings = dataclasses.replace(settings_from_args(args), engine="tensorrt")
    try:
        profile = shape_profile(settings)
    except ValueError as error:
        raise UserFacingError(str(error)) from None
    route = choose_route(tensorrt_importable(), gpu_info() is not None, docker_available(), tag)
    print(f"engine route: {route.value} (TRITON_TAG={tag}); profile {profile}", flush=True)
    if not args.manifest.is_file():
        raise UserFacingError(
            f"evaluation manifest {args.manifest} not found: pass --manifest (NeMo JSONL with "
            "audio_filepath and text), e.g. the bundled test set written by `vaani corpus --split test`"
        )
    root = Path.cwd()
    files = WorkFiles(args.work_dir / args.precision)
    spec, texts, reference = _prepare(args, files)
    inner = inner_arguments(files, args.precision, profile, settings.bucket_samples, args.workspace_gib, root)
    if route is Route.LOCAL:
        from vaani.build.tensorrt_engine import main as build_here

        if build_here(inner) != 0:
            raise UserFacingError("the TensorRT build failed (see above)")
    else:
        for command in docker_commands(tag, root, inner, os.getuid(), os.getgid()):
            print("$ " + " ".join(command), flush=True)
            if subprocess.run(command, check=False).returncode != 0:
                raise UserFacingError(f"`{' '.join(command[:2])}` failed (see above)")
    candidate = json.loads(files.transcripts.read_text(encoding="utf-8"))
    engine_gate.require(engine_gate.evaluate(texts, reference, candidate, args.max_cer_increase))
    target = install(files, args.repository, spec, settings)
    print(f"installed {target} and its metadata; configs regenerated for the tensorrt engine", flush=True)
    print(f"serve it with: TRITON_TAG={tag} docker compose up", flush=True)
    return 0


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "engine",
        help="build the TensorRT plan of the wav2vec2 step, gate it on accuracy, install it",
        description=__doc__.split("\n\n")[0],
    )
    add_model_arguments(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help=f"evaluation manifest for the accuracy gate (default {DEFAULT_MANIFEST})",
    )
    parser.add_argument(
        "--max-cer-increase",
        type=float,
        default=engine_gate.DEFAULT_MAX_CER_INCREASE,
        help="largest CER rise over FP32 PyTorch, as a fraction (default 0.002 = 0.2 percentage points)",
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="intermediate files")
    parser.add_argument(
        "--workspace-gib", type=float, default=0.0, help="TensorRT workspace limit (0: default)"
    )
    add_settings_arguments(parser)
    parser.set_defaults(func=run, engine="tensorrt", bucket_seconds=DEFAULT_BUCKET_SECONDS)
