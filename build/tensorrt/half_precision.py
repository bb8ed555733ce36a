"""FP32 ONNX graph → strongly typed half-precision graph (FP16 or BF16) for TensorRT.

TensorRT 10.12 deprecated weakly typed builds and TensorRT 11 removed them: the engine
runs every tensor in the type the ONNX graph gives it. So precision is decided here, once,
by a small pass over the graph rather than by builder flags:

* matrix work (MatMul, Gemm, Conv) and the cheap element-wise ops around it run in half;
* normalization (LayerNormalization and decomposed ReduceMean/Pow/Sqrt/Div chains),
  Softmax, every reduction and the final projection (``lm_head`` MatMul + Add producing
  the logits) stay in FP32: wav2vec2's LayerNorm variance overflows FP16 (> 65504) in large
  checkpoints, and greedy CTC decodes the argmax of logits that must not lose resolution;
* ops this pass does not know run in FP32 (a new op can cost speed, never accuracy);
* graph inputs and outputs stay FP32, with Casts at the boundaries, so the tensor contract
  of the ``wav2vec2`` step does not change with precision.

Casts are inserted wherever a tensor's producer and consumer disagree; TensorRT fuses them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vaani.build.tensorrt.precision import PRECISIONS, Precision
from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS, SAMPLING_RATE

HALF_TYPES: dict[str, int] = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
FLOAT = TensorProto.FLOAT
FP16_MAX = float(np.finfo(np.float16).max)

# Run in the half type: the matrix work and element-wise arithmetic next to it.
HALF_OPS = frozenset(
    {
        "MatMul",
        "Gemm",
        "Conv",
        "ConvTranspose",
        "Einsum",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Neg",
        "Abs",
        "Erf",
        "Gelu",
        "Tanh",
        "Sigmoid",
        "Relu",
        "LeakyRelu",
        "Max",
        "Min",
    }
)
# Move or select data without arithmetic: they run in the type of their data input.
FOLLOW_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Concat",
        "Slice",
        "Gather",
        "GatherElements",
        "Split",
        "Squeeze",
        "Unsqueeze",
        "Expand",
        "Flatten",
        "Identity",
        "Pad",
        "Tile",
        "Where",
        "Dropout",
    }
)
# Accept any input type (their float input is never cast).
TYPE_AGNOSTIC_INPUT_OPS = frozenset({"Shape", "Size", "Cast"})
# Normalization statistics: the element-wise op right after one of these is part of a
# decomposed normalization (x - mean, var + eps, x / std) and stays in FP32 too.
STATISTICS_OPS = frozenset(
    {
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL2",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceLogSumExp",
        "Pow",
        "Sqrt",
        "Reciprocal",
    }
)
# Documented FP32 ops (they are FP32 by not being in HALF_OPS; tests check them by name).
FP32_OPS = STATISTICS_OPS | {
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "BatchNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceL1",
    "CumSum",
}
# Walking back from a graph output through these reaches the final projection.
_PROJECTION_TAIL = frozenset({"Add", "Identity", "Reshape", "Transpose"})
_PROJECTION = frozenset({"MatMul", "Gemm"})


@dataclass(frozen=True)
class ConversionSummary:
    """What the pass did, printed by `vaani engine` so a reviewer sees the FP32 islands."""

    precision: str
    half_nodes: int
    fp32_nodes: Counter
    casts: int
    forced_fp32: tuple[str, ...]

    def __str__(self) -> str:
        kept = ", ".join(f"{op} {count}" for op, count in sorted(self.fp32_nodes.items()))
        return (
            f"{self.precision}: {self.half_nodes} nodes in half precision, {self.casts} casts; "
            f"kept in FP32: {kept}; final projection and normalization glue: {len(self.forced_fp32)} nodes"
        )


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the source graph, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for tensor in graph.initializer:
        types[tensor.name] = tensor.data_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = attribute.t.data_type
    return types


def _final_projection(graph: onnx.GraphProto, producers: dict[str, onnx.NodeProto]) -> set[str]:
    """Names of the nodes from each graph output back to (and including) its MatMul/Gemm."""
    initializers = {t.name for t in graph.initializer}
    found: set[str] = set()
    for output in graph.output:
        node = producers.get(output.name)
        chain: list[str] = []
        while node is not None and node.op_type in _PROJECTION_TAIL | _PROJECTION:
            chain.append(node.name)
            if node.op_type in _PROJECTION:
                found.update(chain)
                break
            computed = [name for name in node.input if name in producers and name not in initializers]
            node = producers[computed[0]] if len(computed) == 1 else None
    return found


def _forced_fp32(graph: onnx.GraphProto) -> set[str]:
    """Half-capable nodes that must stay FP32 by their place in the graph, not their op type."""
    producers = {out: node for node in graph.node for out in node.output}
    forced = _final_projection(graph, producers)
    for node in graph.node:
        if node.op_type not in HALF_OPS:
            continue
        inputs_from = {producers[name].op_type for name in node.input if name in producers}
        if inputs_from & STATISTICS_OPS:
            forced.add(node.name)  # decomposed normalization: x - mean, var + eps, x / std
    for node in graph.node:
        if node.op_type == "Softmax":
            feeder = producers.get(node.input[0])
            if feeder is not None and feeder.op_type in HALF_OPS | {"Where"}:
                forced.add(feeder.name)  # scores + mask: the mask constant does not fit FP16
    return forced


def _to_half_initializer(tensor: onnx.TensorProto, half: int, name: str) -> onnx.TensorProto:
    values = numpy_helper.to_array(tensor).astype(np.float32)
    if half == TensorProto.FLOAT16:
        # Saturate: -3.4e38 mask constants become -65504, not -inf (inf - inf is NaN).
        return numpy_helper.from_array(np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16), name)
    bits = np.ascontiguousarray(values).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    out = onnx.TensorProto(name=name, data_type=TensorProto.BFLOAT16, dims=list(values.shape))
    out.raw_data = rounded.tobytes()
    return out


_TYPE_STRINGS = {
    FLOAT: "tensor(float)",
    TensorProto.FLOAT16: "tensor(float16)",
    TensorProto.BFLOAT16: "tensor(bfloat16)",
}


@cache
def _admits(op_type: str, opset: int, elem_type: int) -> bool:
    """Whether the operator's schema at ``opset`` accepts ``elem_type`` (Conv takes BF16 only from opset 22).

    A node whose schema does not admit the half type runs in FP32: the graph must stay a
    valid ONNX graph of its own opset, which is what TensorRT's parser reads.
    """
    type_str = _TYPE_STRINGS[elem_type]
    schema = onnx.defs.get_schema(op_type, opset)
    return any(type_str in constraint.allowed_type_strs for constraint in schema.type_constraints)


def _name_node(node: onnx.NodeProto, index: int) -> None:
    if not node.name:
        node.name = f"{node.op_type}_{index}"


def convert(model: onnx.ModelProto, precision: Precision) -> tuple[onnx.ModelProto, ConversionSummary]:
    """Return a converted copy of ``model``; ``fp32`` returns an unchanged copy."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if precision == "fp32":
        return out, ConversionSummary("fp32", 0, Counter(), 0, ())
    if precision not in HALF_TYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    half = HALF_TYPES[precision]
    opset = next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx"))
    graph = out.graph
    for index, node in enumerate(graph.node):
        _name_node(node, index)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(
                f"node {node.name} ({node.op_type}) has a subgraph; this pass handles flat graphs"
            )
    source_types = _tensor_types(out)
    is_float = {name for name, kind in source_types.items() if kind == FLOAT}
    initializers = {t.name: t for t in graph.initializer}
    forced = _forced_fp32(graph)

    current: dict[str, int] = {value.name: FLOAT for value in graph.input if value.name in is_float}
    constants: set[str] = set(initializers)
    casts: dict[tuple[str, int], str] = {}
    new_initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    suffix = {FLOAT: "fp32", half: precision}

    def typed(name: str, want: int) -> str:
        if current.get(name, FLOAT) == want:
            return name
        key = (name, want)
        if key not in casts:
            casts[key] = f"{name}__{suffix[want]}"
            if name in initializers:
                new_initializers.append(_to_half_initializer(initializers[name], want, casts[key]))
            else:
                nodes.append(
                    helper.make_node("Cast", [name], [casts[key]], to=want, name=f"Cast_{casts[key]}")
                )
            current[casts[key]] = want
        return casts[key]

    half_nodes = 0
    fp32_nodes: Counter = Counter()
    for node in graph.node:
        floats = [i for i, name in enumerate(node.input) if name and name in is_float]
        if node.op_type in TYPE_AGNOSTIC_INPUT_OPS:
            want = FLOAT
            floats = []
        elif node.name in forced:
            want = FLOAT
        elif node.op_type in HALF_OPS:
            want = half if _admits(node.op_type, opset, half) else FLOAT
        elif node.op_type in FOLLOW_OPS:
            computed = [node.input[i] for i in floats if node.input[i] not in constants]
            want = current.get(computed[0], FLOAT) if computed else FLOAT
            want = want if _admits(node.op_type, opset, want) else FLOAT
        else:
            want = FLOAT
        for i in floats:
            node.input[i] = typed(node.input[i], want)
        if node.op_type == "Constant":
            constants.update(node.output)
        for name in node.output:
            if name in is_float:
                current[name] = want if node.op_type not in TYPE_AGNOSTIC_INPUT_OPS else FLOAT
        if floats and want == half:
            half_nodes += 1
        elif floats:
            fp32_nodes[node.op_type] += 1
        nodes.append(node)

    for output in graph.output:  # outputs stay FP32: a half producer gets a Cast back
        if output.name in is_float and current.get(output.name, FLOAT) != FLOAT:
            inner = f"{output.name}__{precision}"
            for node in nodes:
                node.output[:] = [inner if name == output.name else name for name in node.output]
                node.input[:] = [inner if name == output.name else name for name in node.input]
            nodes.append(
                helper.make_node("Cast", [inner], [output.name], to=FLOAT, name=f"Cast_{output.name}")
            )

    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + [t for t in new_initializers if t.name in used])
    del graph.value_info[:]
    summary = ConversionSummary(
        precision=precision,
        half_nodes=half_nodes,
        fp32_nodes=fp32_nodes,
        casts=sum(1 for n in nodes if n.op_type == "Cast" and n.name.startswith("Cast_")),
        forced_fp32=tuple(sorted(forced)),
    )
    return out, summary


def validate(model: onnx.ModelProto) -> onnx.ModelProto:
    """`onnx.checker` plus strict, type-checked shape inference; returns the inferred model."""
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def convert_file(source: Path, target: Path, precision: Precision) -> ConversionSummary:
    """Convert the ONNX file ``source`` into ``target`` and validate the result."""
    model, summary = convert(onnx.load(str(source)), precision)
    validate(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    large = model.ByteSize() > 1_800_000_000  # protobuf's 2 GiB limit: spill weights beside the graph
    onnx.save(
        model, str(target), save_as_external_data=large, location=target.name + ".data" if large else None
    )
    return summary


def compute_types(model: onnx.ModelProto) -> dict[str, int]:
    """Node name → the element type it computes in (its first float-family input).

    What tests and `vaani engine` inspect: a node "runs in" the type of its operands.
    """
    types = _tensor_types(model)
    families = {FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    result: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in TYPE_AGNOSTIC_INPUT_OPS:
            continue
        for name in node.input:
            if types.get(name) in families:
                result[node.name] = types[name]
                break
    return result


@dataclass(frozen=True)
class RuntimeCheck:
    """How the converted graph ran beside the FP32 graph on the same audio."""

    runtime: str
    max_abs_difference: float
    argmax_agreement: float

    def __str__(self) -> str:
        return (
            f"ran on {self.runtime}: largest logit difference to FP32 {self.max_abs_difference:.4g}, "
            f"frame argmax agreement {100 * self.argmax_agreement:.2f} %"
        )


def check_runs(
    fp32_path: Path, converted_path: Path, precision: Precision, seconds: float = 1.0
) -> RuntimeCheck:
    """Run both graphs on the same noise and compare logits.

    ONNX Runtime's CPU provider runs the FP16 graph; it has no BF16 kernels (its Div, among
    others, is FP32/FP16 only), so the BF16 graph runs on ONNX's reference evaluator, which
    computes BF16 through `ml_dtypes` (slow: meant for small models and tests).
    """
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    samples = round(seconds * SAMPLING_RATE)
    values = rng.standard_normal((1, samples)).astype(np.float32)
    fp32 = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    feeds = {INPUT_VALUES: values}
    if any(i.name == ATTENTION_MASK for i in fp32.get_inputs()):
        feeds[ATTENTION_MASK] = np.ones((1, samples), dtype=np.int64)
    expected = fp32.run([LOGITS], feeds)[0]
    if precision == "bf16":
        from onnx.reference import ReferenceEvaluator

        runtime = "ONNX reference evaluator (CPU)"
        got = ReferenceEvaluator(str(converted_path)).run([LOGITS], feeds)[0]
    else:
        runtime = "ONNX Runtime CPUExecutionProvider"
        got = ort.InferenceSession(str(converted_path), providers=["CPUExecutionProvider"]).run(
            [LOGITS], feeds
        )[0]
    got = np.asarray(got, dtype=np.float32)
    return RuntimeCheck(
        runtime=runtime,
        max_abs_difference=float(np.abs(got - expected).max()),
        argmax_agreement=float((got.argmax(-1) == expected.argmax(-1)).mean()),
    )
