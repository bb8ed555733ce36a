"""INT8 dynamic quantization of the ONNX graph's matrix products (`--quantize`), gated on transcripts.

On a CPU the `wav2vec2` step is almost all of a request's time, and in a base-size model about
half of that is the transformer's weight matrix products. ONNX Runtime's dynamic quantization
stores those weights as INT8 and quantizes each activation on the fly (`MatMulInteger`), which
VNNI/AMX cores run several times faster than FP32. Only `MatMul`/`Gemm` with a constant weight
are quantized: the convolutional feature encoder (matrix products too in the CPU graph of
`vaani.build.export`, left out by name), attention's activation × activation products, layer
norms and the logits' softmax stay FP32, where the accuracy is fragile (the recipe icefall
reports unchanged WER with).

Like every precision, the quantized graph is installed only if its transcripts of the evaluation
manifest stay within the accuracy gate's CER limit of the FP32 PyTorch reference
(`vaani.build.accuracy_gate`); otherwise the build fails and the FP32 graph stays.

It is not the default although on the bundled model it costs no WER or CER beyond one utterance's
worth (benchmarks/results/int8-accuracy-cpu-2026-12-05). Each activation tensor is quantized by its
own range, so while a served batch ran as one tensor a request's INT8 transcript depended on the
requests batched with it (three identical runs of the held-out set gave 399, 400 and 399 of 400
transcripts identical to FP32's); the `onnxruntime` engine now runs each row alone, which ends that.
What remains against the default is its cost before a first `make serve`: the synthesized test set
and the gate's minutes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vaani.build import accuracy_gate
from vaani.build.hf_model import HfModel
from vaani.build.repository import RepositorySettings
from vaani.errors import UserFacingError

QUANTIZED_OPS = ("MatMul", "Gemm")


def quantize_matmuls(source: Path, target: Path) -> dict[str, int]:
    """Write ``source`` with its constant-weight matrix products in INT8 to ``target``; the op counts."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from vaani.build.export import feature_encoder_nodes

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(QUANTIZED_OPS),
        weight_type=QuantType.QInt8,
        nodes_to_exclude=feature_encoder_nodes(onnx.load(str(source), load_external_data=False).graph),
        extra_options={"MatMulConstBOnly": True},
    )
    return dict(Counter(node.op_type for node in onnx.load(str(target), load_external_data=False).graph.node))


def _manifest_audio(manifest: Path) -> tuple[list[str], list[np.ndarray]]:
    from vaani.audio import load_audio
    from vaani.manifest import read_manifest

    if not manifest.is_file():
        raise UserFacingError(
            f"evaluation manifest {manifest} not found: --quantize is gated on its transcripts; pass "
            "--manifest (NeMo JSONL with audio_filepath and text), e.g. the bundled test set of "
            "`make testset`"
        )
    entries = read_manifest(manifest)
    return [entry.text for entry in entries], [load_audio(entry.audio_path) for entry in entries]


def gate(
    hf: HfModel,
    candidate: Path,
    texts: Sequence[str],
    audio: Sequence[np.ndarray],
    bucket_samples: int,
    max_cer_increase: float,
) -> accuracy_gate.GateResult:
    """The quantized graph's transcripts against the FP32 PyTorch reference's, as the step serves them."""
    from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

    reference = [hf.transcribe([samples])[0] for samples in audio]
    engine = OnnxRuntimeEngine(candidate, threads=os.cpu_count() or 1)
    transcripts = accuracy_gate.transcribe(engine, audio, hf.spec(), bucket_samples)
    return accuracy_gate.evaluate(texts, reference, transcripts, max_cer_increase)


def _verdict_key(quantized: Path, manifest: Path, max_cer_increase: float, bucket_samples: int) -> str:
    """Same INT8 bytes (the export and `quantize_dynamic` are deterministic), same manifest, limit,
    padding and gate code → same transcripts → same verdict."""
    import onnxruntime

    state = manifest.stat()
    digest = hashlib.sha256(quantized.read_bytes())
    code = "".join(inspect.getsource(module) for module in (accuracy_gate, sys.modules[__name__]))
    digest.update(
        f"{manifest.resolve()}:{state.st_size}:{state.st_mtime_ns}:{max_cer_increase!r}:{bucket_samples}:"
        f"{onnxruntime.__version__}:{code}".encode()
    )
    return digest.hexdigest()[:32]


def quantize_installed(
    hf: HfModel,
    onnx_path: Path,
    manifest: Path,
    max_cer_increase: float,
    bucket_samples: int = 0,
    verdicts: Path | None = None,
) -> accuracy_gate.GateResult:
    """Replace the installed FP32 ``onnx_path`` by its INT8 form if the accuracy gate accepts it.

    A refused graph is removed and the FP32 one left in place, so a build that fails here leaves
    no half-quantized repository behind. ``verdicts``: a folder keeping each gate's result by
    `_verdict_key`, so rebuilding the same model (another decoder, batch size, repository) does not
    run the FP32 PyTorch reference and the INT8 graph over the manifest again (minutes on 2 cores).
    """
    texts, audio = _manifest_audio(manifest)
    quantized = onnx_path.with_name("model.int8.onnx")
    ops = quantize_matmuls(onnx_path, quantized)
    counts = ", ".join(f"{op} {ops.get(op, 0)}" for op in ("MatMulInteger", "MatMul", "Conv"))
    print(f"INT8 dynamic quantization of the matrix products → {quantized.name}: {counts}", flush=True)
    known = None
    if verdicts is not None:
        known = verdicts / f"{_verdict_key(quantized, manifest, max_cer_increase, bucket_samples)}.json"
    try:
        if known is not None and known.is_file():
            print(f"accuracy gate of this INT8 graph on {manifest}: the verdict of {known}", flush=True)
            result = accuracy_gate.GateResult(**json.loads(known.read_text()))
        else:
            print(f"accuracy gate of the INT8 graph on {len(audio)} utterances of {manifest}", flush=True)
            result = gate(hf, quantized, texts, audio, bucket_samples, max_cer_increase)
            if known is not None:
                known.parent.mkdir(parents=True, exist_ok=True)
                known.write_text(json.dumps(asdict(result)))
        accuracy_gate.require(result)
    except BaseException:
        quantized.unlink(missing_ok=True)
        raise
    quantized.replace(onnx_path)
    return result


def gate_inputs(settings: RepositorySettings, manifest: Path, max_cer_increase: float) -> dict | None:
    """What decides the installed graph besides the model, for the build cache: the gate's manifest
    (and its state) and limit, so a build gated on another manifest or limit is not taken as current."""
    if not settings.quantize:
        return None
    state = manifest.stat() if manifest.is_file() else None
    return {
        "manifest": str(manifest.resolve()),
        "state": None if state is None else [state.st_size, state.st_mtime_ns],
        "max_cer_increase": max_cer_increase,
    }
