"""The in-image TensorRT builder: build the plan, then transcribe the gate's audio with it.

A program, not a library: `route` runs it as ``python -m vaani.build.tensorrt.builder`` on a
GPU machine with TensorRT installed, or inside ``nvcr.io/nvidia/tensorrt:<TRITON_TAG>-py3``
(`docker/engine.Dockerfile`), where only TensorRT, numpy and this package (installed without
dependencies) exist. So it imports nothing beyond the standard library, numpy and the
torch-free parts of `vaani` at module level, and `tensorrt` only inside functions.

The network is strongly typed: precision comes from the ONNX graph (see
`vaani.build.tensorrt.half_precision`), never from builder flags, which TensorRT 11 removed.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vaani.build.tensorrt.metadata import metadata_path
from vaani.build.tensorrt.shape_profile import ShapeProfile
from vaani.gpu import gpu_info
from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS

MIN_TENSORRT_MAJOR = 10  # strongly typed networks with INT64 inputs


class PlanBuildError(RuntimeError):
    """TensorRT refused the graph or the build; the message carries TensorRT's own errors."""


def network_flags(trt: Any) -> int:
    """Creation flags for a strongly typed network on TensorRT 10 and 11.

    TensorRT 10 builds weakly typed networks unless asked; TensorRT 11 is always strongly
    typed and keeps the flag only for compatibility (ignored); a later release may drop it.
    """
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def major_version(version: str) -> int:
    return int(version.split(".")[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    profile: ShapeProfile,
    precision: str,
    timing_cache: Path,
    workspace_gib: float = 0.0,
) -> dict[str, Any]:
    """Build and serialize the plan; write its metadata JSON beside it and return it."""
    import tensorrt as trt

    if major_version(trt.__version__) < MIN_TENSORRT_MAJOR:
        raise PlanBuildError(f"TensorRT {trt.__version__} is too old: strongly typed builds need 10 or later")
    gpu = gpu_info()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PlanBuildError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    config = builder.create_builder_config()
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # "fp32" means FP32 matrix work, not TF32
    if workspace_gib > 0:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    trt_profile = builder.create_optimization_profile()
    low, opt, high = profile.shapes()
    for name in inputs:
        trt_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(trt_profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PlanBuildError("TensorRT failed to build the engine; its log above says why")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    metadata = {
        "tensorrt_version": trt.__version__,
        "gpu": asdict(gpu) if gpu else None,
        "precision": precision,
        "strongly_typed": True,
        "profile": profile.as_dict(),
        "inputs": inputs,
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": file_sha256(onnx_path),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    metadata_path(plan_path).write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    return metadata


class _CudaRuntime:
    """The few CUDA runtime calls the runner needs, through ctypes (no pycuda/cuda-python in the image)."""

    HOST_TO_DEVICE = 1
    DEVICE_TO_HOST = 2

    def __init__(self) -> None:
        names = [ctypes.util.find_library("cudart"), "libcudart.so", "libcudart.so.13", "libcudart.so.12"]
        for name in filter(None, names):
            try:
                self._lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise PlanBuildError("libcudart (CUDA runtime) not found: add CUDA's lib64 to LD_LIBRARY_PATH")

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            raise PlanBuildError(f"CUDA {call} failed with error {status}")

    def malloc(self, size: int) -> int:
        pointer = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(max(size, 1))), "cudaMalloc")
        return int(pointer.value or 0)

    def free(self, pointer: int) -> None:
        self._check(self._lib.cudaFree(ctypes.c_void_p(pointer)), "cudaFree")

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self._check(
            self._lib.cudaMemcpy(
                ctypes.c_void_p(pointer),
                array.ctypes.data_as(ctypes.c_void_p),
                array.nbytes,
                self.HOST_TO_DEVICE,
            ),
            "cudaMemcpy",
        )

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        self._check(
            self._lib.cudaMemcpy(
                array.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_void_p(pointer),
                array.nbytes,
                self.DEVICE_TO_HOST,
            ),
            "cudaMemcpy",
        )

    def synchronize(self) -> None:
        self._check(self._lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")


class TensorRTRunner:
    """Runs a plan like the python-backend engines: (values, mask) → logits, all numpy.

    Used by the accuracy gate, so the plan is judged exactly as Triton will run it (same
    tensors, same profile), without a server.
    """

    def __init__(self, plan: Path) -> None:
        import tensorrt as trt

        self._cuda = _CudaRuntime()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise PlanBuildError(f"TensorRT could not load {plan}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]

    def __call__(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {INPUT_VALUES: np.ascontiguousarray(values, np.float32)}
        if ATTENTION_MASK in self._inputs:
            feeds[ATTENTION_MASK] = np.ascontiguousarray(mask, np.int64)
        pointers: list[int] = []
        try:
            for name, array in feeds.items():
                self._context.set_input_shape(name, array.shape)
                pointer = self._cuda.malloc(array.nbytes)
                pointers.append(pointer)
                self._cuda.to_device(pointer, array)
                self._context.set_tensor_address(name, pointer)
            logits = np.empty(tuple(self._context.get_tensor_shape(LOGITS)), dtype=np.float32)
            pointer = self._cuda.malloc(logits.nbytes)
            pointers.append(pointer)
            self._context.set_tensor_address(LOGITS, pointer)
            if not self._context.execute_async_v3(0):
                raise PlanBuildError("TensorRT execution failed")
            self._cuda.synchronize()
            self._cuda.to_host(logits, pointer)
            return logits
        finally:
            for pointer in pointers:
                self._cuda.free(pointer)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.build.tensorrt.builder",
        description="Build the plan and transcribe the gate's audio with it: the part of `vaani engine` "
        "that needs TensorRT and a GPU (run locally or inside the TensorRT image).",
    )
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("--profile", required=True, help="ShapeProfile as JSON")
    parser.add_argument("--timing-cache", type=Path, required=True)
    parser.add_argument("--workspace-gib", type=float, default=0.0)
    parser.add_argument("--gate-audio", type=Path, required=True, help=".npz of the evaluation audio")
    parser.add_argument("--spec", type=Path, required=True, help="acoustic.json of the model")
    parser.add_argument("--bucket-samples", type=int, required=True)
    parser.add_argument("--transcripts", type=Path, required=True, help="JSON list written here")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vaani.build.accuracy_gate import load_audio_bundle, transcribe
    from vaani.serving.acoustic import AcousticSpec

    args = _parser().parse_args(argv)
    fields = json.loads(args.profile)
    profile = ShapeProfile(**{k: fields[k] for k in ShapeProfile.__dataclass_fields__})
    print(f"building {args.plan} ({args.precision}) from {args.onnx}", flush=True)
    try:
        metadata = build_plan(
            args.onnx, args.plan, profile, args.precision, args.timing_cache, args.workspace_gib
        )
        print(f"built with TensorRT {metadata['tensorrt_version']} on {metadata['gpu']}", flush=True)
        runner = TensorRTRunner(args.plan)
        texts = transcribe(
            runner, load_audio_bundle(args.gate_audio), AcousticSpec.load(args.spec), args.bucket_samples
        )
    except PlanBuildError as error:
        print(f"engine build failed: {error}", file=sys.stderr)
        return 1
    args.transcripts.write_text(json.dumps(texts, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
