"""The half-precision pass: listed ops and the I/O stay FP32, matrix work goes half, the graph runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from transformers import Wav2Vec2ForCTC

from vaani.build import export
from vaani.build.tensorrt import half_precision
from vaani.recipe.tiny_model import tiny_config
from vaani.serving.contract import ATTENTION_MASK, INPUT_VALUES, LOGITS

HALF = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(tiny_config()).eval()
    return export.export_onnx(model, True, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="module", params=["fp16", "bf16"])
def converted(request, fp32_onnx, tmp_path_factory) -> tuple[str, Path]:
    target = tmp_path_factory.mktemp(request.param) / f"model.{request.param}.onnx"
    half_precision.convert_file(fp32_onnx, target, request.param)
    return request.param, target


def _nodes_by_op(model: onnx.ModelProto) -> dict[str, list[int]]:
    types = half_precision.compute_types(model)
    by_op: dict[str, list[int]] = {}
    for node in model.graph.node:
        if node.name in types and not node.name.startswith("Cast_"):
            by_op.setdefault(node.op_type, []).append(types[node.name])
    return by_op


def test_graph_inputs_and_outputs_stay_fp32(converted):
    _, path = converted
    graph = onnx.load(str(path)).graph
    kinds = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    assert kinds == {
        INPUT_VALUES: TensorProto.FLOAT,
        ATTENTION_MASK: TensorProto.INT64,
        LOGITS: TensorProto.FLOAT,
    }


def test_normalization_softmax_and_reductions_stay_fp32(converted):
    _, path = converted
    by_op = _nodes_by_op(onnx.load(str(path)))
    assert by_op["LayerNormalization"] and set(by_op["LayerNormalization"]) == {TensorProto.FLOAT}
    assert by_op["Softmax"] and set(by_op["Softmax"]) == {TensorProto.FLOAT}
    for op in half_precision.FP32_OPS & by_op.keys():
        assert set(by_op[op]) == {TensorProto.FLOAT}, op


def test_final_projection_stays_fp32_and_matrix_work_goes_half(converted):
    precision, path = converted
    model = onnx.load(str(path))
    types = half_precision.compute_types(model)
    producer = next(n for n in model.graph.node if LOGITS in n.output)
    projection = next(n for n in model.graph.node if n.output[0] in producer.input and n.op_type == "MatMul")
    assert types[producer.name] == TensorProto.FLOAT
    assert types[projection.name] == TensorProto.FLOAT
    matmuls = [types[n.name] for n in model.graph.node if n.op_type == "MatMul" and n is not projection]
    assert matmuls and set(matmuls) == {HALF[precision]}
    convs = {types[n.name] for n in model.graph.node if n.op_type == "Conv"}
    # Conv admits BF16 only from opset 22; the exporter writes opset 17, so BF16 convs stay FP32.
    assert convs == ({TensorProto.FLOAT16} if precision == "fp16" else {TensorProto.FLOAT})


def test_converted_graph_is_valid_and_close_to_fp32(converted, fp32_onnx):
    precision, path = converted
    half_precision.validate(onnx.load(str(path)))
    check = half_precision.check_runs(fp32_onnx, path, precision)
    assert check.argmax_agreement >= 0.95, check
    assert check.max_abs_difference < (0.05 if precision == "bf16" else 0.01), check


def test_fp32_is_an_unchanged_copy(fp32_onnx):
    model = onnx.load(str(fp32_onnx))
    copy, summary = half_precision.convert(model, "fp32")
    assert copy.SerializeToString() == model.SerializeToString()
    assert summary.half_nodes == 0


def _decomposed_layer_norm() -> onnx.ModelProto:
    """x @ W, LayerNorm written out (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div), then a mask constant."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
        helper.make_node("ReduceMean", ["h"], ["mean"], axes=[-1], name="mean"),
        helper.make_node("Sub", ["h", "mean"], ["centered"], name="center"),
        helper.make_node("Pow", ["centered", "two"], ["squared"], name="square"),
        helper.make_node("ReduceMean", ["squared"], ["variance"], axes=[-1], name="variance"),
        helper.make_node("Add", ["variance", "eps"], ["variance_eps"], name="add_eps"),
        helper.make_node("Sqrt", ["variance_eps"], ["std"], name="std"),
        helper.make_node("Div", ["centered", "std"], ["normed"], name="normalize"),
        helper.make_node("Add", ["normed", "mask"], ["y"], name="add_mask"),
    ]
    initializers = [
        numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(np.full((8,), np.finfo(np.float32).min, np.float32), "mask"),
    ]
    graph = helper.make_graph(
        nodes,
        "decomposed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_decomposed_normalization_stays_fp32(precision):
    model, _ = half_precision.convert(_decomposed_layer_norm(), precision)
    half_precision.validate(model)
    types = half_precision.compute_types(model)
    for name in ("mean", "center", "square", "variance", "add_eps", "std", "normalize"):
        assert types[name] == TensorProto.FLOAT, name
    assert types["proj"] == HALF[precision]
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_fp16_weights_saturate_instead_of_overflowing():
    model, _ = half_precision.convert(_decomposed_layer_norm(), "fp16")
    mask = next(t for t in model.graph.initializer if t.name.startswith("mask"))
    values = numpy_helper.to_array(mask)
    assert np.isfinite(values).all() and values.min() == np.float16(-65504)


def test_half_output_gets_a_cast_back_to_fp32():
    model, _ = half_precision.convert(_decomposed_layer_norm(), "fp16")
    types = half_precision.compute_types(model)
    assert types["add_mask"] == TensorProto.FLOAT16  # not a projection: it may run in half
    last = model.graph.node[-1]
    assert last.op_type == "Cast" and last.output[0] == "y" and last.attribute[0].i == TensorProto.FLOAT
